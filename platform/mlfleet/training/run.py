"""One training: data version → Tune search → refit → holdout → MLflow → promotion gate.

:func:`train` runs the steps in order; each step is a named function of its own: load_data,
split_data, search, refit, log_and_register, then the pure :func:`promotion_gate` and
record_decision.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from mlfleet import registry
from mlfleet.data import versions
from mlfleet.data.validate import Clock, validate
from mlfleet.errors import MlfleetError, NotFoundError, UsageError
from mlfleet.monitoring.loading import MONITORING_FILE, PROFILE_FILE
from mlfleet.settings import Settings
from mlfleet.spec import LoadedSpec, ModelSpec
from mlfleet.training import tracking
from mlfleet.training.evaluate import holdout_metrics, score
from mlfleet.training.features import build_pipeline, feature_frame
from mlfleet.training.promotion import (
    HOLDOUT_TAG,
    PromotionDecision,
    holdout_key,
    logged_score,
    promotion_gate,
)
from mlfleet.training.reference import monitoring_document
from mlfleet.training.result import DataRejected, TrainResult
from mlfleet.training.search import run_search
from mlfleet.training.space import sample_configs
from mlfleet.training.trials import TrialOutcome, best_outcome, make_estimator

INNER_VALIDATION_FRACTION = 0.25


def git_sha(start: Path) -> str:
    """The commit of the code that trains, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=start,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def _dataset(
    loaded: LoadedSpec, settings: Settings, version: str | None, extra_sources: Sequence[str] = ()
) -> tuple[versions.Manifest, Path]:
    contract = loaded.contract
    if version is not None and extra_sources:
        raise UsageError(
            "extra sources need validating: they cannot join an existing dataset version"
        )
    if version is not None:
        path = versions.version_dir(settings.datasets_dir, contract.name, version)
        if not (path / versions.MANIFEST).is_file():
            raise NotFoundError(f"dataset {contract.name!r} has no version {version!r}")
        manifest = versions.read_manifest(path)
        if manifest.contract_sha != contract.sha:
            raise MlfleetError(
                f"dataset version {version} was validated with another contract than the spec's"
            )
        # Judged by the spec's own threshold (a published manifest keeps its first verdict).
        manifest = versions.verdict(manifest, loaded.spec.max_quarantine_fraction)
    else:
        result = validate(
            contract,
            [*loaded.sources, *extra_sources],
            settings,
            max_quarantine_fraction=loaded.spec.max_quarantine_fraction,
        )
        manifest, path = result.manifest, result.path
    if manifest.status != "passed":
        raise DataRejected(
            f"dataset {contract.name} version {manifest.version} failed validation "
            f"({100 * manifest.quarantine_fraction:.1f}% quarantined, limit "
            f"{100 * manifest.max_quarantine_fraction:.1f}%); see {path / 'report.html'}"
        )
    return manifest, path


@dataclass
class TrainingData:
    """A dataset version that passed validation, read as features and target."""

    manifest: versions.Manifest
    path: Path
    X: pd.DataFrame
    y: pd.Series
    # The features as pandas reads the curated Parquet (int64, float64, bool, str): what a
    # user who loads the training data hands the registered model.
    read: pd.DataFrame


@dataclass
class Splits:
    """The splits of a training's rows.

    The holdout is what the gate scores both versions on; inside the training split, the
    fit and validation splits are what the search uses.
    """

    X_train: pd.DataFrame
    X_hold: pd.DataFrame
    y_train: pd.Series
    y_hold: pd.Series
    X_fit: pd.DataFrame
    X_val: pd.DataFrame
    y_fit: pd.Series
    y_val: pd.Series


def load_data(
    loaded: LoadedSpec,
    settings: Settings,
    dataset_version: str | None,
    extra_sources: Sequence[str] = (),
) -> TrainingData:
    """The dataset version to train on (validated now unless one is named), with its rows.

    ``extra_sources`` (e.g. labelled feedback) are validated after the spec's sources, as
    part of the same dataset version. Rows without a target are left out.

    Raises:
        DataRejected: the sources failed validation.
        NotFoundError: the given dataset version does not exist.
        UsageError: extra sources given with a dataset version.
    """
    manifest, path = _dataset(loaded, settings, dataset_version, extra_sources)
    target = loaded.target
    raw = pq.read_table(path / "data").to_pandas()
    raw = raw[raw[target].notna()].reset_index(drop=True)
    X = feature_frame(raw, loaded.contract, loaded.features)
    y = raw[target]
    if loaded.spec.task == "classification" and y.dtype == bool:
        y = y.astype(str)  # "True"/"False" labels keep JSON predictions unambiguous
    read = raw[[name for name in loaded.features if name in raw]]
    return TrainingData(manifest=manifest, path=path, X=X, y=y, read=read)


def one_thread() -> Any:
    """Native thread pools (OpenMP, BLAS) limited to one thread, as in a trial (one CPU,
    where Ray sets OMP_NUM_THREADS=1) for the driver's own fits and predictions.

    On small data a parallel fit or predict spends more time in its thread barriers than in
    the work (measured: a 300-row refit took 0.4 s alone and 4-9 s beside other processes).
    """
    # threadpoolctl comes with scikit-learn, which uses it for the same purpose.
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def split(
    frame: pd.DataFrame, y: pd.Series, fraction: float, seed: int, stratify: bool
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """Cut off ``fraction`` of the rows, reproducibly for ``seed``.

    Stratified on ``y`` when asked and every class has at least two rows.
    """
    from sklearn.model_selection import train_test_split

    strat = y if stratify and y.value_counts().min() >= 2 else None
    X_a, X_b, y_a, y_b = train_test_split(
        frame, y, test_size=fraction, random_state=seed, stratify=strat
    )
    return X_a, X_b, y_a, y_b


def split_data(data: TrainingData, spec: ModelSpec) -> Splits:
    """The spec's holdout split, then the search's validation split inside the rest."""
    seed = spec.split.seed
    stratify = spec.split.stratify and spec.task == "classification"
    X_train, X_hold, y_train, y_hold = split(
        data.X, data.y, spec.split.test_fraction, seed, stratify
    )
    X_fit, X_val, y_fit, y_val = split(
        X_train, y_train, INNER_VALIDATION_FRACTION, seed + 1, stratify
    )
    return Splits(X_train, X_hold, y_train, y_hold, X_fit, X_val, y_fit, y_val)


def search(
    loaded: LoadedSpec,
    settings: Settings,
    splits: Splits,
    configs: list[dict[str, Any]],
    name: str,
    on_trial_done: Callable[[TrialOutcome], None] | None = None,
) -> list[TrialOutcome]:
    """Every configuration as a Ray Tune trial, fitted on the fit split, scored on validation."""
    return run_search(
        contract=loaded.contract,
        features=loaded.features,
        search=loaded.spec.search,
        configs=configs,
        X_fit=splits.X_fit,
        y_fit=splits.y_fit,
        X_val=splits.X_val,
        y_val=splits.y_val,
        storage=settings.home / "tune",
        name=name,
        on_trial_done=on_trial_done,
    )


def refit(loaded: LoadedSpec, best: TrialOutcome, splits: Splits) -> tuple[Any, dict[str, float]]:
    """The best configuration fitted on the whole training split, and its holdout metrics."""
    spec = loaded.spec
    model = build_pipeline(
        loaded.contract,
        loaded.features,
        make_estimator({"estimator": best.estimator, "params": best.params}),
    )
    model.fit(splits.X_train, splits.y_train)
    metrics = holdout_metrics(model, splits.X_hold, splits.y_hold, spec.task, spec.search.metric)
    return model, metrics


def lineage_tags(loaded: LoadedSpec, manifest: versions.Manifest) -> dict[str, str]:
    """What a version was made from: dataset version, contract, spec and code."""
    sha = os.environ.get("MLFLEET_GIT_SHA") or git_sha(loaded.path.parent)
    return {
        "mlfleet.dataset_version": manifest.version,
        "mlfleet.contract_sha": loaded.contract.sha,
        "mlfleet.spec_sha": loaded.sha,
        "mlfleet.git_sha": sha,
    }


def log_and_register(
    loaded: LoadedSpec,
    *,
    experiment: str,
    run_name: str,
    data: TrainingData,
    splits: Splits,
    outcomes: list[TrialOutcome],
    best: TrialOutcome,
    model: Any,
    metrics: dict[str, float],
    lineage: dict[str, str],
) -> tuple[str, str]:
    """The MLflow parent run (with one child run per trial) and the registered version.

    Returns:
        The run id and the new version number.
    """
    spec = loaded.spec
    tags = {**lineage, "mlfleet.model": spec.name}
    with tracking.parent_run(experiment, run_name, tags) as run_id:
        tracking.log_result(
            search=spec.search,
            best=best,
            outcomes=outcomes,
            dataset_version=data.manifest.version,
            rows_train=len(splits.X_train),
            rows_holdout=len(splits.X_hold),
            holdout=metrics,
        )
        tracking.log_inputs(
            data_path=data.path,
            spec_path=loaded.path,
            train_frame=pd.concat([splits.X_train, splits.y_train], axis=1),
            target=loaded.target,
            dataset_name=f"{loaded.contract.name}@{data.manifest.version}",
            dataset_version=data.manifest.version,
        )
        tracking.log_trials(outcomes, run_id, experiment)
        example = data.read.loc[splits.X_train.index[:5]]
        profile = json.loads((data.path / PROFILE_FILE).read_text())
        monitoring = monitoring_document(
            model,
            splits.X_hold,
            splits.y_hold,
            task=spec.task,
            target=loaded.target,
            profile=profile,
        )
        version = registry.register_model(
            model,
            spec.name,
            signature=tracking.model_signature(model, loaded.contract, data.read, example),
            input_example=example,
            extra_files={
                "contract.yaml": loaded.contract.to_yaml(),
                PROFILE_FILE: profile,
                MONITORING_FILE: monitoring,
                "metrics.json": metrics,
            },
        )
    return run_id, version


def champion_score(name: str, version: str, splits: Splits, metric: str) -> float:
    """The champion re-scored on this training's holdout, so both versions meet on equal terms."""
    champion = registry.load_pipeline(name, version)
    return score(champion, splits.X_hold, splits.y_hold, metric)


def training_holdout(loaded: LoadedSpec, manifest: versions.Manifest) -> str:
    """The key of the holdout this training scores on (see :func:`holdout_key`)."""
    spec = loaded.spec
    return holdout_key(
        manifest.version,
        spec.split.test_fraction,
        spec.split.seed,
        spec.split.stratify and spec.task == "classification",
        loaded.target,
    )


def champion_on_holdout(
    champion: registry.VersionInfo, key: str, splits: Splits, metric: str
) -> tuple[float, str]:
    """The champion's score on this training's holdout, and whether it was "logged" or
    "rescored".

    A champion registered by a training on the same holdout (same dataset version, same
    split) logged exactly this score then: it is reused instead of loading the model and
    predicting again. Any other champion is loaded and re-scored.
    """
    logged = logged_score(champion.tags, key, metric)
    if logged is not None:
        return logged, "logged"
    return champion_score(champion.name, champion.version, splits, metric), "rescored"


def record_decision(
    loaded: LoadedSpec,
    version: str,
    *,
    run_id: str,
    lineage: dict[str, str],
    metrics: dict[str, float],
    gate: PromotionDecision,
    champion: registry.VersionInfo | None,
    champion_score: float | None,
    champion_score_source: str | None,
    holdout: str,
) -> None:
    """Tag the version with its lineage, metrics and gate decision; move the aliases."""
    spec = loaded.spec
    new_score = metrics[spec.search.metric]
    registry.tag_version(
        spec.name,
        version,
        {
            **lineage,
            f"mlfleet.metric.{spec.search.metric}": new_score,
            **{f"mlfleet.holdout.{k}": v for k, v in metrics.items()},
            "mlfleet.decision": gate.decision,
            "mlfleet.challenger_score": new_score,
            "mlfleet.champion_score": "" if champion_score is None else champion_score,
            "mlfleet.champion_version": "" if champion is None else champion.version,
            "mlfleet.champion_score_source": champion_score_source or "",
            HOLDOUT_TAG: holdout,
            "mlfleet.run_id": run_id,
            # What serving needs to validate requests without opening the model.
            "mlfleet.features": json.dumps(loaded.features),
            "mlfleet.task": spec.task,
        },
    )
    registry.set_challenger(spec.name, version)
    if gate.promoted:
        registry.promote(spec.name, version)


def train(
    loaded: LoadedSpec,
    settings: Settings,
    *,
    dataset_version: str | None = None,
    extra_sources: Sequence[str] = (),
    on_trial_done: Callable[[TrialOutcome], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train, log, register and gate one model spec.

    Args:
        loaded: The spec.
        settings: Where data, MLflow and Ray are.
        dataset_version: Train on this existing dataset version instead of the sources.
        extra_sources: SOURCE arguments validated after the spec's own (e.g. the model's
            labelled feedback, ``$MLFLEET_HOME/feedback/NAME/*.parquet``).
        on_trial_done: Called as each trial ends.
        on_stage: Called with a short message as each stage starts.

    Raises:
        DataRejected: the sources failed validation.
        NotFoundError: the given dataset version does not exist.
        UsageError: extra sources given with a dataset version.
    """
    # Before the search, and before the thread below: MLflow's client would retry an
    # unanswering server for minutes there.
    registry.check_reachable(settings)
    # MLflow's imports, store and experiment are readied on a thread meanwhile: until the
    # logging step the driver mostly waits (on Ray, then on the trials).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-prepare") as pool:
        experiment = pool.submit(tracking.prepare, settings, loaded.spec.name)
        return _train(
            loaded,
            settings,
            experiment,
            dataset_version=dataset_version,
            extra_sources=extra_sources,
            on_trial_done=on_trial_done,
            on_stage=on_stage,
        )


def _train(
    loaded: LoadedSpec,
    settings: Settings,
    experiment: Future[str],
    *,
    dataset_version: str | None,
    extra_sources: Sequence[str],
    on_trial_done: Callable[[TrialOutcome], None] | None,
    on_stage: Callable[[str], None] | None,
) -> TrainResult:
    from mlfleet.ray_runtime import ensure_ray

    stage = on_stage or (lambda _msg: None)
    clock = Clock(time.perf_counter)
    spec = loaded.spec
    with clock.part("ray"):
        ensure_ray(settings)
    stage("validating data")
    with clock.part("validate"):
        data = load_data(loaded, settings, dataset_version, extra_sources)
    with clock.part("split"):
        splits = split_data(data, spec)

    configs = sample_configs(spec.search, spec.split.seed)
    stage(f"searching {len(configs)} configurations on Ray Tune")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with clock.part("search"):
        outcomes = search(loaded, settings, splits, configs, f"{spec.name}-{stamp}", on_trial_done)
    best = best_outcome(outcomes, spec.search.mode)

    stage("refitting the best configuration on the full training split")
    with clock.part("refit"), one_thread():
        model, metrics = refit(loaded, best, splits)
    new_score = metrics[spec.search.metric]

    stage("logging to MLflow and registering")
    with clock.part("log_register"), one_thread():
        lineage = lineage_tags(loaded, data.manifest)
        run_id, version = log_and_register(
            loaded,
            experiment=experiment.result(),
            run_name=f"train-{stamp}",
            data=data,
            splits=splits,
            outcomes=outcomes,
            best=best,
            model=model,
            metrics=metrics,
            lineage=lineage,
        )

    stage("promotion gate")
    with clock.part("gate"), one_thread():
        champion = registry.alias_version(spec.name, registry.CHAMPION)
        holdout = training_holdout(loaded, data.manifest)
        old_score, source = (
            (None, None)
            if champion is None
            else champion_on_holdout(champion, holdout, splits, spec.search.metric)
        )
        gate = promotion_gate(
            new_score,
            old_score,
            spec.search.mode,
            spec.promotion.min_improvement,
            None if champion is None else champion.version,
        )
        record_decision(
            loaded,
            version,
            run_id=run_id,
            lineage=lineage,
            metrics=metrics,
            gate=gate,
            champion=champion,
            champion_score=old_score,
            champion_score_source=source,
            holdout=holdout,
        )
    return TrainResult(
        name=spec.name,
        version=version,
        run_id=run_id,
        dataset_version=data.manifest.version,
        metric=spec.search.metric,
        score=new_score,
        champion_score=old_score,
        promoted=gate.promoted,
        decision=gate.decision,
        best={"estimator": best.estimator, "params": best.params, "val_score": best.final_score},
        holdout=metrics,
        trials=len(outcomes),
        trials_completed=sum(1 for o in outcomes if o.final_fraction == 1.0),
        seconds=clock.read() - clock.started,
        previous_champion=None if champion is None else champion.version,
        champion_score_source=source,
        steps_s={k: round(v, 4) for k, v in clock.seconds.items()},
    )
