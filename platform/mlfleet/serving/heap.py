"""Keep a serving replica's full garbage collections short.

CPython's full collection walks every object the collector tracks outside the frozen
(permanent) generation, holding the GIL throughout, so a request that arrives meanwhile
waits. Ray Serve collects and freezes a replica's heap once its ``__init__`` returns; what a
replica imports later is not frozen. Its first model loads import scikit-learn's estimators,
skops and MLflow's model code: about 190,000 tracked objects for a dozen models of five
datasets. Requests then promote short-lived objects (buffered sketch entries, Serve's
buffered access-log records) to the oldest generation fast enough for a full collection
every ~7 s, and each one walked those modules again: 105–130 ms in the gateway, measured
with one connection's traffic (one request in ~1,500 stalled that long; the warm p99).

:func:`settle` collects everything once and freezes what survives whenever modules were
imported since it last did. Module contents live as long as the process, so they never
need scanning again; the only full collections left walk what requests and later loads
left behind. A settle costs one full collection (~0.1 s), paid once per new set of
imports (a replica's first models of a kind), never periodically: 2 to 4 per replica in
``bench_fleet``'s 100-model run. Nothing that is garbage is frozen: the collection runs
first. Frozen objects that later lose their last reference are freed as usual; only a
reference cycle among them (something in flight during a settle) outlives its use, which
bounds what a replica can strand by what it has in flight, a few times in its life.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

PAUSES_KEPT = 1000  # the latest full collections whose duration a process keeps


@dataclass
class _State:
    modules: int = -1  # len(sys.modules) at the last settle (-1: never settled)
    settles: int = 0
    last_ms: float = 0.0
    watching: bool = False
    started_at: float = 0.0  # perf_counter when the collection in progress started
    full_pauses_ms: deque[float] = field(default_factory=lambda: deque(maxlen=PAUSES_KEPT))


_STATE = _State()
_LOCK = threading.Lock()  # loads finish in worker threads: one settle at a time


def settle() -> bool:
    """Collect and freeze the heap if modules were imported since the last settle.

    Cheap when nothing was imported (one length comparison). Safe from any thread.

    Returns:
        Whether it collected and froze.
    """
    if len(sys.modules) == _STATE.modules:
        return False
    with _LOCK:
        if len(sys.modules) == _STATE.modules:
            return False
        started = time.perf_counter()
        gc.collect()
        gc.freeze()
        _STATE.modules = len(sys.modules)
        _STATE.settles += 1
        _STATE.last_ms = (time.perf_counter() - started) * 1000
        return True


def watch() -> None:
    """Time this process's full collections from now on (idempotent; ~1 µs a collection)."""
    with _LOCK:
        if not _STATE.watching:
            gc.callbacks.append(_timed)
            _STATE.watching = True


def _timed(phase: str, info: dict[str, Any]) -> None:
    if info["generation"] != 2:
        return
    if phase == "start":
        _STATE.started_at = time.perf_counter()
    else:
        _STATE.full_pauses_ms.append((time.perf_counter() - _STATE.started_at) * 1000)


def stats() -> dict[str, Any]:
    """This process's settles and full collections, for operators and benchmarks."""
    pauses = list(_STATE.full_pauses_ms)  # settles' own collections included
    return {
        "pid": os.getpid(),
        "settles": _STATE.settles,
        "last_settle_ms": round(_STATE.last_ms, 1),
        "frozen_objects": gc.get_freeze_count(),
        "full_collections": gc.get_stats()[2]["collections"],
        "full_collection_ms": [round(p, 2) for p in pauses],
    }
