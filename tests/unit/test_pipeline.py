from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.linear_model import LogisticRegression

from mlfleet.contract.schema import parse_contract
from mlfleet.errors import SpecError
from mlfleet.training.features import build_pipeline, feature_frame
from mlfleet.training.trials import TrialOutcome, best_outcome, rung_fractions
from tests.support.messy import CONTRACT_YAML

CONTRACT = parse_contract(yaml.safe_load(CONTRACT_YAML))
FEATURES = ["age", "plan", "monthly_spend"]


def training_rows(n: int = 200) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(0)
    plan = rng.choice(["basic", "pro", "enterprise"], n)
    spend = rng.uniform(0, 100, n)
    rows = pd.DataFrame(
        {"age": rng.integers(18, 90, n).astype(float), "plan": plan, "monthly_spend": spend}
    )
    y = pd.Series(np.where((plan == "pro") | (spend > 70), "yes", "no"))
    return rows, y


def test_pipeline_handles_nulls_and_unseen_categories() -> None:
    rows, y = training_rows()
    model = build_pipeline(CONTRACT, FEATURES, LogisticRegression(max_iter=500))
    model.fit(feature_frame(rows, CONTRACT, FEATURES), y)
    raw = pd.DataFrame(
        [
            {"age": None, "plan": None, "monthly_spend": None},
            {"age": 40, "plan": "platinum", "monthly_spend": 10},  # never seen in training
            {"age": 30, "plan": "pro", "monthly_spend": 99},
        ]
    )
    pred = model.predict(feature_frame(raw, CONTRACT, FEATURES))
    assert len(pred) == 3 and set(pred) <= {"yes", "no"}
    assert pred[2] == "yes"
    proba = model.predict_proba(feature_frame(raw, CONTRACT, FEATURES))
    assert np.allclose(proba.sum(axis=1), 1.0)


def test_feature_frame_types_are_stable_whatever_the_nulls() -> None:
    frame = feature_frame(
        pd.DataFrame({"age": [1, None], "plan": ["pro", None], "monthly_spend": [3, 4]}),
        CONTRACT,
        FEATURES,
    )
    assert frame["age"].dtype == np.float64 and frame["monthly_spend"].dtype == np.float64
    assert frame["plan"].tolist() == ["pro", None]


def test_datetime_and_free_text_features_are_refused() -> None:
    with pytest.raises(SpecError, match="'signup_date' has type datetime"):
        build_pipeline(CONTRACT, ["signup_date"], LogisticRegression())
    with pytest.raises(SpecError, match="'email' has type str"):
        build_pipeline(CONTRACT, ["email"], LogisticRegression())


def test_rungs_grow_with_the_data() -> None:
    assert rung_fractions(500, "asha") == [1.0]
    assert rung_fractions(4_000, "asha") == [0.25, 0.5, 1.0]
    assert rung_fractions(50_000, "asha") == [0.125, 0.25, 0.5, 1.0]
    assert rung_fractions(50_000, "fifo") == [1.0]


def test_best_outcome_only_compares_trials_that_saw_all_the_data() -> None:
    early = TrialOutcome(0, "e", {}, scores=[(0.125, 0.99)])
    full_a = TrialOutcome(1, "e", {}, scores=[(0.125, 0.5), (1.0, 0.8)])
    full_b = TrialOutcome(2, "e", {}, scores=[(0.125, 0.6), (1.0, 0.9)])
    assert best_outcome([early, full_a, full_b], "max").index == 2
    assert best_outcome([early, full_a, full_b], "min").index == 1


def test_every_fraction_below_one_is_an_asha_decision_point() -> None:
    from mlfleet.training.trials import RUNG_UNITS, rung_of

    assert [rung_of(f) for f in (0.125, 0.25, 0.5, 1.0)] == [1, 2, 4, RUNG_UNITS]


def test_serving_predict_matches_the_pipeline() -> None:
    from mlfleet.serving.models import predict

    rows, y = training_rows()
    model = build_pipeline(CONTRACT, FEATURES, LogisticRegression(max_iter=500))
    frame = feature_frame(rows, CONTRACT, FEATURES)
    model.fit(frame, y)
    out = predict(model, frame.head(7))
    assert out["predictions"] == list(model.predict(frame.head(7)))
    assert np.allclose(out["probabilities"], model.predict_proba(frame.head(7)), atol=1e-6)
    assert out["classes"] == ["no", "yes"]
