"""MLflow run logging for a training: the experiment, the parent run, one child run per trial.

Registering the model version is the registry's job (:func:`mlfleet.registry.register_model`);
this module only records how the version came to be. Only the driver calls these (SQLite
accepts one writer at a time).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from mlfleet.contract import semantics
from mlfleet.contract.schema import Contract
from mlfleet.settings import Settings
from mlfleet.spec import SearchSpec
from mlfleet.training.trials import TrialOutcome

VALIDATION_FILES = ("manifest.json", "report.json", "report.html")


def prepare(settings: Settings, model_name: str) -> str:
    """Everything MLflow needs before a training's first log: the configured store, the
    registry's imports and the model's experiment (its id is returned).

    About two seconds, mostly imports and the store's start-up, that a training spends on a
    thread while Ray connects, the data validates and the trials run.
    """
    from mlfleet import registry

    registry.configure(settings)
    registry.preload()
    return experiment_id(settings, model_name)


def experiment_id(settings: Settings, model_name: str) -> str:
    """The experiment of a model, found or created (safe when two trainings race to it).

    On a local store the experiment gets an absolute artifact location: without one,
    artifacts land relative to whichever process logs them (Ray workers run in session temp
    dirs) and are lost. A tracking server (``http(s)://``) keeps its own artifact root
    (``mlflow server --artifacts-destination``), and clients on any node upload and download
    through it, so its experiments take the server's default location.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    name = f"mlfleet/{model_name}"
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location: str | None = None
    if not settings.tracking_uri.startswith(("http://", "https://")):
        folder = (settings.home / "mlartifacts" / model_name).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        location = folder.as_uri()
    try:
        return str(mlflow.create_experiment(name, artifact_location=location))
    except MlflowException:
        # Another training created it between the lookup and here (a server's database
        # takes concurrent writers): use theirs; anything else is raised as it was.
        found = mlflow.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


@contextmanager
def parent_run(experiment: str, run_name: str, tags: dict[str, Any]) -> Iterator[str]:
    """The training's parent run, active inside the block, tagged; yields its id."""
    import mlflow

    with mlflow.start_run(experiment_id=experiment, run_name=run_name) as run:
        mlflow.set_tags(tags)
        yield run.info.run_id


def search_summary(
    search: SearchSpec, best: TrialOutcome, outcomes: list[TrialOutcome]
) -> dict[str, Any]:
    """The search as one JSON document: the metric, the winner and every trial's path."""
    return {
        "metric": search.metric,
        "mode": search.mode,
        "best": {
            "trial": best.index,
            "estimator": best.estimator,
            "params": best.params,
            "val_score": best.final_score,
        },
        "trials": [
            {
                "trial": o.index,
                "estimator": o.estimator,
                "params": o.params,
                "scores": o.scores,
                "error": o.error,
            }
            for o in outcomes
        ],
    }


def log_result(
    *,
    search: SearchSpec,
    best: TrialOutcome,
    outcomes: list[TrialOutcome],
    dataset_version: str,
    rows_train: int,
    rows_holdout: int,
    holdout: dict[str, float],
) -> None:
    """Into the active run: the chosen configuration, holdout metrics and search summary."""
    import mlflow

    mlflow.log_params(
        {
            "estimator": best.estimator,
            "dataset_version": dataset_version,
            "rows_train": rows_train,
            "rows_holdout": rows_holdout,
            "num_samples": search.num_samples,
            "scheduler": search.scheduler,
            **{f"param.{k}": v for k, v in best.params.items()},
        }
    )
    mlflow.log_metrics({f"holdout_{k}": v for k, v in holdout.items()})
    mlflow.log_dict(search_summary(search, best, outcomes), "search_summary.json")


def log_inputs(
    *,
    data_path: Path,
    spec_path: Path,
    train_frame: pd.DataFrame,
    target: str,
    dataset_name: str,
    dataset_version: str,
) -> None:
    """Into the active run: the validation report, the spec and the training dataset."""
    import mlflow
    from mlflow.exceptions import MlflowException

    for name in VALIDATION_FILES:
        mlflow.log_artifact(str(data_path / name), artifact_path="validation")
    mlflow.log_text(spec_path.read_text(), "spec/model.yaml")
    dataset = mlflow.data.from_pandas(  # type: ignore[attr-defined]
        train_frame,
        source=str(data_path / "data"),
        targets=target,
        name=dataset_name,
        digest=dataset_version,
    )
    try:
        mlflow.log_input(dataset, context="training")
    except MlflowException:
        # MLflow's SQL store looks a dataset up and then inserts it: two trainings of the same
        # dataset version at once (a retrain beside a manual run) can both miss it, and the
        # second insert hits the unique key. Its transaction rolled back, so asking again
        # finds the row the other one stored and only links it to this run.
        mlflow.log_input(dataset, context="training")


def log_trials(outcomes: list[TrialOutcome], parent_run_id: str, experiment: str) -> None:
    """One child run per trial: params, the score at each data fraction, the outcome.

    Each child is three store calls (create with its tags, one batch of params and
    metrics, end) instead of one per param, metric and tag group: on SQLite every call is
    a transaction of its own.
    """
    import time

    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

    client = MlflowClient()
    for o in outcomes:
        name = f"trial-{o.index:03d}"
        status = (
            "error" if o.error else ("completed" if o.final_fraction == 1.0 else "stopped_early")
        )
        run = client.create_run(
            experiment,
            run_name=name,
            tags={
                MLFLOW_PARENT_RUN_ID: parent_run_id,
                MLFLOW_RUN_NAME: name,
                "mlfleet.trial": str(o.index),
                "mlfleet.trial_node": o.node_id or "",
                "mlfleet.trial_status": status,
            },
        )
        now = int(time.time() * 1000)
        params = {"estimator": o.estimator, **{f"param.{k}": v for k, v in o.params.items()}}
        metrics = []
        for step, (fraction, value) in enumerate(o.scores):
            metrics += [
                Metric("val_score", value, now, step),
                Metric("fraction", fraction, now, step),
            ]
        if o.final_score is not None:
            metrics.append(Metric("final_val_score", o.final_score, now, 0))
        client.log_batch(
            run.info.run_id,
            metrics=metrics,
            params=[Param(k, str(v)) for k, v in params.items()],
        )
        client.set_terminated(run.info.run_id)


def model_signature(
    model: Any, contract: Contract, read: pd.DataFrame, example: pd.DataFrame
) -> Any:
    """The signature registered with a version: the contract's features, typed as pandas
    reads the curated training data, so plain ``mlflow.pyfunc`` accepts that very frame.

    The contract decides each column's MLflow type (:func:`semantics.signature_type`);
    pandas' reading only says whether an int column came back as int64 or, holding nulls,
    as float64. The outputs are inferred from the model's predictions on ``example``.
    """
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import ColSpec, Schema

    inputs = Schema(
        [
            ColSpec(semantics.signature_type(contract.column(name), read[name].dtype), name)
            for name in read.columns
        ]
    )
    outputs = infer_signature(model_output=model.predict(example)).outputs
    return ModelSignature(inputs=inputs, outputs=outputs)
