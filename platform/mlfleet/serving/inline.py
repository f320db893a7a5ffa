"""Small models kept inside the gateway replica, to answer requests without a second hop.

A request that goes gateway → model replica pays a second hop through a Serve handle
(3–6 ms on a small machine, more than the prediction itself for a small sklearn model), and
the hop costs CPU on both sides: ~3.5 ms a request besides the prediction, ~1.6 ms of it in
the gateway (8 warm models of benchmarks/bench_fleet.py at 4 connections: 7.3 ms of CPU a
request forwarded, 3.4 ms predicted in the gateway). So the gateway predicts a model it
holds itself when it is idle, and also under load when that model's predictions are short
(``gateway_inline_under_load_ms``); a slower model's requests are forwarded under load, where
``@serve.batch`` and the model's own replicas spread the work. :class:`InlineModels` is the
gateway's side of that bargain: an LRU of small model versions, loaded in the background on
first sight, never on the request path, with the CPU each one's predictions have cost.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger("mlfleet.gateway")

# Predict a model that is not cheap in the gateway only when this request is the only one
# it is handling.
INLINE_WHEN_ONGOING_AT_MOST = 1
# Requests between two halvings of the request counts: admission follows recent popularity.
AGING_EVERY = 1000
# A version's cost is the median of its last few predictions here: a garbage collection
# during one of them (30 ms and more) does not make a 1 ms model look expensive.
COST_SAMPLES = 9
# Until this many are counted a version is still being measured, and counts as cheap: the
# first few predictions of a model in a process cost a few times the later ones.
MIN_COST_SAMPLES = 5
# Under load an expensive version is still predicted here once in this many requests for
# it, so that its cost is measured again and a model that became cheap is found out.
PROBE_EVERY = 50

Key = tuple[str, str]


class InlineModels:
    """An LRU of model versions small enough to predict with inside the gateway.

    ``size_of(name, version)`` returns the model's stored size in bytes and ``load(name,
    version)`` the model; both block, and run in a worker thread. Versions larger than
    ``max_bytes``, or whose loading failed, are remembered and not tried again (a version is
    immutable).

    Admission: with room to spare any version is loaded; when full, a version is loaded only
    if it was asked for more often (recently: counts halve every ``AGING_EVERY`` requests)
    than the least recently used one it would replace, and one load runs at a time. With a
    hundred models under skewed traffic, a plain LRU of four would load a model in the
    background on nearly every request, spending the gateway's CPU on loads it then evicts.
    """

    def __init__(
        self,
        max_models: int,
        max_bytes: int,
        size_of: Callable[[str, str], int],
        load: Callable[[str, str], Any],
    ) -> None:
        self.max_models = max_models
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._load = load
        self._models: OrderedDict[Key, Any] = OrderedDict()
        self._loading: dict[Key, asyncio.Task[None]] = {}
        self._refused: set[Key] = set()
        self._hits: Counter[Key] = Counter()
        self._asked = 0
        self._costs: dict[Key, deque[float]] = {}  # CPU seconds of the last predictions
        self._passed: Counter[Key] = Counter()  # requests forwarded since the last probe

    @property
    def enabled(self) -> bool:
        return self.max_models > 0 and self.max_bytes > 0

    def get(self, name: str, version: str) -> Any | None:
        """The loaded model, or None (and a background load starts if it is eligible)."""
        key = (name, version)
        if not self.enabled:
            return None
        self._count(key)
        model = self._models.get(key)
        if model is not None:
            self._models.move_to_end(key)
            return model
        if not self._loading and key not in self._refused and self._admits(key):
            self._loading[key] = asyncio.get_running_loop().create_task(self._fetch(key))
        return None

    def observe(self, name: str, version: str, cpu_seconds: float) -> None:
        """Record what one prediction of a held version cost (CPU seconds of this thread).

        A version's first prediction is not counted: it pays once for what the model's code
        sets up on first use (up to tens of milliseconds, against ~1.5 ms for later ones).
        """
        key = (name, version)
        if key not in self._models:
            return
        samples = self._costs.get(key)
        if samples is None:
            self._costs[key] = deque(maxlen=COST_SAMPLES)
        else:
            samples.append(cpu_seconds)

    def answer_here(self, name: str, version: str, budget_seconds: float) -> bool:
        """Whether a held version is cheap enough to predict here under load.

        Cheap: the median of its last predictions here cost at most ``budget_seconds``. A
        version with fewer than ``MIN_COST_SAMPLES`` counted counts as cheap, so that it gets
        measured (held versions are small). An expensive one gets one request in
        ``PROBE_EVERY``, to be measured again. A budget of 0 or less admits none.
        """
        key = (name, version)
        if budget_seconds <= 0:
            return False
        samples = self._costs.get(key)
        if (
            samples is None
            or len(samples) < MIN_COST_SAMPLES
            or statistics.median(samples) <= budget_seconds
        ):
            return True
        self._passed[key] += 1
        if self._passed[key] < PROBE_EVERY:
            return False
        self._passed[key] = 0
        return True

    def _count(self, key: Key) -> None:
        self._hits[key] += 1
        self._asked += 1
        if self._asked >= AGING_EVERY:
            self._asked = 0
            self._hits = Counter({k: n // 2 for k, n in self._hits.items() if n > 1})

    def _admits(self, key: Key) -> bool:
        if len(self._models) < self.max_models:
            return True
        least_recent = next(iter(self._models))
        return self._hits[key] > self._hits[least_recent]

    async def _fetch(self, key: Key) -> None:
        try:
            size = await asyncio.to_thread(self._size_of, *key)
            if size > self.max_bytes:
                self._refused.add(key)
                return
            model = await asyncio.to_thread(self._load, *key)
        except Exception:
            # The model replicas still serve it; the gateway just will not hold a copy.
            log.warning("gateway will not hold %s/%s", *key, exc_info=True)
            self._refused.add(key)
            return
        finally:
            self._loading.pop(key, None)
        self._models[key] = model
        while len(self._models) > self.max_models:
            evicted, _ = self._models.popitem(last=False)
            self._costs.pop(evicted, None)
            self._passed.pop(evicted, None)

    def stats(self) -> list[dict[str, Any]]:
        """Each held version, least recently used first, with the median CPU of its last
        predictions here (None before any counted) and how many that median is over."""
        out = []
        for name, version in self._models:
            samples = self._costs.get((name, version)) or ()
            median = statistics.median(samples) if samples else None
            out.append(
                {
                    "model": name,
                    "version": version,
                    "median_cpu_ms": None if median is None else round(1000 * median, 3),
                    "samples": len(samples),
                }
            )
        return out

    def loaded(self) -> list[Key]:
        """The versions held now (for status and tests)."""
        return list(self._models)
