"""What live traffic is compared with: a model version's reference, in the sketches' layout.

A reference comes from two documents logged beside every model version: the dataset
version's ``profile.json`` (the features, binned on the curated data) and
``monitoring.json`` (the predictions on the holdout and, for classifiers, a confidence
calibration map). Both sides of every comparison use one layout per column:

- numeric: ``[underflow, bin_0 … bin_k-1, overflow]`` against the reference edges
  ``e_0 … e_k`` (bin ``i`` holds ``e_i <= x < e_i+1``, the last bin is closed);
- categorical: ``[value_0 … value_m-1, other]`` over the reference's known values;
- nulls are counted apart and never enter the statistics.

Pure numpy; no Ray, no MLflow.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

PREDICTION = "prediction"  # the name the predictions go by among the features

ColumnKind = Literal["numeric", "categorical"]


@dataclass(frozen=True)
class ColumnReference:
    """One monitored column (a feature or the predictions) and its reference counts."""

    name: str
    kind: ColumnKind
    edges: np.ndarray | None  # numeric: the k+1 reference edges
    categories: tuple[str, ...] | None  # categorical: the known values, in slot order
    counts: np.ndarray  # the reference, in the live layout (see the module docstring)
    nulls: int = 0

    @property
    def slots(self) -> int:
        """Length of a count vector for this column."""
        return int(self.counts.size)

    def labels(self) -> list[str]:
        """A short label per slot, for histograms in the API and CLI."""
        if self.kind == "categorical":
            assert self.categories is not None
            return [*self.categories, "other"]
        assert self.edges is not None
        edges = [f"{e:.6g}" for e in self.edges]
        inner = [f"[{a}, {b})" for a, b in itertools.pairwise(edges)]
        if inner:
            inner[-1] = inner[-1][:-1] + "]"
        return [f"< {edges[0]}", *inner, f"> {edges[-1]}"]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (inverse of :meth:`from_json`)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "edges": None if self.edges is None else [float(e) for e in self.edges],
            "categories": None if self.categories is None else list(self.categories),
            "counts": [int(c) for c in self.counts],
            "nulls": int(self.nulls),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ColumnReference:
        """Read what :meth:`to_json` wrote."""
        edges = data.get("edges")
        categories = data.get("categories")
        return cls(
            name=str(data["name"]),
            kind=data["kind"],
            edges=None if edges is None else np.asarray(edges, dtype=np.float64),
            categories=None if categories is None else tuple(str(c) for c in categories),
            counts=np.asarray(data["counts"], dtype=np.int64),
            nulls=int(data.get("nulls", 0)),
        )


def numeric_reference(
    name: str, edges: list[float], counts: list[int], nulls: int = 0
) -> ColumnReference:
    """A numeric column from a profile's edges and bin counts (no under/overflow there)."""
    edge_array = np.asarray(edges, dtype=np.float64)
    if edge_array.size < 2:
        raise ValueError(f"{name}: a numeric reference needs at least two edges")
    inner = np.asarray(counts, dtype=np.int64)
    if inner.size != edge_array.size - 1:
        raise ValueError(f"{name}: {edge_array.size} edges need {edge_array.size - 1} counts")
    layout = np.concatenate([[0], inner, [0]]).astype(np.int64)
    return ColumnReference(name, "numeric", edge_array, None, layout, nulls)


def categorical_reference(
    name: str, frequencies: dict[str, int], nulls: int = 0
) -> ColumnReference:
    """A categorical column from a profile's value frequencies (``other`` starts empty)."""
    categories = tuple(str(k) for k in frequencies)
    layout = np.asarray([*(int(v) for v in frequencies.values()), 0], dtype=np.int64)
    return ColumnReference(name, "categorical", None, categories, layout, nulls)


def profile_reference(name: str, feature: dict[str, Any]) -> ColumnReference | None:
    """One feature of ``profile.json`` as a reference (None for a column without bins)."""
    nulls = int(feature.get("nulls", 0))
    if feature.get("kind") == "numeric":
        edges, counts = feature.get("edges") or [], feature.get("counts") or []
        if len(edges) < 2:
            return None  # a column that held no value at all in the training data
        return numeric_reference(name, edges, counts, nulls)
    if feature.get("kind") == "categorical":
        return categorical_reference(name, dict(feature.get("frequencies") or {}), nulls)
    return None


@dataclass(frozen=True)
class Calibration:
    """Maps a prediction's top class probability to the chance that it is right.

    Fitted on the holdout at training time (isotonic regression), applied with
    ``np.interp`` on its breakpoints: the mean calibrated confidence of a window is the
    estimated accuracy before any label arrives (the idea of NannyML's CBPE).
    """

    x: np.ndarray
    y: np.ndarray

    def __call__(self, confidence: np.ndarray) -> np.ndarray:
        """Calibrated confidences for raw top-class probabilities."""
        return np.interp(confidence, self.x, self.y)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"x": [float(v) for v in self.x], "y": [float(v) for v in self.y]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        """Read what :meth:`to_json` wrote."""
        return cls(np.asarray(data["x"], np.float64), np.asarray(data["y"], np.float64))


@dataclass(frozen=True)
class MonitorReference:
    """Everything a prediction site and the monitor need about one model version."""

    model: str
    version: str
    task: str  # "classification" or "regression"
    features: tuple[ColumnReference, ...]
    prediction: ColumnReference
    calibration: Calibration | None = None

    def column(self, name: str) -> ColumnReference:
        """The reference of a feature, or of the predictions (``PREDICTION``)."""
        if name == PREDICTION:
            return self.prediction
        for col in self.features:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def columns(self) -> tuple[ColumnReference, ...]:
        """The features, then the predictions."""
        return (*self.features, self.prediction)


def build_reference(
    model: str,
    version: str,
    profile: dict[str, Any],
    monitoring: dict[str, Any],
    features: list[str],
) -> MonitorReference:
    """A version's reference from its logged ``profile.json`` and ``monitoring.json``.

    Features the profile does not bin (free text, dates, a column that was always empty)
    are not monitored.
    """
    profiled = profile.get("features", {})
    columns = []
    for name in features:
        if name in profiled:
            ref = profile_reference(name, profiled[name])
            if ref is not None:
                columns.append(ref)
    calibration = monitoring.get("calibration")
    return MonitorReference(
        model=model,
        version=version,
        task=str(monitoring.get("task", "classification")),
        features=tuple(columns),
        prediction=ColumnReference.from_json(monitoring["prediction"]),
        calibration=None if calibration is None else Calibration.from_json(calibration),
    )
