"""Examples outside the library (not in the wheel): the quickstart tour and its data."""
