"""Keep full garbage collections off a replica's request path.

Once Ray Serve, FastAPI, pandas, scikit-learn and MLflow are imported, a replica holds some
300,000 long-lived objects, and every full collection walks them all: ~135 ms here, while
it holds the GIL and no request of the replica moves. At 4 connections on the 100-model
fleet that was the p99 (bench_fleet.py). None of them ever becomes garbage, so a replica
that has started freezes them (``gc.freeze``): later collections walk only what was
allocated since.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Collect what start-up left as garbage, then exempt every surviving object from
    later collections (call at the end of a replica's ``__init__``)."""
    gc.collect()
    gc.freeze()
