"""The sketches' fast binning paths against counts taken bin by bin with plain masks."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from mlfleet.monitoring.reference import (
    PREDICTION,
    MonitorReference,
    categorical_reference,
    numeric_reference,
)
from mlfleet.monitoring.sketch import Binner


def masked_counts(values: np.ndarray, edges: np.ndarray) -> list[int]:
    """[underflow, bins…, overflow], the last bin closed, one mask per slot."""
    x = values[~np.isnan(values)]
    lo, hi = edges[0], edges[-1]
    inner = [
        int(np.sum((x >= a) & (x < b))) if i < edges.size - 2 else int(np.sum((x >= a) & (x <= b)))
        for i, (a, b) in enumerate(itertools.pairwise(edges))
    ]
    return [int(np.sum(x < lo)), *inner, int(np.sum(x > hi))]


def binner_for(edges: np.ndarray, categories: dict[str, int]) -> Binner:
    return Binner(
        MonitorReference(
            "m",
            "1",
            "classification",
            (
                numeric_reference("x", edges.tolist(), [1] * (edges.size - 1)),
                categorical_reference("c", categories),
            ),
            categorical_reference(PREDICTION, {"a": 1, "b": 1}),
        )
    )


@pytest.mark.parametrize("bins", [20, 150])  # comparisons with each edge; binary search
def test_numeric_paths_count_like_masks(bins: int) -> None:
    rng = np.random.default_rng(11)
    edges = np.unique(np.round(rng.normal(size=bins + 1), 2))  # rounded: values hit edges
    assert (edges.size > 64) == (bins > 64)
    x = np.round(rng.normal(scale=1.3, size=20000), 2)
    x[::37] = np.nan
    x[:4] = [edges[0], edges[-1], np.inf, -np.inf]
    frame = pd.DataFrame({"x": x, "c": ["k"] * x.size})
    counts = binner_for(edges, {"k": 1}).count(frame, ["a"] * x.size)
    assert counts.columns["x"].tolist() == masked_counts(x, edges)
    assert counts.nulls["x"] == int(np.isnan(x).sum())


def test_categories_hash_like_their_text() -> None:
    # Mixed objects: 1, 1.0 and True are equal to Python's hash but not as text.
    values = ["1", 1, 1.0, True, "True", None, float("nan"), "z", "1.0"] * 10
    frame = pd.DataFrame({"x": np.zeros(len(values)), "c": pd.Series(values, dtype=object)})
    counts = binner_for(np.array([0.0, 1.0]), {"1": 5, "True": 5, "1.0": 5}).count(
        frame, np.array(["a", "b", "c"] * 30)
    )
    # "1" and 1 -> "1"; 1.0 and "1.0" -> "1.0"; True and "True" -> "True"; "z" -> other.
    assert counts.columns["c"].tolist() == [20, 20, 20, 10]
    assert counts.nulls["c"] == 20
    assert counts.columns[PREDICTION].tolist() == [30, 30, 30]
