"""Requests, errors and latency per model, counted in the gateway process for the dashboard.

Each gateway replica keeps, per model, a ring of ten-second slices; a slice holds the number
of requests, of errors (4xx and 5xx answers) and a latency histogram on fixed log-spaced
bounds (each about 10% wider than the last, 0.1 ms to 60 s). Recording is a dict look-up,
a bisect over the bounds and three increments (about 1 µs); memory is bounded by
``SLICES × len(BOUNDS)`` integers per model and by ``max_models`` models. Percentiles are
read from the merged histogram of the slices in the window, so they are accurate to one
bucket (about ±5%).

The latency is the gateway's own handling time (authentication, validation, the hop to a
model replica and the prediction), not the HTTP proxy in front of it. Counters live in one
replica's memory: with several gateway replicas each counts what it answered.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

SLICE_S = 10.0
WINDOW_S = 300.0  # what "the last window" means on the dashboard
SLICES = int(WINDOW_S // SLICE_S)
MAX_MODELS = 10_000  # beyond this, new names are not counted (names come from the fleet)
# Upper bounds of the latency buckets, in seconds: 0.1 ms × 1.1^k up to 60 s.
BOUNDS: tuple[float, ...] = tuple(
    1e-4 * 1.1**k for k in range(math.ceil(math.log(60 / 1e-4, 1.1)) + 1)
)


@dataclass
class _Slice:
    tick: int = -1  # the ten-second slice this one counts (-1: never used)
    requests: int = 0
    errors: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS) + 1))

    def reset(self, tick: int) -> None:
        self.tick, self.requests, self.errors = tick, 0, 0
        self.latency = [0] * (len(BOUNDS) + 1)


@dataclass(frozen=True)
class ModelTraffic:
    """One model's requests over the window, as the dashboard shows them."""

    requests: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None


def _percentile(histogram: list[int], total: int, q: float) -> float | None:
    """The upper bound (ms) of the bucket holding the ``q`` quantile."""
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index, count in enumerate(histogram):
        seen += count
        if seen >= rank:
            bound = BOUNDS[index] if index < len(BOUNDS) else BOUNDS[-1]
            return round(bound * 1000, 3)
    return round(BOUNDS[-1] * 1000, 3)


class TrafficCounter:
    """Per-model requests, errors and latency over the last :data:`WINDOW_S` seconds."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_models: int = MAX_MODELS
    ) -> None:
        self._clock = clock
        self._max_models = max_models
        self._rings: dict[str, list[_Slice]] = {}

    def record(self, model: str, seconds: float, status: int) -> None:
        """Count one request of ``model`` that took ``seconds`` and answered ``status``."""
        ring = self._rings.get(model)
        if ring is None:
            if len(self._rings) >= self._max_models:
                return
            ring = self._rings[model] = [_Slice() for _ in range(SLICES)]
        tick = int(self._clock() // SLICE_S)
        slot = ring[tick % SLICES]
        if slot.tick != tick:
            slot.reset(tick)
        slot.requests += 1
        if status >= 400:
            slot.errors += 1
        slot.latency[bisect.bisect_left(BOUNDS, seconds)] += 1

    def snapshot(self) -> dict[str, ModelTraffic]:
        """Every counted model's figures over the window (slices older than it left out)."""
        now = int(self._clock() // SLICE_S)
        out: dict[str, ModelTraffic] = {}
        for model, ring in self._rings.items():
            live = [s for s in ring if now - SLICES < s.tick <= now]
            requests = sum(s.requests for s in live)
            merged = [sum(column) for column in zip(*(s.latency for s in live), strict=True)]
            counted = sum(merged) if merged else 0
            out[model] = ModelTraffic(
                requests=requests,
                errors=sum(s.errors for s in live),
                p50_ms=_percentile(merged, counted, 0.50),
                p99_ms=_percentile(merged, counted, 0.99),
            )
        return out


__all__ = ["BOUNDS", "SLICE_S", "WINDOW_S", "ModelTraffic", "TrafficCounter"]
