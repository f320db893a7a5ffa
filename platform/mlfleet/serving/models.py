"""A registered model version made ready to serve: its card (contract, features) and predictions.

Models and their files come from :mod:`mlfleet.registry`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlfleet import registry
from mlfleet.contract.schema import Contract
from mlfleet.errors import MlfleetError
from mlfleet.serving import heap

# Checked with ``fullmatch``: ``$`` would also match before a trailing newline, and a
# name or version that reaches the registry must be exactly what these patterns say
# (ASCII only: no separators, dots, NUL or Unicode look-alikes can get through).
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
VERSION_PATTERN = r"^[0-9]{1,9}$"
MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}", re.ASCII)
VERSION = re.compile(r"[0-9]{1,9}", re.ASCII)


class BadModelName(MlfleetError):
    """A model name or version that cannot exist (checked before touching the registry)."""

    code = "not_found"
    http_status = 404


def check_name(name: str) -> str:
    """``name`` if it is a valid model name, else a 404 error (without echoing long input)."""
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
        raise BadModelName("unknown model: names match ^[a-z0-9][a-z0-9-]{0,62}$")
    return name


def check_version(version: str) -> str:
    """``version`` if it looks like a registry version number."""
    if not isinstance(version, str) or not VERSION.fullmatch(version):
        raise BadModelName("unknown model version: versions are whole numbers")
    return version


@dataclass
class ModelCard:
    """What the gateway knows of a version without loading the model itself."""

    name: str
    version: str
    contract: Contract
    features: list[str]
    task: str
    tags: dict[str, str]


def load_card(name: str, version: str, tags: dict[str, str]) -> ModelCard:
    """Read a version's contract (a small file registered beside the model) and its features.

    Raises:
        ContractError: when the registered contract is not a valid contract.
    """
    contract = registry.version_contract(name, version)
    features = registry.version_features(tags, contract)
    return ModelCard(
        name=name,
        version=version,
        contract=contract,
        features=features,
        task=tags.get("mlfleet.task", "classification"),
        tags=tags,
    )


def _plain(values: np.ndarray) -> list[Any]:
    return [v.item() if hasattr(v, "item") else v for v in values]


def load_model(name: str, version: str) -> Any:
    """A version's pipeline, loaded from the registry (blocking: run it in a worker thread).

    A load that imported modules (a replica's first model of a kind) then settles the
    replica's heap (:func:`mlfleet.serving.heap.settle`), so the full collections that
    requests trigger no longer walk those modules.
    """
    model = registry.load_pipeline(name, version)
    heap.settle()
    return model


def predict(model: Any, frame: pd.DataFrame) -> dict[str, Any]:
    """Predictions (and class probabilities for classifiers) as JSON-ready lists.

    The preprocessing runs once for both answers: in a small-row request the pipeline's
    column transforms, not the estimator, are most of the cost.
    """
    steps = getattr(model, "steps", None)
    if steps and len(steps) > 1:
        features = model[:-1].transform(frame)
        estimator = steps[-1][1]
    else:
        features, estimator = frame, model
    out: dict[str, Any] = {"predictions": _plain(estimator.predict(features))}
    if hasattr(estimator, "predict_proba"):
        proba = estimator.predict_proba(features)
        out["probabilities"] = np.round(proba, 6).tolist()
        out["classes"] = _plain(np.asarray(estimator.classes_))
    return out


def split_result(result: dict[str, Any], sizes: list[int]) -> list[dict[str, Any]]:
    """Cut one batched prediction back into per-request results."""
    out, start = [], 0
    for n in sizes:
        part = {"predictions": result["predictions"][start : start + n]}
        if "probabilities" in result:
            part["probabilities"] = result["probabilities"][start : start + n]
            part["classes"] = result["classes"]
        out.append(part)
        start += n
    return out
