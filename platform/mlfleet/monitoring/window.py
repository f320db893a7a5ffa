"""One-minute buckets of counts per (model, version), and the current window over them.

The monitor keeps, for each (model, version), a mapping ``minute -> counts`` where a
minute is an integer (Unix time // 60). Counts are additive, so a flush from any sender
merges into its minute's bucket exactly, by addition, and the window is the sum of some
buckets. The same functions serve :class:`~mlfleet.monitoring.sketch.Counts` and the
performance counters of :mod:`mlfleet.monitoring.performance` (anything with ``rows``
and an in-place ``add``).

The current window at minute ``now`` walks back from ``now`` over the last ``minutes``
minutes (``now`` included) and stops at the first of:

- ``minutes`` minutes covered (default 10);
- at least ``rows`` rows gathered (default 5,000).

Buckets are taken whole: the bucket that reaches ``rows`` is included in full, so the
window may hold more than ``rows`` rows (up to ``rows`` plus that bucket's rows, minus
one). Cutting a bucket would need rows we no longer have. Buckets stamped after ``now``
(a sender's clock ahead of the monitor's) wait until their minute comes.

Pure Python; no Ray.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Generic, Protocol, Self, TypeVar

WINDOW_MINUTES = 10
WINDOW_ROWS = 5_000


class Additive(Protocol):
    """Counts that merge exactly by addition."""

    @property
    def rows(self) -> int:
        """Rows counted."""
        ...

    def add(self, other: Self) -> Self:
        """Add ``other`` in place and return self."""
        ...


A = TypeVar("A", bound=Additive)


def minute_of(timestamp: float) -> int:
    """The bucket (whole minutes since the Unix epoch) of a Unix timestamp in seconds."""
    return int(timestamp // 60)


def add_to_bucket(buckets: MutableMapping[int, A], minute: int, counts: A) -> A:
    """Merge ``counts`` into the bucket of ``minute`` (created on first use); return it.

    The bucket never shares arrays with ``counts``: a sender may reuse what it sent.
    """
    bucket = buckets.get(minute)
    if bucket is None:
        bucket = buckets[minute] = copy.deepcopy(counts)
    else:
        bucket.add(counts)
    return bucket


def merge(parts: Iterable[A]) -> A | None:
    """The sum of ``parts`` as new counts (the parts are left untouched); None if empty."""
    total: A | None = None
    for part in parts:
        if total is None:
            total = copy.deepcopy(part)
        else:
            total.add(part)
    return total


@dataclass(frozen=True)
class Window(Generic[A]):
    """The current window: the merged counts and the buckets they came from."""

    counts: A | None  # None when no bucket falls in the window
    minutes: tuple[int, ...]  # the merged buckets' minutes, newest first

    @property
    def rows(self) -> int:
        """Rows in the window."""
        return 0 if self.counts is None else self.counts.rows


def current_window(
    buckets: Mapping[int, A],
    now: int,
    *,
    minutes: int = WINDOW_MINUTES,
    rows: int = WINDOW_ROWS,
) -> Window[A]:
    """The most recent buckets up to ``minutes`` minutes or ``rows`` rows (see the module).

    Args:
        buckets: ``minute -> counts`` of one (model, version).
        now: The current minute (:func:`minute_of`); its bucket may still be filling.
        minutes: How many minutes back the window may reach, ``now`` included.
        rows: Stop at the first bucket that brings the window to at least this many rows.
    """
    if minutes < 1 or rows < 1:
        raise ValueError(f"a window needs minutes >= 1 and rows >= 1 (got {minutes}, {rows})")
    taken: list[int] = []
    total = 0
    for minute in range(now, now - minutes, -1):
        bucket = buckets.get(minute)
        if bucket is None:
            continue
        taken.append(minute)
        total += bucket.rows
        if total >= rows:
            break
    return Window(merge(buckets[m] for m in taken), tuple(taken))


def expire(buckets: MutableMapping[int, A], before: int) -> int:
    """Drop the buckets older than minute ``before``; return how many went."""
    old = [m for m in buckets if m < before]
    for minute in old:
        del buckets[minute]
    return len(old)
