"""Serving: one FastAPI gateway on Ray Serve, a multiplexed pool and dedicated deployments."""
