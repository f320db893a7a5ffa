"""Ray Serve application builders (import targets for `serve run` and `serve deploy`)."""
