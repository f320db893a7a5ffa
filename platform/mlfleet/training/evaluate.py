"""Holdout metrics per task, and the spec's scorer."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics
from sklearn.metrics import get_scorer


def score(model: Any, X: pd.DataFrame, y: pd.Series, metric: str) -> float:
    """The spec metric as sklearn's scorer computes it (``neg_*`` scorers stay negative)."""
    return float(get_scorer(metric)(model, X, y))


def holdout_metrics(
    model: Any, X: pd.DataFrame, y: pd.Series, task: str, metric: str
) -> dict[str, float]:
    """Standard metrics for ``task`` plus the spec metric, on the holdout set."""
    out: dict[str, float] = {metric: score(model, X, y, metric)}
    pred = model.predict(X)
    if task == "classification":
        out["accuracy"] = float(metrics.accuracy_score(y, pred))
        out["f1_macro"] = float(metrics.f1_score(y, pred, average="macro"))
        out["balanced_accuracy"] = float(metrics.balanced_accuracy_score(y, pred))
        if hasattr(model, "predict_proba"):
            proba = model.predict_proba(X)
            classes = list(model.classes_)
            try:
                out["log_loss"] = float(metrics.log_loss(y, proba, labels=classes))
                if len(classes) == 2:
                    out["roc_auc"] = float(metrics.roc_auc_score(y, proba[:, 1]))
                else:
                    out["roc_auc_ovr"] = float(
                        metrics.roc_auc_score(y, proba, multi_class="ovr", labels=classes)
                    )
            except ValueError:
                pass  # a class missing from a tiny holdout
    else:
        out["rmse"] = float(np.sqrt(metrics.mean_squared_error(y, pred)))
        out["mae"] = float(metrics.mean_absolute_error(y, pred))
        out["r2"] = float(metrics.r2_score(y, pred))
    return out
