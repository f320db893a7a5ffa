"""Training on the session's Ray with MLflow on SQLite: registry, lineage, gate, rollback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mlfleet import registry
from mlfleet.errors import NotFoundError
from mlfleet.registry import RegistryError
from mlfleet.settings import Settings, get_settings
from mlfleet.spec import load_spec
from mlfleet.training.run import TrainResult, train
from tests.support.messy import LOANS_CONTRACT, loans_frame

pytestmark = pytest.mark.ray


def spec(
    estimator: str, params: dict, samples: int, min_improvement: float = 0.0, seed: int = 5
) -> dict:
    return {
        "name": "loan-default",
        "contract": "contract.yaml",
        "sources": ["loans.csv"],
        "task": "classification",
        "split": {"test_fraction": 0.25, "seed": seed, "stratify": True},
        "search": {
            "metric": "accuracy",
            "mode": "max",
            "num_samples": samples,
            "max_concurrent": 2,
            "scheduler": "asha",
            "candidates": [{"estimator": estimator, "params": params}],
        },
        "promotion": {"min_improvement": min_improvement},
    }


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train")
    frame = loans_frame(1200, seed=1)
    frame.loc[::50, "income"] = np.nan
    frame.to_csv(root / "loans.csv", index=False)
    (root / "contract.yaml").write_text(LOANS_CONTRACT)
    return root


@pytest.fixture(scope="module")
def settings(workspace: Path) -> Settings:
    s = get_settings(home=workspace / "home")
    registry.configure(s)
    return s


def train_with(workspace: Path, settings: Settings, name: str, body: dict) -> TrainResult:
    path = workspace / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body))
    return train(load_spec(path), settings)


@pytest.fixture(scope="module")
def first(ray_session: None, workspace: Path, settings: Settings) -> TrainResult:
    return train_with(
        workspace,
        settings,
        "weak",
        spec("sklearn.dummy.DummyClassifier", {"strategy": "most_frequent"}, 2),
    )


@pytest.fixture(scope="module")
def second(first: TrainResult, workspace: Path, settings: Settings) -> TrainResult:
    return train_with(
        workspace,
        settings,
        "strong",
        spec(
            "sklearn.linear_model.LogisticRegression",
            {"C": {"loguniform": [0.1, 10]}, "max_iter": 500},
            4,
        ),
    )


def test_first_version_becomes_champion(first: TrainResult) -> None:
    assert first.version == "1" and first.promoted
    assert registry.alias_version("loan-default", "champion").version == "1"


def test_every_step_reports_its_time(second: TrainResult) -> None:
    steps = ["ray", "validate", "split", "search", "refit", "log_register", "gate"]
    assert list(second.steps_s) == steps
    assert all(second.steps_s[s] >= 0 for s in steps) and second.steps_s["search"] > 0
    assert sum(second.steps_s.values()) <= second.seconds + 0.01
    assert second.to_json()["steps_s"] == second.steps_s  # what `mlfleet train --json` prints


def test_better_challenger_is_promoted_on_the_same_holdout(
    first: TrainResult, second: TrainResult
) -> None:
    assert second.version == "2"
    assert second.trials == 4
    assert second.promoted
    # Same dataset version, same split: the champion's score logged at its registration is
    # its score on this holdout, reused instead of loading and re-scoring it.
    assert second.champion_score == first.score
    assert second.champion_score_source == "logged"
    assert second.score > first.score + 0.1
    assert registry.alias_version("loan-default", "champion").version == "2"
    tags = registry.get_version("loan-default", "2").tags
    assert tags["mlfleet.champion_version"] == "1"
    assert float(tags["mlfleet.champion_score"]) == pytest.approx(first.score)
    assert "beats champion v1" in tags["mlfleet.decision"]
    assert tags["mlfleet.champion_score_source"] == "logged"


def test_worse_challenger_stays_challenger_and_rollback(
    second: TrainResult, workspace: Path, settings: Settings
) -> None:
    third = train_with(
        workspace,
        settings,
        "weak2",
        # Another split seed: another holdout, where the champion's logged score says nothing.
        spec("sklearn.dummy.DummyClassifier", {"strategy": "prior"}, 2, seed=6),
    )
    assert third.version == "3" and not third.promoted
    assert third.champion_score_source == "rescored"
    assert registry.get_version("loan-default", "3").tags["mlfleet.champion_score_source"] == (
        "rescored"
    )
    assert registry.alias_version("loan-default", "champion").version == "2"
    assert registry.alias_version("loan-default", "challenger").version == "3"
    assert (
        "does not beat champion v2"
        in registry.get_version("loan-default", "3").tags["mlfleet.decision"]
    )
    assert registry.rollback("loan-default").version == "1"
    assert registry.alias_version("loan-default", "champion").version == "1"
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback("loan-default")
    registry.promote("loan-default", "2")
    assert registry.alias_version("loan-default", "champion").version == "2"
    with pytest.raises(NotFoundError):
        registry.promote("loan-default", "99")


def test_version_lineage_tags_and_artifacts(second: TrainResult, settings: Settings) -> None:
    import mlflow

    manifest_dirs = list((settings.datasets_dir / "loans").glob("*/manifest.json"))
    assert len(manifest_dirs) == 1
    manifest = json.loads(manifest_dirs[0].read_text())
    tags = registry.get_version("loan-default", "2").tags
    assert tags["mlfleet.dataset_version"] == manifest["version"] == second.dataset_version
    assert tags["mlfleet.contract_sha"] == manifest["contract_sha"]
    assert len(tags["mlfleet.spec_sha"]) == 64 and tags["mlfleet.git_sha"]
    assert float(tags["mlfleet.metric.accuracy"]) == pytest.approx(second.score)

    model_dir = Path(mlflow.artifacts.download_artifacts("models:/loan-default/2"))
    files = {p.name: p for p in model_dir.rglob("*") if p.is_file()}
    assert {"MLmodel", "contract.yaml", "profile.json", "metrics.json"} <= set(files)
    profile = json.loads(files["profile.json"].read_text())
    assert profile["version"] == manifest["version"]
    assert "debt_ratio" in profile["features"]

    client = mlflow.MlflowClient()
    run = client.get_run(second.run_id)
    assert run.data.tags["mlfleet.dataset_version"] == manifest["version"]
    assert "holdout_accuracy" in run.data.metrics
    assert run.inputs.dataset_inputs[0].dataset.digest == manifest["version"]
    children = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{second.run_id}'"
    )
    assert len(children) == 4
    # Each trial says where it ran: here, the session's one node.
    import ray

    node = ray.get_runtime_context().get_node_id()
    assert {c.data.tags["mlfleet.trial_node"] for c in children} == {node}
    assert all(
        "final_val_score" in c.data.metrics or c.data.tags["mlfleet.trial_status"] != "completed"
        for c in children
    )
    artifacts = {a.path for a in client.list_artifacts(second.run_id, "validation")}
    assert artifacts == {
        "validation/manifest.json",
        "validation/report.json",
        "validation/report.html",
    }


def test_champion_loads_with_plain_mlflow_and_predicts_raw_rows(
    second: TrainResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.pyfunc

    # Plain MLflow loads only when told to trust the registry; mlfleet never tells it so.
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")

    model = mlflow.pyfunc.load_model("models:/loan-default@champion")
    rows = pd.DataFrame(
        [
            {"income": 20000.0, "debt_ratio": 2.9, "region": "north"},
            {"income": None, "debt_ratio": 0.1, "region": "atlantis"},  # null + unseen category
        ]
    )
    pred = model.predict(rows)
    assert next(iter(pred)) == "yes"
    assert set(pred) <= {"yes", "no"}


def test_registry_reads_a_version_back(second: TrainResult) -> None:
    contract = yaml.safe_load(registry.version_artifact("loan-default", "2", "contract.yaml"))
    assert contract["name"] == "loans"
    metrics = json.loads(registry.version_artifact("loan-default", "2", "metrics.json"))
    assert metrics == pytest.approx(second.holdout)
    assert registry.model_bytes("loan-default", "2") > 0
    model = registry.load_pipeline("loan-default", "2")
    rows = pd.DataFrame([{"income": 20000.0, "debt_ratio": 2.9, "region": "north"}])
    assert set(model.predict(rows)) <= {"yes", "no"}


def test_fleet_listing_agrees_with_one_lookup_at_a_time(second: TrainResult) -> None:
    import mlflow

    registry.set_challenger("loan-default", "1")  # champion and challenger both set
    (listed,) = [m for m in registry.list_models() if m.name == "loan-default"]
    assert listed == registry.describe("loan-default")
    assert listed.champion == registry.alias_version("loan-default", registry.CHAMPION)
    assert listed.challenger == registry.alias_version("loan-default", registry.CHALLENGER)
    assert listed.challenger is not None and listed.challenger.aliases == ["challenger"]
    assert listed.champion is not None and listed.champion.tags["mlfleet.run_id"]
    assert listed.versions == len(registry.model_versions("loan-default")) >= 2
    tags = mlflow.MlflowClient().get_registered_model("loan-default").tags
    assert listed.history == json.loads(tags[registry.HISTORY_TAG])
    # The champions alone (what the gateway re-reads every few seconds) agree with both.
    champions = registry.champions()
    assert champions["loan-default"] == listed.champion.version
    assert champions == {
        m.name: (m.champion.version if m.champion else None) for m in registry.list_models()
    }
