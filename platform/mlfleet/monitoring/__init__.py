"""Drift monitoring: references, sketches, statistics, the monitor actor, feedback, alerts."""
