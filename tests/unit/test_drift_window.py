"""One-minute buckets merge exactly; the window takes whole buckets by minutes or rows."""

from __future__ import annotations

import numpy as np
import pytest

from mlfleet.monitoring.performance import ConfusionCounts
from mlfleet.monitoring.sketch import Counts
from mlfleet.monitoring.window import (
    add_to_bucket,
    current_window,
    expire,
    merge,
    minute_of,
)


def counts(rows: int, first: int = 0) -> Counts:
    """`rows` rows, all in slot 1 of feature x; `first` of them null in y."""
    return Counts(
        rows=rows,
        columns={"x": np.array([0, rows, 0], np.int64)},
        nulls={"x": 0, "y": first},
        scored=rows,
        confidence=0.5 * rows,
    )


def test_minute_of() -> None:
    assert minute_of(0) == 0 and minute_of(59.999) == 0 and minute_of(60) == 1
    assert minute_of(1_764_316_800.5) == 29_405_280


def test_three_senders_merge_exactly_into_buckets() -> None:
    buckets: dict[int, Counts] = {}
    sent = {1: [counts(3), counts(4, 1)], 2: [counts(5)], 3: [counts(7, 2), counts(1)]}
    for sender, flushes in sent.items():
        for i, flush in enumerate(flushes):
            add_to_bucket(buckets, 100 + (i + sender) % 2, flush)
    assert sorted(buckets) == [100, 101]
    assert buckets[100].rows + buckets[101].rows == 20
    both = merge(buckets.values())
    assert both is not None
    assert both.rows == 20 and both.columns["x"].tolist() == [0, 20, 0]
    assert both.nulls == {"x": 0, "y": 3} and both.scored == 20 and both.confidence == 10.0
    # A bucket owns its arrays: a sender reusing its counts changes nothing stored.
    mine = counts(2)
    add_to_bucket(buckets, 102, mine)
    mine.columns["x"][1] = 999
    assert buckets[102].columns["x"].tolist() == [0, 2, 0]
    # Merging leaves the buckets as they were.
    assert buckets[100].rows + buckets[101].rows == 20


def test_window_stops_at_the_minutes() -> None:
    buckets = {m: counts(100) for m in range(50, 71)}
    window = current_window(buckets, 70, minutes=10, rows=5000)
    assert window.minutes == tuple(range(70, 60, -1)) and window.rows == 1000
    # Gaps are fine; a bucket ahead of `now` waits for its minute.
    sparse = {58: counts(10), 66: counts(20), 69: counts(30), 72: counts(40)}
    window = current_window(sparse, 70)
    assert window.minutes == (69, 66) and window.rows == 50


def test_window_stops_at_the_rows_taking_the_last_bucket_whole() -> None:
    buckets = {m: counts(2000) for m in range(60, 71)}
    window = current_window(buckets, 70, rows=5000)
    assert window.minutes == (70, 69, 68) and window.rows == 6000  # overshoots by 1000
    exact = current_window(buckets, 70, rows=4000)
    assert exact.minutes == (70, 69) and exact.rows == 4000
    assert window.counts is not None and window.counts.columns["x"].tolist() == [0, 6000, 0]


def test_empty_window_and_bad_arguments() -> None:
    window = current_window({1: counts(5)}, 100)
    assert window.counts is None and window.rows == 0 and window.minutes == ()
    with pytest.raises(ValueError, match="minutes >= 1"):
        current_window({}, 1, minutes=0)


def test_expire_drops_old_buckets() -> None:
    buckets = {m: counts(1) for m in range(10)}
    assert expire(buckets, 7) == 7 and sorted(buckets) == [7, 8, 9]


def test_windows_work_for_performance_counters_too() -> None:
    labels = ("a", "b")
    buckets = {
        5: ConfusionCounts.of(labels, ["a", "b"], ["a", "a"]),
        6: ConfusionCounts.of(labels, ["b"], ["b"]),
    }
    window = current_window(buckets, 6)
    assert window.counts is not None
    assert window.rows == 3 and window.counts.accuracy == pytest.approx(2 / 3)
