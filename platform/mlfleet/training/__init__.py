"""Training: search spaces, sklearn pipelines from contracts, Tune search, evaluation."""
