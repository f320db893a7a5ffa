from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mlfleet.errors import SpecError
from mlfleet.spec import load_spec
from mlfleet.training.space import sample_configs
from tests.support.messy import CONTRACT_YAML

SPEC = {
    "name": "churn",
    "contract": "contract.yaml",
    "sources": ["data/customers.csv"],
    "task": "classification",
    "features": ["age", "plan", "monthly_spend"],
    "split": {"test_fraction": 0.2, "seed": 7, "stratify": True},
    "search": {
        "metric": "f1_macro",
        "mode": "max",
        "num_samples": 6,
        "max_concurrent": 2,
        "scheduler": "asha",
        "candidates": [
            {
                "estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
                "params": {
                    "learning_rate": {"loguniform": [0.01, 0.3]},
                    "max_depth": {"choice": [3, 5, None]},
                },
            },
            {
                "estimator": "sklearn.linear_model.LogisticRegression",
                "params": {"C": {"loguniform": [0.001, 10]}},
            },
        ],
    },
    "promotion": {"min_improvement": 0.0},
}


def write(tmp_path: Path, spec: dict) -> Path:
    (tmp_path / "contract.yaml").write_text(CONTRACT_YAML)
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_documented_spec_loads(tmp_path: Path) -> None:
    loaded = load_spec(write(tmp_path, SPEC))
    assert loaded.spec.name == "churn"
    assert loaded.target == "churned"
    assert loaded.features == ["age", "plan", "monthly_spend"]
    assert loaded.sources == [str(tmp_path / "data/customers.csv")]
    assert len(loaded.sha) == 64


def test_default_features_skip_target_keys_and_unencodable_columns(tmp_path: Path) -> None:
    spec = {k: v for k, v in SPEC.items() if k != "features"}
    loaded = load_spec(write(tmp_path, spec))
    # customer_id is the key, churned the target, signup_date a datetime, email free text.
    assert loaded.features == ["age", "plan", "monthly_spend"]


def mutate(path: str, value: object) -> dict:
    spec = yaml.safe_load(yaml.safe_dump(SPEC))
    node = spec
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node[key]
    last = keys[-1]
    if value is KeyError:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return spec


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("search.candidates.0.estimator", "os.system", "not an allowed estimator"),
        ("search.candidates.0.estimator", "sklearn.ensemble.NoSuchModel", "does not exist"),
        ("search.candidates.1.estimator", "sklearn.linear_model.Ridge", "is not a classifier"),
        ("search.candidates.1.params", {"C": {"lognormal": [1, 2]}}, "unknown distribution"),
        ("search.candidates.1.params", {"C": {"loguniform": [0, 1]}}, "positive low bound"),
        ("search.candidates.1.params", {"nope": 3}, "has no parameter 'nope'"),
        ("search.metric", "f2_weird", "not a scikit-learn scorer"),
        ("search.scheduler", "hyperband", "search.scheduler"),
        ("task", "ranking", "task"),
        ("split.test_fraction", 1.5, "split.test_fraction"),
        ("features", ["age", "height"], "'height' is not a column"),
        ("features", ["churned"], "the target 'churned' cannot be a feature"),
        ("features", ["signup_date"], None),
        ("name", "Bad_Name", "name"),
        ("search.num_samples", 0, "search.num_samples"),
        ("sources", [], "sources"),
        ("promotion.min_improvment", 0.1, "unknown key 'promotion.min_improvment'"),
        ("monitoring", {"features": {"email": {"drift": 0.3}}}, "'email' is not a feature"),
        ("monitoring", {"features": {"prediction": {"method": "chisquare"}}}, None),
        ("monitoring", {"drift_share": 0}, "monitoring.drift_share"),
        ("monitoring", {"window": {"minutes": 0}}, "monitoring.window.minutes"),
        ("monitoring", {"treshold": 0.2}, "unknown key 'monitoring.treshold'"),
        ("retrain", {"on_drift": True, "sustained_windows": 0}, "retrain.sustained_windows"),
        ("retrain", {"on_drift": True, "cooldown_minutes": 30}, None),
    ],
)
def test_bad_specs_name_the_field(
    tmp_path: Path, path: str, value: object, expected: str | None
) -> None:
    spec = mutate(path, value)
    if expected is None:
        # Valid specs. A datetime feature is one; the pipeline refuses it (see test_pipeline).
        load_spec(write(tmp_path, spec))
        return
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, spec))
    assert expected in str(info.value)


def test_missing_spec_and_contract_without_target(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "none.yaml")
    path = write(tmp_path, SPEC)
    (tmp_path / "contract.yaml").write_text(re.sub(r"(?m)^target:.*\n", "", CONTRACT_YAML))
    with pytest.raises(SpecError, match="names no target column"):
        load_spec(path)


def test_sampled_configs_are_seeded_and_alternate_candidates(tmp_path: Path) -> None:
    loaded = load_spec(write(tmp_path, SPEC))
    a = sample_configs(loaded.spec.search, 7)
    b = sample_configs(loaded.spec.search, 7)
    c = sample_configs(loaded.spec.search, 8)
    assert a == b and a != c
    assert [x["estimator"].rsplit(".", 1)[1] for x in a] == [
        "HistGradientBoostingClassifier",
        "LogisticRegression",
    ] * 3
    for cfg in a:
        assert cfg["params"]["random_state"] == 7
        if "C" in cfg["params"]:
            assert 0.001 <= cfg["params"]["C"] <= 10
        else:
            assert cfg["params"]["max_depth"] in (3, 5, None)
            assert 0.01 <= cfg["params"]["learning_rate"] <= 0.3
