"""Model versions registered without training: good ones (as training registers them) and
hostile ones, registered the way anyone who can write to the registry could.

Each payload writes a sentinel file if any of its code runs, so a test proves that loading
refused it by that file's absence (and proves the payload is live by loading it with plain
MLflow, which runs it). The versions carry a valid ``contract.yaml`` beside the model, so the
model itself, not its card, is what a loader must refuse.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from mlfleet import registry
from mlfleet.contract.schema import parse_contract
from mlfleet.settings import Settings
from mlfleet.training.features import build_pipeline
from mlfleet.training.tracking import experiment_id
from tests.support.messy import LOANS_CONTRACT

LOAN_FEATURES = ["income", "debt_ratio", "region"]


class _RunsOnPickleLoad:
    """Unpickling it calls ``exec`` on code that writes the sentinel."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return exec, (f"open({str(self.sentinel)!r}, 'w').write('pickle payload ran')",)


class RunsOnSkopsLoad:
    """A type skops does not trust: loading it calls ``__setstate__``, which writes the
    sentinel named in its state."""

    def __init__(self, sentinel: str) -> None:
        self.sentinel = sentinel

    def __getstate__(self) -> dict[str, Any]:
        return {"sentinel": self.sentinel}

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(state["sentinel"]).write_text("skops payload ran")
        self.sentinel = state["sentinel"]

    def predict(self, frame: Any) -> list[str]:
        return ["yes"] * len(frame)


SKOPS_PAYLOAD_TYPE = f"{RunsOnSkopsLoad.__module__}.{RunsOnSkopsLoad.__qualname__}"


def _log(settings: Settings, name: str, model: Any, **flavor: Any) -> str:
    """Log ``model`` with MLflow's own sklearn flavor (``flavor``: its format options) and
    the loans contract beside it; register it as a new version of ``name``."""
    import mlflow
    import mlflow.sklearn

    experiment = experiment_id(settings, name)
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(experiment_id=experiment):
        contract = Path(tmp) / "contract.yaml"
        contract.write_text(LOANS_CONTRACT)
        info = mlflow.sklearn.log_model(
            model,
            name=registry.MODEL_ARTIFACT,
            registered_model_name=name,
            extra_files=[str(contract)],
            pip_requirements=registry.pip_requirements(),
            **flavor,
        )
    version = str(info.registered_model_version)
    _tag_for_serving(name, version)
    return version


def _tag_for_serving(name: str, version: str) -> None:
    """What training tags for serving: the gateway validates exactly these features."""
    registry.tag_version(
        name,
        version,
        {registry.FEATURES_TAG: json.dumps(LOAN_FEATURES), "mlfleet.task": "classification"},
    )


def register_good_model(settings: Settings, name: str, frame: pd.DataFrame) -> str:
    """A logistic regression on the loans features, registered as mlfleet's training does."""
    import mlflow
    import yaml
    from sklearn.linear_model import LogisticRegression

    contract = parse_contract(yaml.safe_load(LOANS_CONTRACT), origin="loans")
    model = build_pipeline(contract, LOAN_FEATURES, LogisticRegression(max_iter=300))
    model.fit(frame[LOAN_FEATURES], frame["defaulted"])
    with mlflow.start_run(experiment_id=experiment_id(settings, name)):
        version = registry.register_model(
            model,
            name,
            signature=None,
            input_example=None,
            extra_files={"contract.yaml": contract.to_yaml()},
        )
    _tag_for_serving(name, version)
    return version


def register_pickle_model(settings: Settings, name: str, sentinel: Path) -> str:
    """A version stored as pickle whose unpickling writes ``sentinel``."""
    return _log(settings, name, _RunsOnPickleLoad(sentinel), serialization_format="pickle")


def register_skops_payload(settings: Settings, name: str, sentinel: Path) -> str:
    """A skops version holding :class:`RunsOnSkopsLoad`, its MLmodel listing that type as
    trusted (the attacker writes the MLmodel too)."""
    version = _log(
        settings,
        name,
        RunsOnSkopsLoad(str(sentinel)),
        serialization_format="skops",
        skops_trusted_types=[SKOPS_PAYLOAD_TYPE],
    )
    # MLflow loads a skops model back once while saving it: the payload ran in the
    # attacker's own process. Only a later run of it counts.
    sentinel.unlink(missing_ok=True)
    return version


def model_files(name: str, version: str) -> Path:
    """The local folder holding a version's model files (the artifact root is local here)."""
    from mlflow import MlflowClient

    uri = MlflowClient().get_model_version_download_uri(name, version)
    return Path(uri.removeprefix("file://"))
