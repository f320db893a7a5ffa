"""One training: data version → Tune search → refit → holdout → MLflow → promotion gate."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from mlfleet import registry
from mlfleet.data import versions
from mlfleet.data.validate import validate
from mlfleet.errors import MlfleetError, NotFoundError
from mlfleet.settings import Settings
from mlfleet.spec import LoadedSpec
from mlfleet.training import tracking
from mlfleet.training.evaluate import holdout_metrics, score
from mlfleet.training.features import build_pipeline, feature_frame
from mlfleet.training.search import run_search
from mlfleet.training.space import sample_configs
from mlfleet.training.trials import TrialOutcome, best_outcome, make_estimator

INNER_VALIDATION_FRACTION = 0.25


class DataRejected(MlfleetError):
    """The training data failed validation (quarantine over the spec's limit)."""

    code = "data_failed"
    exit_code = 1


@dataclass
class TrainResult:
    """What a training produced and decided."""

    name: str
    version: str
    run_id: str
    dataset_version: str
    metric: str
    score: float
    champion_score: float | None
    promoted: bool
    decision: str
    best: dict[str, Any]
    holdout: dict[str, float]
    trials: int
    trials_completed: int
    seconds: float
    previous_champion: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return asdict(self)


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
    loaded: LoadedSpec, settings: Settings, version: str | None
) -> tuple[versions.Manifest, Path]:
    contract = loaded.contract
    if version is not None:
        path = versions.version_dir(settings.datasets_dir, contract.name, version)
        if not (path / versions.MANIFEST).is_file():
            raise NotFoundError(f"dataset {contract.name!r} has no version {version!r}")
        manifest = versions.read_manifest(path)
        if manifest.contract_sha != contract.sha:
            raise MlfleetError(
                f"dataset version {version} was validated with another contract than the spec's"
            )
    else:
        result = validate(
            contract,
            loaded.sources,
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


def _split(
    frame: pd.DataFrame, y: pd.Series, fraction: float, seed: int, stratify: bool
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    from sklearn.model_selection import train_test_split

    strat = y if stratify and y.value_counts().min() >= 2 else None
    X_a, X_b, y_a, y_b = train_test_split(
        frame, y, test_size=fraction, random_state=seed, stratify=strat
    )
    return X_a, X_b, y_a, y_b


def train(
    loaded: LoadedSpec,
    settings: Settings,
    *,
    dataset_version: str | None = None,
    on_trial_done: Callable[[TrialOutcome], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train, log, register and gate one model spec.

    Raises:
        DataRejected: the sources failed validation.
        NotFoundError: the given dataset version does not exist.
    """
    from mlfleet.ray_runtime import ensure_ray

    stage = on_stage or (lambda _msg: None)
    started = time.perf_counter()
    spec = loaded.spec
    registry.configure(settings)
    ensure_ray(settings)
    stage("validating data")
    manifest, data_path = _dataset(loaded, settings, dataset_version)

    table = pq.read_table(data_path / "data")
    features, target = loaded.features, loaded.target
    raw = table.to_pandas()
    raw = raw[raw[target].notna()].reset_index(drop=True)
    X = feature_frame(raw, loaded.contract, features)
    y = raw[target]
    if spec.task == "classification" and y.dtype == bool:
        y = y.astype(str)  # "True"/"False" labels keep JSON predictions unambiguous
    seed = spec.split.seed
    X_train, X_hold, y_train, y_hold = _split(
        X, y, spec.split.test_fraction, seed, spec.split.stratify and spec.task == "classification"
    )
    X_fit, X_val, y_fit, y_val = _split(
        X_train,
        y_train,
        INNER_VALIDATION_FRACTION,
        seed + 1,
        spec.split.stratify and spec.task == "classification",
    )

    configs = sample_configs(spec.search, seed)
    stage(f"searching {len(configs)} configurations on Ray Tune")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    outcomes = run_search(
        contract=loaded.contract,
        features=features,
        search=spec.search,
        configs=configs,
        X_fit=X_fit,
        y_fit=y_fit,
        X_val=X_val,
        y_val=y_val,
        storage=settings.home / "tune",
        name=f"{spec.name}-{stamp}",
        on_trial_done=on_trial_done,
    )
    best = best_outcome(outcomes, spec.search.mode)

    stage("refitting the best configuration on the full training split")
    model = build_pipeline(
        loaded.contract,
        features,
        make_estimator({"estimator": best.estimator, "params": best.params}),
    )
    model.fit(X_train, y_train)
    metrics = holdout_metrics(model, X_hold, y_hold, spec.task, spec.search.metric)
    new_score = metrics[spec.search.metric]

    stage("logging to MLflow and registering")
    experiment = tracking.experiment_id(settings, spec.name)
    sha = os.environ.get("MLFLEET_GIT_SHA") or git_sha(loaded.path.parent)
    lineage = {
        "mlfleet.dataset_version": manifest.version,
        "mlfleet.contract_sha": loaded.contract.sha,
        "mlfleet.spec_sha": loaded.sha,
        "mlfleet.git_sha": sha,
    }
    with tracking.parent_run(
        experiment, f"train-{stamp}", {**lineage, "mlfleet.model": spec.name}
    ) as run_id:
        tracking.log_result(
            search=spec.search,
            best=best,
            outcomes=outcomes,
            dataset_version=manifest.version,
            rows_train=len(X_train),
            rows_holdout=len(X_hold),
            holdout=metrics,
        )
        tracking.log_inputs(
            data_path=data_path,
            spec_path=loaded.path,
            train_frame=pd.concat([X_train, y_train], axis=1),
            target=target,
            dataset_name=f"{loaded.contract.name}@{manifest.version}",
            dataset_version=manifest.version,
        )
        tracking.log_trials(outcomes, run_id, experiment)
        example = X_train.head(5)
        version = registry.register_model(
            model,
            spec.name,
            signature=tracking.model_signature(model, example),
            input_example=example,
            extra_files={
                "contract.yaml": loaded.contract.to_yaml(),
                "profile.json": json.loads((data_path / "profile.json").read_text()),
                "metrics.json": metrics,
            },
        )

    stage("promotion gate")
    champion = registry.alias_version(spec.name, registry.CHAMPION)
    champion_score: float | None = None
    if champion is None:
        promoted, decision = True, "first version: no champion yet"
    else:
        old = registry.load_pipeline(spec.name, champion.version)
        champion_score = score(old, X_hold, y_hold, spec.search.metric)
        sign = 1 if spec.search.mode == "max" else -1
        margin = sign * (new_score - champion_score)
        # Strictly better, by at least the spec's margin: a tie keeps the champion.
        promoted = margin > 0 and margin >= spec.promotion.min_improvement
        decision = (
            f"{'beats' if promoted else 'does not beat'} champion v{champion.version} "
            f"on the same holdout: {new_score:.4f} vs {champion_score:.4f} "
            f"(needs +{spec.promotion.min_improvement})"
        )
    registry.tag_version(
        spec.name,
        version,
        {
            **lineage,
            f"mlfleet.metric.{spec.search.metric}": new_score,
            **{f"mlfleet.holdout.{k}": v for k, v in metrics.items()},
            "mlfleet.decision": decision,
            "mlfleet.challenger_score": new_score,
            "mlfleet.champion_score": "" if champion_score is None else champion_score,
            "mlfleet.champion_version": "" if champion is None else champion.version,
            "mlfleet.run_id": run_id,
            # What serving needs to validate requests without opening the model.
            "mlfleet.features": json.dumps(features),
            "mlfleet.task": spec.task,
        },
    )
    registry.set_challenger(spec.name, version)
    if promoted:
        registry.promote(spec.name, version)
    return TrainResult(
        name=spec.name,
        version=version,
        run_id=run_id,
        dataset_version=manifest.version,
        metric=spec.search.metric,
        score=new_score,
        champion_score=champion_score,
        promoted=promoted,
        decision=decision,
        best={"estimator": best.estimator, "params": best.params, "val_score": best.final_score},
        holdout=metrics,
        trials=len(outcomes),
        trials_completed=sum(1 for o in outcomes if o.final_fraction == 1.0),
        seconds=time.perf_counter() - started,
        previous_champion=None if champion is None else champion.version,
    )
