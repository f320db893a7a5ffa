from __future__ import annotations

import numpy as np
import pyarrow as pa

from mlfleet.data.dedup import duplicate_positions, key_hashes, row_orders, split_order
from mlfleet.data.profile import QuantileSketch, bin_counts, bin_edges


def test_bin_counts_outer_bins_are_open() -> None:
    edges = [0.0, 1.0, 2.0, 3.0]
    counts = bin_counts(np.array([-5.0, 0.0, 0.5, 1.0, 2.5, 3.0, 99.0]), edges)
    assert counts.tolist() == [3, 1, 3]


def test_edges_from_merged_sketches_are_close_to_true_quantiles() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=200_000)
    parts = [QuantileSketch.of(chunk) for chunk in np.array_split(data, 13)]
    edges = bin_edges(QuantileSketch.merge(parts), float(data.min()), float(data.max()), bins=10)
    assert len(edges) == 11
    true_inner = np.quantile(data, np.linspace(0, 1, 11)[1:-1])
    assert np.max(np.abs(np.array(edges[1:-1]) - true_inner)) < 0.02
    counts = bin_counts(data, edges)
    assert counts.sum() == data.size
    assert counts.min() > 0.09 * data.size and counts.max() < 0.11 * data.size


def test_discrete_and_constant_columns_get_fewer_bins() -> None:
    data = np.array([1.0, 2.0, 3.0] * 100)
    edges = bin_edges(QuantileSketch.of(data), 1.0, 3.0)
    assert edges == sorted(set(edges)) and len(edges) <= 4
    assert bin_counts(data, edges).sum() == 300
    const = bin_edges(QuantileSketch.of(np.full(10, 7.0)), 7.0, 7.0)
    assert bin_counts(np.full(10, 7.0), const).tolist() == [10]


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
