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

from mlfleet.contract import semantics
from mlfleet.contract.schema import ColumnSpec, Contract

NUM_BINS = 20


def profiled(col: ColumnSpec) -> str | None:
    """'numeric', 'categorical' or None (free text and timestamps have no drift bins)."""
    found = semantics.kind(col)
    return found if found in ("numeric", "categorical") else None


# Fine bins: a float's order-preserving bit pattern cut to its top bits (sign, exponent and
# 8 mantissa bits), i.e. bins ~0.4% wide relative to the value, every integer below 512 in
# its own bin. Counting batches into these is exact and additive, so equal-frequency edges
# and their exact counts come from one streaming pass, with no second read of the data.
FINE_KEY_BITS = 20
_SHIFT = np.uint64(64 - FINE_KEY_BITS)
_SIGN = np.uint64(1 << 63)


def fine_keys(values: np.ndarray) -> np.ndarray:
    """Order-preserving fine-bin keys of finite float64 values."""
    bits = (values.astype(np.float64) + 0.0).view(np.uint64)  # + 0.0 turns -0.0 into 0.0
    ordered = np.where(bits & _SIGN, ~bits, bits | _SIGN)
    return ordered >> _SHIFT


def key_floor(keys: np.ndarray) -> np.ndarray:
    """The smallest value of each fine bin (the inverse of :func:`fine_keys` on bin starts)."""
    ordered = keys.astype(np.uint64) << _SHIFT
    bits = np.where(ordered & _SIGN, ordered & ~_SIGN, ~ordered)
    return bits.view(np.float64)


@dataclass
class FineHistogram:
    """Sparse counts per fine bin (sorted keys, their counts)."""

    keys: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint64))
    counts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    @classmethod
    def of(cls, values: np.ndarray) -> FineHistogram:
        """Count finite values into fine bins."""
        values = values[np.isfinite(values)]
        if values.size == 0:
            return cls()
        keys = fine_keys(values)
        low = keys.min()
        dense = np.bincount((keys - low).astype(np.int64))
        present = np.nonzero(dense)[0]
        return cls(present.astype(np.uint64) + low, dense[present].astype(np.int64))

    def combine(self, other: FineHistogram, sign: int = 1) -> FineHistogram:
        """Add (or, with ``sign=-1``, subtract) another histogram."""
        keys = np.concatenate([self.keys, other.keys])
        if keys.size == 0:
            return FineHistogram()
        counts = np.concatenate([self.counts, sign * other.counts])
        unique, inverse = np.unique(keys, return_inverse=True)
        total = np.bincount(inverse, weights=counts, minlength=unique.size).astype(np.int64)
        keep = total != 0
        return FineHistogram(unique[keep], total[keep])

    @property
    def total(self) -> int:
        """Number of values counted."""
        return int(self.counts.sum())


def equal_frequency(
    hist: FineHistogram, lo: float, hi: float, bins: int = NUM_BINS
) -> tuple[list[float], list[int]]:
    """~``bins`` equal-frequency edges from ``lo`` to ``hi`` and the exact count per bin.

    Inner edges fall on fine-bin boundaries, so every counted value lands in the same bin
    that :func:`bin_counts` gives it later; discrete data gets fewer, merged bins.
    """
    if hist.total == 0:
        return [lo, hi], [0]
    cum = np.cumsum(hist.counts)
    targets = np.arange(1, bins) * cum[-1] / bins
    idx = np.searchsorted(cum, targets, side="left")
    idx = idx[idx + 1 < hist.keys.size]
    inner = np.unique(key_floor(hist.keys[np.unique(idx) + 1]))
    # An inner edge may equal `hi`: a discrete column's largest value then gets its own
    # (closed) last bin instead of sharing one with the value below it.
    inner = inner[(inner > lo) & (inner <= hi)]
    edges = np.concatenate([[lo], inner, [hi]])
    if edges.size == 2 and lo == hi:
        edges = np.array([lo, lo])
    coarse = np.searchsorted(edges[1:-1], key_floor(hist.keys), side="right")
    counts = np.bincount(coarse, weights=hist.counts, minlength=edges.size - 1)
    return [float(e) for e in edges], [int(c) for c in counts[: edges.size - 1]]


def bin_counts(values: np.ndarray, edges: list[float] | np.ndarray) -> np.ndarray:
    """Counts per bin; the outer bins are open so values outside the range still count."""
    edges = np.asarray(edges, dtype=np.float64)
    bins = max(edges.size - 1, 1)
    idx = np.searchsorted(edges[1:-1], values, side="right")
    return np.bincount(idx, minlength=bins)[:bins]


def _numpy(values: pa.Array) -> np.ndarray:
    return np.asarray(values.drop_null().to_numpy(zero_copy_only=False), dtype=np.float64)


@dataclass
class ColumnPartial:
    """Mergeable statistics of one column over some rows."""

    rows: int = 0
    nulls: int = 0
    min: float | None = None
    max: float | None = None
    total: float = 0.0
    fine: FineHistogram | None = None
    categories: Counter[str] | None = None
    # Rows holding min and max (numbers): removing rows then knows whether an extreme
    # survived without reading the column back. 0 when not counted (dates).
    at_min: int = 0
    at_max: int = 0

    def merge(self, other: ColumnPartial) -> ColumnPartial:
        """Combine with a partial of other rows of the same column."""

        def pick(fn: Any, a: float | None, b: float | None) -> float | None:
            return b if a is None else a if b is None else fn(a, b)

        lo, hi = pick(min, self.min, other.min), pick(max, self.max, other.max)
        out = ColumnPartial(
            rows=self.rows + other.rows,
            nulls=self.nulls + other.nulls,
            min=lo,
            max=hi,
            total=self.total + other.total,
            at_min=(self.at_min if self.min == lo else 0)
            + (other.at_min if other.min == lo else 0),
            at_max=(self.at_max if self.max == hi else 0)
            + (other.at_max if other.max == hi else 0),
        )
        if self.fine is not None or other.fine is not None:
            out.fine = (self.fine or FineHistogram()).combine(other.fine or FineHistogram())
        if self.categories is not None or other.categories is not None:
            out.categories = (self.categories or Counter()) + (other.categories or Counter())
        return out

    def remove(self, other: ColumnPartial, *, integral: bool = False) -> tuple[ColumnPartial, bool]:
        """Take away rows counted in ``other`` (dropped duplicates).

        Args:
            other: The rows taken away.
            integral: The column holds whole numbers (ints, flags): a fine bin below 512
                then holds one value, so the histogram alone tells whether an extreme
                survived.

        Returns:
            (the rest, whether min/max may have changed and need recomputing).
        """
        out = ColumnPartial(
            rows=self.rows - other.rows,
            nulls=self.nulls - other.nulls,
            min=self.min,
            max=self.max,
            total=self.total - other.total,
        )
        if self.fine is not None:
            out.fine = self.fine.combine(other.fine or FineHistogram(), sign=-1)
        if self.categories is not None:
            out.categories = self.categories - (other.categories or Counter())
        out.at_min = self.at_min - (other.at_min if other.min == self.min else 0)
        out.at_max = self.at_max - (other.at_max if other.max == self.max else 0)
        stale = other.min is not None and (other.min == self.min or other.max == self.max)
        if stale and self.at_min and self.at_max:
            # Counted: an extreme survives while rows holding it remain.
            stale = not (
                (other.min != self.min or out.at_min > 0)
                and (other.max != self.max or out.at_max > 0)
            )
        if stale and integral and out.fine is not None and out.fine.keys.size:
            # A flag's 0 and 1 are in nearly every dropped row: reading the column back for
            # them cost ~0.5 s per 5M rows. The rest's first and last fine bins say it.
            low = other.min != self.min or _holds(out.fine.keys[0], self.min)
            high = other.max != self.max or _holds(out.fine.keys[-1], self.max)
            stale = not (low and high)
        return out, stale


def _holds(key: np.uint64, value: float | None) -> bool:
    """Whether the fine bin ``key`` is the bin of the whole number ``value`` alone."""
    return value is not None and abs(value) < 512 and key == fine_keys(np.array([value]))[0]


def column_partial(values: pa.Array, col: ColumnSpec) -> ColumnPartial:
    """Statistics of one column of a batch (numbers also into fine bins)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    part = ColumnPartial(rows=len(values), nulls=values.null_count)
    kind = profiled(col)
    if kind == "numeric":
        nums = _numpy(values)
        if nums.size:
            part.min, part.max, part.total = float(nums.min()), float(nums.max()), float(nums.sum())
            part.at_min = int(np.count_nonzero(nums == part.min))
            part.at_max = int(np.count_nonzero(nums == part.max))
        part.fine = FineHistogram.of(nums)
    elif col.type == "datetime":
        mm = pc.min_max(values)
        lo, hi = mm["min"].as_py(), mm["max"].as_py()
        part.min = lo.timestamp() if lo is not None else None
        part.max = hi.timestamp() if hi is not None else None
    if kind == "categorical":
        vc = pc.value_counts(values.drop_null())
        part.categories = Counter(
            dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True))
        )
    return part


def profile_document(
    contract: Contract,
    partials: dict[str, ColumnPartial],
    *,
    name: str,
    version: str,
    rows: int,
) -> dict[str, Any]:
    """The reference profile (``profile.json``) from the curated data's merged partials."""
    features: dict[str, Any] = {}
    for col in contract.columns:
        kind = profiled(col)
        part = partials.get(col.name)
        if kind is None or part is None:
            continue
        if kind == "numeric":
            edges: list[float] = []
            counts: list[int] = []
            if part.fine is not None and part.min is not None and part.max is not None:
                edges, counts = equal_frequency(part.fine, part.min, part.max)
            features[col.name] = {
                "kind": "numeric",
                "type": col.type,
                "edges": edges,
                "counts": counts,
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
