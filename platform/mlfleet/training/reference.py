"""The monitoring reference of the predictions, computed on the holdout at training time.

``monitoring.json`` is logged beside every model version, next to the dataset version's
``profile.json`` (the features' reference); :func:`mlfleet.monitoring.loading.load_reference`
reads both back. It holds:

- ``task`` and ``target`` (the contract column the model predicts);
- ``prediction``: the holdout predictions in the sketches' layout
  (:class:`~mlfleet.monitoring.reference.ColumnReference` named ``prediction``):
  classifiers count them per class label (as text), regressors bin them on the profile's
  edges of the target, so live predictions are compared with what the model answered on
  data it had not seen;
- ``calibration`` (classifiers with class probabilities): the map from a prediction's top
  class probability to the chance it is right, fitted on the holdout; the monitor's
  estimated accuracy before labels arrive is the mean of it over a window.

The holdout predictions are counted by the same :class:`~mlfleet.monitoring.sketch.Binner`
that counts live traffic, so both sides agree on every edge and label.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlfleet.data.profile import FineHistogram, equal_frequency
from mlfleet.monitoring.performance import fit_calibration
from mlfleet.monitoring.reference import (
    PREDICTION,
    ColumnReference,
    MonitorReference,
    categorical_reference,
    numeric_reference,
)
from mlfleet.monitoring.sketch import Binner


def _plain(values: Any) -> list[Any]:
    """Numpy scalars as Python values, as the serving side returns predictions."""
    return [v.item() if hasattr(v, "item") else v for v in np.asarray(values, dtype=object)]


def _target_edges(profile: dict[str, Any], target: str, y: pd.Series) -> list[float]:
    """The profile's edges of the target, or equal-frequency edges of the holdout's target."""
    column = profile.get("features", {}).get(target) or {}
    edges = column.get("edges") or []
    if column.get("kind") == "numeric" and len(edges) >= 2:
        return [float(e) for e in edges]
    values = pd.to_numeric(y, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return [0.0, 0.0]
    found, _ = equal_frequency(
        FineHistogram.of(values), float(values.min()), float(values.max()), profile.get("bins", 20)
    )
    return found


def _counted(
    empty: ColumnReference, task: str, frame: pd.DataFrame, predictions: list[Any]
) -> ColumnReference:
    """``predictions`` counted into ``empty``'s layout (a reference with zero counts)."""
    binner = Binner(MonitorReference("", "", task, (), empty))
    counts = binner.count(frame, predictions)
    return ColumnReference(
        PREDICTION,
        empty.kind,
        empty.edges,
        empty.categories,
        counts.columns[PREDICTION],
        counts.nulls[PREDICTION],
    )


def monitoring_document(
    model: Any,
    X_hold: pd.DataFrame,
    y_hold: pd.Series,
    *,
    task: str,
    target: str,
    profile: dict[str, Any],
) -> dict[str, Any]:
    """The ``monitoring.json`` of a fitted model, from its holdout (see the module).

    Args:
        model: The fitted pipeline that is being registered.
        X_hold: The holdout's model input frame.
        y_hold: The holdout's target.
        task: ``classification`` or ``regression``.
        target: The target column's name.
        profile: The dataset version's ``profile.json`` (for the target's edges).
    """
    raw = model.predict(X_hold)
    predictions = _plain(raw)
    calibration = None
    if task == "classification":
        labels = [str(c) for c in _plain(model.classes_)]
        empty = categorical_reference(PREDICTION, dict.fromkeys(labels, 0))
        prediction = _counted(empty, task, X_hold, predictions)
        if hasattr(model, "predict_proba"):
            top = np.max(np.asarray(model.predict_proba(X_hold), dtype=np.float64), axis=1)
            correct = np.asarray(raw) == np.asarray(y_hold)
            calibration = fit_calibration(top, correct).to_json()
    else:
        edges = _target_edges(profile, target, y_hold)
        empty = numeric_reference(PREDICTION, edges, [0] * (len(edges) - 1))
        prediction = _counted(empty, task, X_hold, predictions)
    return {
        "task": task,
        "target": target,
        "holdout_rows": len(X_hold),
        "prediction": prediction.to_json(),
        "calibration": calibration,
    }
