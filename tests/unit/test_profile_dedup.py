from __future__ import annotations

import numpy as np
import pyarrow as pa

from mlfleet.contract.schema import ColumnSpec
from mlfleet.data.dedup import duplicate_positions, key_hashes, row_orders, split_order
from mlfleet.data.profile import (
    FineHistogram,
    bin_counts,
    column_partial,
    equal_frequency,
    fine_keys,
    key_floor,
)


def test_bin_counts_outer_bins_are_open() -> None:
    edges = [0.0, 1.0, 2.0, 3.0]
    counts = bin_counts(np.array([-5.0, 0.0, 0.5, 1.0, 2.5, 3.0, 99.0]), edges)
    assert counts.tolist() == [3, 1, 3]


def test_fine_keys_preserve_order_and_floors_invert_them() -> None:
    values = np.array([-1e9, -3.5, -0.0, 0.0, 1e-300, 0.5, 1.0, 2.0, 511.0, 512.0, 7e12])
    keys = fine_keys(values)
    assert np.all(np.diff(keys.astype(np.int64)) >= 0)
    floors = key_floor(keys)
    assert np.all(floors <= np.where(values == 0, 0.0, values))
    # Integers below 512 sit alone in their bin: the floor is the value itself.
    ints = np.arange(0, 512, dtype=np.float64)
    assert np.array_equal(key_floor(fine_keys(ints)), ints)


def test_equal_frequency_edges_with_exact_counts() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=200_000)
    parts = [FineHistogram.of(chunk) for chunk in np.array_split(data, 13)]
    hist = parts[0]
    for p in parts[1:]:
        hist = hist.combine(p)
    edges, counts = equal_frequency(hist, float(data.min()), float(data.max()), bins=10)
    assert len(edges) == 11 and sum(counts) == data.size
    # The counts are exactly what binning the raw values against the edges gives.
    assert counts == bin_counts(data, edges).tolist()
    true_inner = np.quantile(data, np.linspace(0, 1, 11)[1:-1])
    assert np.max(np.abs(np.array(edges[1:-1]) - true_inner)) < 0.02
    assert min(counts) > 0.09 * data.size and max(counts) < 0.11 * data.size


def test_histograms_subtract_exactly() -> None:
    a = FineHistogram.of(np.array([1.0, 2.0, 2.0, 3.0]))
    b = FineHistogram.of(np.array([2.0, 3.0]))
    rest = a.combine(b, sign=-1)
    assert rest.total == 2
    assert key_floor(rest.keys).tolist() == [1.0, 2.0]


def test_orders_sort_by_source_then_row() -> None:
    a = row_orders(0, np.array([5, 1_000_000]))
    b = row_orders(1, np.array([1]))
    assert a[1] < b[0]
    assert split_order(int(b[0])) == (1, 1)


def test_first_occurrence_is_kept() -> None:
    hashes = np.array([10, 20, 10, 30, 20, 10], dtype=np.uint64)
    dups, firsts = duplicate_positions(hashes)
    assert dups.tolist() == [2, 4, 5]
    assert firsts.tolist() == [0, 1, 0]


def test_key_hashes_integer_key_is_exact_and_row_hash_sees_every_column() -> None:
    t = pa.table({"id": [1, 2, 1], "v": ["a", "b", "c"]})
    h = key_hashes(t, ["id"])
    assert h[0] == h[2] and h[0] != h[1]
    whole = key_hashes(t, None)
    assert len(set(whole.tolist())) == 3
    t2 = pa.table({"k": ["x", "y", "x"], "v": [1.0, 2.0, 1.0]})
    h2 = key_hashes(t2, None)
    assert h2[0] == h2[2] and h2[0] != h2[1]


def test_removing_rows_of_a_whole_number_column_knows_when_its_extremes_survive() -> None:
    col = ColumnSpec(name="flag", type="bool")
    every = column_partial(pa.array([True, False, True, False, True]), col)
    some = column_partial(pa.array([False, True]), col)
    rest, stale = every.remove(some, integral=True)
    assert not stale and (rest.min, rest.max) == (0.0, 1.0)  # a 0 and a 1 remain
    rest, stale = every.remove(column_partial(pa.array([False, False]), col), integral=True)
    assert stale  # no 0 left: the minimum changed and must be read back
    assert not every.remove(some)[1]  # the counted extremes say it without the hint too


def test_removing_rows_knows_from_the_counts_whether_an_extreme_survives() -> None:
    """Floats far beyond the fine bins' whole numbers: only the counts of rows at the
    minimum and at the maximum, merged over batches, can tell."""
    col = ColumnSpec(name="price", type="float")
    batches = [pa.array([7.25, 1e6, -3.5]), pa.array([1e6, 42.0]), pa.array([-3.5, 0.1, None])]
    every = column_partial(batches[0], col)
    for batch in batches[1:]:
        every = every.merge(column_partial(batch, col))
    assert (every.min, every.at_min, every.max, every.at_max) == (-3.5, 2, 1e6, 2)
    # One of the two rows at each extreme goes: both extremes are still there.
    rest, stale = every.remove(column_partial(pa.array([-3.5, 1e6, 42.0]), col))
    assert not stale and (rest.min, rest.at_min, rest.max, rest.at_max) == (-3.5, 1, 1e6, 1)
    # Both rows at the maximum go: it changed, and must be read back.
    rest, stale = every.remove(column_partial(pa.array([1e6, 1e6]), col))
    assert stale and rest.at_max == 0
    # Rows away from the extremes: nothing to read back.
    rest, stale = every.remove(column_partial(pa.array([7.25, 0.1]), col))
    assert not stale and (rest.min, rest.max) == (-3.5, 1e6)
