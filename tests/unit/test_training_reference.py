"""monitoring.json from a fitted model and its holdout: predictions in the sketches' layout,
a calibration map for classifiers, the target's edges for regressors (no MLflow, no Ray)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression, LogisticRegression

from mlfleet.monitoring.reference import PREDICTION, build_reference
from mlfleet.monitoring.sketch import Binner
from mlfleet.training.reference import monitoring_document

PROFILE = {
    "features": {
        "x": {"kind": "numeric", "edges": [-3.0, 0.0, 3.0], "counts": [50, 50], "nulls": 0},
        "y": {
            "kind": "numeric",
            "edges": [-10.0, -1.0, 0.0, 1.0, 10.0],
            "counts": [25, 25, 25, 25],
            "nulls": 0,
        },
    },
    "bins": 20,
}


def data(rows: int = 400, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    return pd.DataFrame({"x": x}), x


def test_a_classifier_logs_its_prediction_frequencies_and_a_calibration_map() -> None:
    X, x = data()
    rng = np.random.default_rng(1)
    y = pd.Series(np.where(x + rng.normal(scale=0.8, size=x.size) > 0, "yes", "no"))
    model = LogisticRegression().fit(X[:300], y[:300])
    X_hold, y_hold = X[300:].reset_index(drop=True), y[300:].reset_index(drop=True)

    doc = monitoring_document(
        model, X_hold, y_hold, task="classification", target="y", profile=PROFILE
    )
    doc = json.loads(json.dumps(doc))  # as logged and read back
    assert doc["task"] == "classification" and doc["target"] == "y"
    assert doc["holdout_rows"] == 100
    prediction = doc["prediction"]
    assert prediction["name"] == PREDICTION and prediction["kind"] == "categorical"
    assert prediction["categories"] == ["no", "yes"]
    predicted = pd.Series(model.predict(X_hold)).value_counts()
    assert prediction["counts"] == [int(predicted.get("no", 0)), int(predicted.get("yes", 0)), 0]

    calibration = doc["calibration"]
    assert calibration is not None
    ys = np.asarray(calibration["y"])
    assert np.all(np.diff(ys) >= 0) and ys.min() >= 0 and ys.max() <= 1
    # The mean calibrated confidence on the holdout is close to the holdout accuracy.
    reference = build_reference("m", "1", PROFILE, doc, ["x"])
    assert reference.calibration is not None
    top = model.predict_proba(X_hold).max(axis=1)
    accuracy = float((model.predict(X_hold) == y_hold).mean())
    assert abs(float(reference.calibration(top).mean()) - accuracy) < 0.05

    # Live predictions of the same model land in the same slots.
    counts = Binner(reference).count(X_hold, list(model.predict(X_hold)))
    assert counts.columns[PREDICTION].tolist() == prediction["counts"]


def test_numeric_class_labels_compare_as_text_like_served_predictions() -> None:
    X, x = data()
    y = pd.Series((x > 0).astype(int))
    model = LogisticRegression().fit(X, y)
    doc = monitoring_document(model, X, y, task="classification", target="y", profile=PROFILE)
    assert doc["prediction"]["categories"] == ["0", "1"]
    assert sum(doc["prediction"]["counts"]) == len(X) and doc["prediction"]["counts"][-1] == 0


def test_a_regressor_bins_its_holdout_predictions_on_the_targets_profile_edges() -> None:
    X, x = data()
    y = pd.Series(3 * x)
    model = LinearRegression().fit(X, y)
    doc = monitoring_document(model, X, y, task="regression", target="y", profile=PROFILE)
    prediction = doc["prediction"]
    assert doc["calibration"] is None
    assert prediction["kind"] == "numeric"
    assert prediction["edges"] == PROFILE["features"]["y"]["edges"]
    predicted = model.predict(X)
    expected = [
        int((predicted < -10).sum()),
        int(((predicted >= -10) & (predicted < -1)).sum()),
        int(((predicted >= -1) & (predicted < 0)).sum()),
        int(((predicted >= 0) & (predicted < 1)).sum()),
        int(((predicted >= 1) & (predicted <= 10)).sum()),
        int((predicted > 10).sum()),
    ]
    assert prediction["counts"] == expected and sum(expected) == len(X)


def test_a_regressor_without_a_profiled_target_gets_edges_from_its_holdout() -> None:
    X, x = data()
    y = pd.Series(2 * x + 1)
    model = LinearRegression().fit(X, y)
    doc = monitoring_document(model, X, y, task="regression", target="y", profile={"features": {}})
    edges = doc["prediction"]["edges"]
    assert len(edges) > 2 and edges == sorted(edges)
    assert edges[0] == float(y.min()) and edges[-1] == float(y.max())
    assert sum(doc["prediction"]["counts"]) == len(X)
