"""ModelPool: one multiplexed Serve deployment for the long tail of models.

The multiplexed id is ``NAME/VERSION``: a promotion sends traffic to a new id, which loads
on first use, while the old version ages out of the replica's LRU. Serve routes requests
for an id to replicas that already hold it.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from collections import deque
from typing import Any

import pandas as pd
from ray import serve

from mlfleet import registry
from mlfleet.monitoring.sender import SketchSender, sender_id
from mlfleet.serving import heap
from mlfleet.serving.models import load_model, predict

LOAD_TIMINGS_KEPT = 10_000  # the latest model loads a replica keeps the duration of


def _rss_bytes() -> int:
    """This process's resident memory now (Linux), else its peak."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def pool_class(max_models: int) -> type:
    """The pool deployment class, keeping up to ``max_models`` versions per replica.

    Built per call because ``serve.multiplexed`` takes its LRU size when decorating.
    """

    class ModelPool:
        """Predicts with whichever model version the request's multiplexed id names."""

        def __init__(self, settings_json: str) -> None:
            from mlfleet.settings import Settings

            settings = Settings.model_validate_json(settings_json)
            registry.configure(settings)
            self.sketches = SketchSender(sender_id("pool"), settings)
            heap.watch()
            self._loads = 0
            self._load_seconds: deque[float] = deque(maxlen=LOAD_TIMINGS_KEPT)

        @serve.multiplexed(max_num_models_per_replica=max_models)
        async def get_model(self, model_id: str) -> Any:
            name, _, version = model_id.partition("/")
            started = time.perf_counter()
            # Loading reads the registry and unpickles: keep the event loop free meanwhile.
            model = await asyncio.to_thread(load_model, name, version)
            self._loads += 1
            self._load_seconds.append(time.perf_counter() - started)
            return model

        async def predict(self, frame: pd.DataFrame) -> dict[str, Any]:
            model_id = serve.get_multiplexed_model_id()
            model = await self.get_model(model_id)
            result = predict(model, frame)
            name, _, version = model_id.partition("/")
            self.sketches.record(name, version, frame, result)
            return result

        async def __del__(self) -> None:
            """Serve's graceful shutdown: flush what this replica still holds (bounded wait)."""
            await self.sketches.close()

        async def sender_stats(self) -> dict[str, Any]:
            """This replica's sketch sender (for operators and tests)."""
            return self.sketches.stats()

        async def load_stats(self) -> dict[str, Any]:
            """This replica's model loads (how many, the latest durations) and its memory,
            for operators and benchmarks."""
            return {
                "replica": serve.get_replica_context().replica_id.unique_id,
                "pid": os.getpid(),
                "rss_bytes": _rss_bytes(),
                "max_models": max_models,
                "loads": self._loads,
                "load_seconds": list(self._load_seconds),
                "heap": heap.stats(),
            }

        async def ready(self) -> bool:
            """Load the request's model (used by /readyz)."""
            await self.get_model(serve.get_multiplexed_model_id())
            return True

    return ModelPool
