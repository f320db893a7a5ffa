"""Column statistics and the drift reference profile, as mergeable pure-numpy parts.

Each batch yields small partial results (quantile sketches, counts); the driver merges
them, so no rows ever travel to the driver. The same bin edges and :func:`bin_counts`
are what the serving side uses later to sketch live traffic against the reference.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlfleet.data.contract import ColumnSpec, Contract

NUM_BINS = 20
SKETCH_POINTS = 256
TOP_CATEGORIES = 50


def profiled(col: ColumnSpec) -> str | None:
    """'numeric', 'categorical' or None (free text and timestamps are not profiled)."""
    if col.type in ("int", "float"):
        return "numeric"
    if col.type in ("category", "bool") or (col.type == "str" and col.values):
        return "categorical"
    return None


@dataclass
class QuantileSketch:
    """Weighted order statistics of a sample; merging keeps rank error ~ 1/SKETCH_POINTS."""

    values: np.ndarray = field(default_factory=lambda: np.empty(0))
    weights: np.ndarray = field(default_factory=lambda: np.empty(0))

    @classmethod
    def of(cls, values: np.ndarray, points: int = SKETCH_POINTS) -> QuantileSketch:
        """Sketch the finite values of one batch."""
        values = np.sort(values[np.isfinite(values)])
        n = values.size
        if n <= points:
            return cls(values, np.ones(n))
        idx = ((np.arange(points) + 0.5) * n / points).astype(np.int64)
        return cls(values[idx], np.full(points, n / points))

    @staticmethod
    def merge(parts: list[QuantileSketch]) -> QuantileSketch:
        """Concatenate sketches (exact for the union of their samples)."""
        if not parts:
            return QuantileSketch()
        return QuantileSketch(
            np.concatenate([p.values for p in parts]), np.concatenate([p.weights for p in parts])
        )

    def quantiles(self, qs: np.ndarray) -> np.ndarray:
        """Approximate quantiles at probabilities ``qs``."""
        if self.values.size == 0:
            return np.empty(0)
        order = np.argsort(self.values, kind="stable")
        values, cum = self.values[order], np.cumsum(self.weights[order])
        idx = np.searchsorted(cum, qs * cum[-1], side="left")
        return values[np.clip(idx, 0, values.size - 1)]


def bin_edges(sketch: QuantileSketch, lo: float, hi: float, bins: int = NUM_BINS) -> list[float]:
    """Equal-frequency edges from ``lo`` to ``hi``; repeated edges (discrete data) merge."""
    inner = sketch.quantiles(np.linspace(0, 1, bins + 1)[1:-1])
    edges = np.unique(np.concatenate([[lo], inner, [hi]]))
    if edges.size == 1:
        edges = np.array([lo, lo])  # A constant column: one bin.
    return [float(e) for e in edges]


def bin_counts(values: np.ndarray, edges: list[float] | np.ndarray) -> np.ndarray:
    """Counts per bin; the outer bins are open so values outside the range still count."""
    edges = np.asarray(edges, dtype=np.float64)
    bins = max(edges.size - 1, 1)
    idx = np.searchsorted(edges[1:-1], values, side="right")
    return np.bincount(idx, minlength=bins)[:bins]


def _numpy(values: pa.Array) -> np.ndarray:
    return np.asarray(values.drop_null().to_numpy(zero_copy_only=False), dtype=np.float64)


def _category_text(values: pa.Array) -> pa.Array:
    if pa.types.is_boolean(values.type):
        return values.cast(pa.string())
    return values


@dataclass
class ColumnPartial:
    """Mergeable statistics of one column over some rows."""

    rows: int = 0
    nulls: int = 0
    min: float | None = None
    max: float | None = None
    total: float = 0.0
    sketch: QuantileSketch | None = None
    counts: np.ndarray | None = None
    categories: Counter[str] | None = None

    def merge(self, other: ColumnPartial) -> ColumnPartial:
        """Combine with another partial of the same column."""

        def pick(fn: Any, a: float | None, b: float | None) -> float | None:
            return b if a is None else a if b is None else fn(a, b)

        out = ColumnPartial(
            rows=self.rows + other.rows,
            nulls=self.nulls + other.nulls,
            min=pick(min, self.min, other.min),
            max=pick(max, self.max, other.max),
            total=self.total + other.total,
        )
        if self.sketch is not None or other.sketch is not None:
            out.sketch = QuantileSketch.merge([p for p in (self.sketch, other.sketch) if p])
        if self.counts is not None or other.counts is not None:
            present = [c for c in (self.counts, other.counts) if c is not None]
            out.counts = present[0] if len(present) == 1 else present[0] + present[1]
        if self.categories is not None or other.categories is not None:
            out.categories = (self.categories or Counter()) + (other.categories or Counter())
        return out


def column_partial(
    values: pa.Array, col: ColumnSpec, *, sketch: bool, edges: list[float] | None = None
) -> ColumnPartial:
    """Statistics of one column of a batch.

    Args:
        sketch: keep a quantile sketch (first pass, to choose bin edges).
        edges: count values per bin against these edges (second pass).
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    part = ColumnPartial(rows=len(values), nulls=values.null_count)
    kind = profiled(col)
    if col.type in ("int", "float"):
        nums = _numpy(values)
        if nums.size:
            part.min, part.max, part.total = float(nums.min()), float(nums.max()), float(nums.sum())
        if sketch:
            part.sketch = QuantileSketch.of(nums)
        if edges is not None:
            part.counts = bin_counts(nums, edges)
    elif col.type == "datetime":
        mm = pc.min_max(values)
        lo, hi = mm["min"].as_py(), mm["max"].as_py()
        part.min = lo.timestamp() if lo is not None else None
        part.max = hi.timestamp() if hi is not None else None
    if kind == "categorical":
        vc = pc.value_counts(_category_text(values).drop_null())
        part.categories = Counter(
            dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True))
        )
    return part


def profile_document(
    contract: Contract,
    partials: dict[str, ColumnPartial],
    edges: dict[str, list[float]],
    *,
    name: str,
    version: str,
    rows: int,
) -> dict[str, Any]:
    """The reference profile (``profile.json``) from merged second-pass partials."""
    features: dict[str, Any] = {}
    for col in contract.columns:
        kind = profiled(col)
        part = partials.get(col.name)
        if kind is None or part is None:
            continue
        if kind == "numeric":
            counts = part.counts if part.counts is not None else np.zeros(0, np.int64)
            features[col.name] = {
                "kind": "numeric",
                "type": col.type,
                "edges": edges.get(col.name, []),
                "counts": [int(c) for c in counts],
                "nulls": part.nulls,
                "min": part.min,
                "max": part.max,
                "mean": part.total / (part.rows - part.nulls) if part.rows > part.nulls else None,
            }
        else:
            cats = part.categories or Counter()
            features[col.name] = {
                "kind": "categorical",
                "type": col.type,
                "frequencies": {
                    str(k): int(v) for k, v in sorted(cats.items(), key=lambda kv: -kv[1])
                },
                "nulls": part.nulls,
            }
    return {"name": name, "version": version, "rows": rows, "bins": NUM_BINS, "features": features}
