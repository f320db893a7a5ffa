"""Training logs monitoring.json beside each version, and load_reference reads it back
through the registry (a classifier with its calibration map, a regressor on its target's
edges; None for a version registered without it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlfleet import registry
from mlfleet.monitoring.loading import MONITORING_FILE, PROFILE_FILE, load_reference
from mlfleet.monitoring.reference import PREDICTION
from mlfleet.settings import Settings, get_settings
from mlfleet.spec import load_spec
from mlfleet.training.run import TrainResult, train
from tests.support.fleet import LOGREG, write_loans_fleet
from tests.support.messy import diabetes_spec_copy

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Settings]:
    """A loans spec and its data, and settings with their own registry."""
    root = tmp_path_factory.mktemp("reference")
    write_loans_fleet(root, {"loan-ref": (*LOGREG, "pool")}, rows=800, seed=4)
    settings = get_settings(home=root / "home")
    registry.configure(settings)
    return root, settings


@pytest.fixture(scope="module")
def classifier(ray_session: None, workspace: tuple[Path, Settings]) -> TrainResult:
    root, settings = workspace
    return train(load_spec(root / "specs" / "loan-ref" / "model.yaml"), settings)


@pytest.fixture(scope="module")
def regressor(ray_session: None, workspace: tuple[Path, Settings]) -> TrainResult:
    root, settings = workspace
    return train(load_spec(diabetes_spec_copy(REPO, root / "examples", 1)), settings)


def test_a_classifier_version_carries_its_prediction_reference_and_calibration(
    classifier: TrainResult,
) -> None:
    doc = json.loads(registry.version_artifact("loan-ref", classifier.version, MONITORING_FILE))
    assert doc["task"] == "classification" and doc["target"] == "defaulted"
    reference = load_reference("loan-ref", classifier.version)
    assert reference is not None
    assert (reference.model, reference.version, reference.task) == (
        "loan-ref",
        classifier.version,
        "classification",
    )
    assert [c.name for c in reference.features] == ["income", "debt_ratio", "region"]
    prediction = reference.column(PREDICTION)
    assert prediction.kind == "categorical" and set(prediction.categories or ()) == {"yes", "no"}
    assert int(prediction.counts.sum()) == doc["holdout_rows"] == 200
    assert prediction.counts[-1] == 0  # no prediction outside the classes
    assert reference.calibration is not None
    calibrated = reference.calibration(reference.calibration.x)
    assert ((calibrated >= 0) & (calibrated <= 1)).all()


def test_a_regressor_version_bins_its_predictions_on_the_targets_edges(
    regressor: TrainResult,
) -> None:
    name = regressor.name
    profile = json.loads(registry.version_artifact(name, regressor.version, PROFILE_FILE))
    reference = load_reference(name, regressor.version)
    assert reference is not None and reference.task == "regression"
    prediction = reference.column(PREDICTION)
    assert prediction.kind == "numeric"
    assert prediction.edges is not None
    assert prediction.edges.tolist() == profile["features"]["progression"]["edges"]
    assert prediction.slots == len(profile["features"]["progression"]["edges"]) + 1
    assert reference.calibration is None
    assert "progression" not in [c.name for c in reference.features]


def test_a_version_registered_without_monitoring_json_has_no_reference(
    classifier: TrainResult, tmp_path: Path
) -> None:
    import mlflow

    model = registry.load_pipeline("loan-ref", classifier.version)
    profile = registry.version_artifact("loan-ref", classifier.version, PROFILE_FILE)
    contract = registry.version_artifact("loan-ref", classifier.version, "contract.yaml")
    # Its artifacts under tmp_path (MLflow's default location is ./mlruns in the cwd).
    old_experiment = mlflow.create_experiment(
        "loan-ref-old", artifact_location=(tmp_path / "mlartifacts").as_uri()
    )
    with mlflow.start_run(experiment_id=old_experiment):
        old = registry.register_model(
            model,
            "loan-ref",
            signature=None,
            input_example=None,
            extra_files={"contract.yaml": contract, PROFILE_FILE: profile},
        )
    assert load_reference("loan-ref", old) is None
