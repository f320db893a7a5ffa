"""References, sketches and flushes for the drift monitor's tests (no Ray)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlfleet.monitoring.protocol import Flush, SketchPart
from mlfleet.monitoring.reference import (
    PREDICTION,
    Calibration,
    MonitorReference,
    categorical_reference,
    numeric_reference,
)
from mlfleet.monitoring.sketch import Binner, Counts

CLASSES = ("no", "yes")
PLANS = ("basic", "pro", "team")
EDGES = [float(e) for e in np.linspace(-3.0, 3.0, 13)]  # 12 bins of a standard normal


def reference(model: str = "churn", version: str = "1", numeric: int = 3) -> MonitorReference:
    """A classifier's reference: ``x0 … x{numeric-1}`` ~ N(0, 1), ``plan`` and the predictions
    balanced, and a calibration map that leaves confidences as they are."""
    rng = np.random.default_rng(0)
    features = []
    for i in range(numeric):
        inner, _ = np.histogram(np.clip(rng.normal(size=20_000), -3, 3), bins=EDGES)
        features.append(numeric_reference(f"x{i}", EDGES, [int(c) for c in inner]))
    features.append(categorical_reference("plan", dict.fromkeys(PLANS, 1_000)))
    return MonitorReference(
        model=model,
        version=version,
        task="classification",
        features=tuple(features),
        prediction=categorical_reference(PREDICTION, dict.fromkeys(CLASSES, 1_000)),
        calibration=Calibration(np.array([0.0, 1.0]), np.array([0.0, 1.0])),
    )


def frame(ref: MonitorReference, rows: int, *, shift: float = 0.0, seed: int = 1) -> pd.DataFrame:
    """Rows like the reference's; ``shift`` moves every numeric feature by that many sd."""
    rng = np.random.default_rng(seed)
    data: dict[str, object] = {}
    for col in ref.features:
        if col.kind == "numeric":
            data[col.name] = rng.normal(loc=shift, size=rows)
        else:
            data[col.name] = rng.choice(PLANS, size=rows)
    return pd.DataFrame(data)


def sketch(
    ref: MonitorReference,
    rows: int,
    *,
    shift: float = 0.0,
    seed: int = 1,
    confidence: float = 0.8,
) -> Counts:
    """Counts of ``rows`` rows as a replica bins them (balanced predictions, fixed confidence)."""
    rng = np.random.default_rng(seed + 1)
    predictions = list(rng.choice(CLASSES, size=rows))
    proba = np.column_stack([np.full(rows, confidence), np.full(rows, 1 - confidence)])
    return Binner(ref).count(frame(ref, rows, shift=shift, seed=seed), predictions, proba)


def flush(sender: str, seq: int, *parts: tuple[MonitorReference, int, Counts]) -> Flush:
    """A flush of (reference, minute, counts) parts."""
    return Flush(
        sender=sender,
        seq=seq,
        parts=[SketchPart(ref.model, ref.version, minute, counts) for ref, minute, counts in parts],
    )


def total(*counts: Counts) -> Counts:
    """The sum of some counts (new counts, the arguments untouched)."""
    out = Counts()
    for c in counts:
        out.add(c)
    return out
