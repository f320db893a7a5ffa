"""Realised performance once labels arrive, estimated accuracy before, and its calibration.

- :class:`ConfusionCounts` (classifiers): a confusion matrix over the reference's class
  labels plus ``other`` (labels or predictions the reference never saw), giving accuracy
  and macro F1.
- :class:`ErrorCounts` (regressors): the sum of absolute errors and the rows, giving MAE.

Both are additive like the sketches' counts, so they live in the same one-minute buckets
and windows (:mod:`mlfleet.monitoring.window`).

Before labels arrive, a classifier's accuracy is estimated as the mean calibrated
top-class confidence of its predictions (the idea of NannyML's CBPE):
:func:`estimated_accuracy` reads it from the sketches' counts, and :func:`fit_calibration`
fits the map from top-class probability to P(correct) on the holdout at training time.
The estimate holds under covariate shift (the inputs move, P(label | inputs) does not);
a change of the labelling itself (concept shift) only shows in the realised figures.

Pure numpy; scikit-learn only inside :func:`fit_calibration`, which runs at training time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlfleet.monitoring.reference import Calibration
from mlfleet.monitoring.sketch import Counts

OTHER = "other"  # the slot of a label the reference does not know
CALIBRATION_PRIOR_ROWS = 10.0


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and value != value)


@dataclass
class ConfusionCounts:
    """A confusion matrix ``matrix[true, predicted]`` over ``labels`` + ``other``.

    Labels compare as text (``str(label)``), as the sketches bin predictions.
    """

    labels: tuple[str, ...]
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))

    def __post_init__(self) -> None:
        size = len(self.labels) + 1
        if self.matrix.size == 0:
            self.matrix = np.zeros((size, size), np.int64)
        elif self.matrix.shape != (size, size):
            raise ValueError(f"a matrix over {size} slots must be {size}×{size}")

    @classmethod
    def of(
        cls, labels: Sequence[str], y_true: Sequence[Any], y_pred: Sequence[Any]
    ) -> ConfusionCounts:
        """Count pairs of (true label, prediction); pairs with a missing side are skipped."""
        if len(y_true) != len(y_pred):
            raise ValueError(f"{len(y_true)} labels for {len(y_pred)} predictions")
        out = cls(tuple(str(label) for label in labels))
        slot_of = {label: i for i, label in enumerate(out.labels)}
        other = len(out.labels)
        pairs = [(t, p) for t, p in zip(y_true, y_pred, strict=True) if _present(t) and _present(p)]
        if pairs:
            true = np.fromiter((slot_of.get(str(t), other) for t, _ in pairs), np.int64)
            pred = np.fromiter((slot_of.get(str(p), other) for _, p in pairs), np.int64)
            size = other + 1
            flat = np.bincount(true * size + pred, minlength=size * size)
            out.matrix = flat.reshape(size, size).astype(np.int64)
        return out

    @property
    def rows(self) -> int:
        """Labelled predictions counted."""
        return int(self.matrix.sum())

    def add(self, other: ConfusionCounts) -> ConfusionCounts:
        """Add ``other`` (same labels) in place and return self."""
        if other.labels != self.labels:
            raise ValueError("confusion counts over different labels do not add")
        self.matrix += other.matrix
        return self

    @property
    def accuracy(self) -> float | None:
        """Share of right predictions (None without labelled rows)."""
        rows = self.rows
        return None if rows == 0 else float(np.trace(self.matrix)) / rows

    @property
    def macro_f1(self) -> float | None:
        """Unweighted mean of per-label F1 over the labels seen as truth or prediction.

        The same as ``sklearn.metrics.f1_score(y_true, y_pred, average="macro")`` on the
        labels mapped to ``labels`` + ``other``. None without labelled rows.
        """
        if self.rows == 0:
            return None
        hits = np.diag(self.matrix).astype(np.float64)
        truth = self.matrix.sum(axis=1)
        predicted = self.matrix.sum(axis=0)
        seen = (truth + predicted) > 0
        f1 = 2 * hits[seen] / (truth[seen] + predicted[seen])
        return float(f1.mean())

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (inverse of :meth:`from_json`)."""
        return {"labels": list(self.labels), "matrix": self.matrix.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConfusionCounts:
        """Read what :meth:`to_json` wrote."""
        return cls(tuple(data["labels"]), np.asarray(data["matrix"], np.int64))


@dataclass
class ErrorCounts:
    """Absolute errors of a regressor's labelled predictions."""

    rows: int = 0
    abs_error: float = 0.0

    @classmethod
    def of(cls, y_true: Sequence[Any], y_pred: Sequence[Any]) -> ErrorCounts:
        """Count pairs of (true value, prediction); pairs with a missing side are skipped."""
        if len(y_true) != len(y_pred):
            raise ValueError(f"{len(y_true)} labels for {len(y_pred)} predictions")
        true = np.asarray([np.nan if v is None else v for v in y_true], np.float64)
        pred = np.asarray([np.nan if v is None else v for v in y_pred], np.float64)
        error = np.abs(true - pred)
        error = error[~np.isnan(error)]
        return cls(int(error.size), float(error.sum()))

    def add(self, other: ErrorCounts) -> ErrorCounts:
        """Add ``other`` in place and return self."""
        self.rows += other.rows
        self.abs_error += other.abs_error
        return self

    @property
    def mae(self) -> float | None:
        """Mean absolute error (None without labelled rows)."""
        return None if self.rows == 0 else self.abs_error / self.rows

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"rows": self.rows, "abs_error": self.abs_error}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ErrorCounts:
        """Read what :meth:`to_json` wrote."""
        return cls(int(data["rows"]), float(data["abs_error"]))


def estimated_accuracy(counts: Counts) -> float | None:
    """Mean calibrated top-class confidence of the scored rows (None if none was scored)."""
    return None if counts.scored == 0 else counts.confidence / counts.scored


def fit_calibration(
    top_probability: Sequence[float] | np.ndarray,
    correct: Sequence[bool] | np.ndarray,
    *,
    prior_rows: float = CALIBRATION_PRIOR_ROWS,
) -> Calibration:
    """Fit the map from a prediction's top-class probability to P(it is right).

    Isotonic regression (non-decreasing, within [0, 1]) on the holdout, stored as its
    breakpoints so that applying it is ``np.interp`` only, outside the fitted range
    included (clipped to the end values, as the fit's own ``predict`` does).

    A small holdout says little, so the fit leans on a prior worth ``prior_rows`` rows
    that the model's probabilities are calibrated as they are: each holdout row's target
    is its outcome (1 or 0) with weight 1 plus its own probability with weight
    ``prior_rows / n``. For a large holdout the prior vanishes; for a tiny one, or one
    where the model was always right (or always wrong), the map stays tied to the
    probabilities instead of becoming a flat 1 (or 0). With no rows at all the map is
    the identity.

    Args:
        top_probability: The highest class probability of each holdout prediction.
        correct: Whether each holdout prediction was right.
        prior_rows: Weight of the prior, in rows (0 for plain isotonic regression).
    """
    from sklearn.isotonic import IsotonicRegression

    x = np.clip(np.asarray(top_probability, dtype=np.float64), 0.0, 1.0)
    y = np.asarray(correct, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"{x.size} probabilities for {y.size} outcomes")
    keep = ~np.isnan(x)
    x, y = x[keep], y[keep]
    if x.size == 0:
        return Calibration(np.array([0.0, 1.0]), np.array([0.0, 1.0]))
    prior = prior_rows / x.size
    target = (y + prior * x) / (1 + prior)
    fit = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    fit.fit(x, target)
    return Calibration(
        np.asarray(fit.X_thresholds_, np.float64), np.asarray(fit.y_thresholds_, np.float64)
    )
