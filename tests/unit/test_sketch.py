"""Binning live rows against a version's reference (hand-counted expectations)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlfleet.monitoring.reference import (
    PREDICTION,
    Calibration,
    ColumnReference,
    MonitorReference,
    categorical_reference,
    numeric_reference,
    profile_reference,
)
from mlfleet.monitoring.sketch import Binner, Counts

REFERENCE = MonitorReference(
    model="penguins",
    version="3",
    task="classification",
    features=(
        numeric_reference("mass", [2000.0, 3000.0, 4000.0, 7000.0], [10, 20, 30], nulls=2),
        categorical_reference("island", {"biscoe": 30, "dream": 20, "torgersen": 10}),
    ),
    prediction=categorical_reference(PREDICTION, {"adelie": 25, "gentoo": 35}),
    calibration=Calibration(np.array([0.5, 1.0]), np.array([0.4, 0.9])),
)


def test_reference_layout_adds_under_and_overflow_and_other() -> None:
    mass = REFERENCE.column("mass")
    assert mass.counts.tolist() == [0, 10, 20, 30, 0] and mass.nulls == 2
    assert REFERENCE.column("island").counts.tolist() == [30, 20, 10, 0]
    assert mass.labels() == ["< 2000", "[2000, 3000)", "[3000, 4000)", "[4000, 7000]", "> 7000"]
    assert ColumnReference.from_json(mass.to_json()).to_json() == mass.to_json()


@pytest.mark.parametrize("rows", [1, 5, 200])  # the small-batch loop and the numpy path
def test_binning_counts_every_row_once(rows: int) -> None:
    frame = pd.DataFrame(
        {
            "mass": [1999.0, 2000.0, 3999.9, 7000.0, np.nan] * 40,
            "island": ["dream", "biscoe", "atlantis", None, "dream"] * 40,
        }
    ).head(rows)
    predictions = (["adelie", "gentoo", "emperor", "gentoo", "adelie"] * 40)[:rows]
    proba = np.array([[0.5, 0.5], [0.0, 1.0], [0.25, 0.75], [0.1, 0.9], [0.6, 0.4]] * 40)[:rows]
    counts = Binner(REFERENCE).count(frame, predictions, proba)
    full, left = divmod(rows, 5)
    first = lambda k: full + (1 if k < left else 0)  # noqa: E731 - rows of pattern slot k
    assert counts.rows == rows
    assert counts.columns["mass"].tolist() == [first(0), first(1), first(2), first(3), 0]
    assert counts.nulls["mass"] == first(4)
    assert counts.columns["island"].tolist() == [first(1), first(0) + first(4), 0, first(2)]
    assert counts.nulls["island"] == first(3)
    assert counts.columns[PREDICTION].tolist() == [
        first(0) + first(4),
        first(1) + first(3),
        first(2),
    ]
    # Calibrated top-class confidence: 0.5→0.4, 1.0→0.9, 0.75→0.65, 0.9→0.8, 0.6→0.5.
    expected = sum([0.4, 0.9, 0.65, 0.8, 0.5][k] * first(k) for k in range(5))
    assert counts.scored == rows and counts.confidence == pytest.approx(expected)


def test_counts_add_exactly_and_round_trip() -> None:
    binner = Binner(REFERENCE)
    a = binner.count(pd.DataFrame({"mass": [2500.0], "island": ["dream"]}), ["adelie"])
    b = binner.count(pd.DataFrame({"mass": [9000.0], "island": ["dream"]}), ["gentoo"])
    total = Counts.empty(REFERENCE).add(a).add(b)
    assert total.rows == 2 and total.columns["mass"].tolist() == [0, 1, 0, 0, 1]
    assert total.columns["island"].tolist() == [0, 2, 0, 0]
    assert Counts.from_json(total.to_json()).to_json() == total.to_json()
    with pytest.raises(ValueError, match="slots"):
        total.add(Counts(columns={"mass": np.zeros(3, np.int64)}))


def test_profile_features_become_references() -> None:
    numeric = {"kind": "numeric", "edges": [1.0, 2.0, 3.0], "counts": [4, 5], "nulls": 1}
    assert profile_reference("x", numeric).counts.tolist() == [0, 4, 5, 0]  # type: ignore[union-attr]
    assert profile_reference("y", {"kind": "numeric", "edges": [], "counts": []}) is None
    constant = profile_reference("z", {"kind": "numeric", "edges": [5.0, 5.0], "counts": [9]})
    assert constant is not None
    binner = Binner(
        MonitorReference(
            "m", "1", "regression", (constant,), numeric_reference(PREDICTION, [0, 1], [1])
        )
    )
    counts = binner.count(pd.DataFrame({"z": [4.0, 5.0, 6.0]}), [0.5, 2.0, -1.0])
    assert counts.columns["z"].tolist() == [1, 1, 1]
    assert counts.columns[PREDICTION].tolist() == [1, 1, 1]
