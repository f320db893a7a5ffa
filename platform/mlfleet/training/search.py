"""The hyper-parameter search on Ray Tune, with ASHA over growing data fractions.

Each trial fits its configuration on 1/8, 1/4, 1/2 and all of the fit split, reporting the
validation score after each; ASHA stops the weaker half at every rung, so most of the
budget goes to the promising configurations. The data reaches trials through the object
store once (``tune.with_parameters``); trials never write to MLflow (SQLite takes one
writer) — the driver logs them afterwards.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import ray
from ray import tune

from mlfleet.contract.schema import Contract
from mlfleet.spec import SearchSpec
from mlfleet.training.evaluate import score
from mlfleet.training.features import build_pipeline
from mlfleet.training.trials import (
    RUNG_UNITS,
    TrialOutcome,
    make_estimator,
    rung_fractions,
    rung_of,
)


def _trial(config: dict[str, Any], data: dict[str, Any]) -> None:
    cfg = data["configs"][config["trial"]]
    X_fit, y_fit = data["X_fit"], data["y_fit"]
    X_val, y_val = data["X_val"], data["y_val"]
    pipeline = build_pipeline(data["contract"], data["features"], make_estimator(cfg))
    # Where the trial ran, for its MLflow run: on a cluster a slow or failing node shows there.
    node_id = ray.get_runtime_context().get_node_id()
    for fraction in data["fractions"]:
        n = max(int(len(X_fit) * fraction), 2)
        start = time.perf_counter()
        pipeline.fit(X_fit.iloc[:n], y_fit.iloc[:n])
        value = score(pipeline, X_val, y_val, data["metric"])
        tune.report(
            {
                "score": value,
                "fraction": fraction,
                "rung": rung_of(fraction),
                "fit_seconds": time.perf_counter() - start,
                "node_id": node_id,
            }
        )


Listener = tuple[dict[int, TrialOutcome], Callable[[TrialOutcome], None] | None]
_LISTENERS: dict[str, Listener] = {}


class _Progress(tune.Callback):
    """Collects every trial's scores in the driver as Tune reports them.

    Defined at module level so Tune pickles it by reference: it holds only a key into the
    process-local ``_LISTENERS`` table, never the caller's (lock-holding) progress display.
    """

    def __init__(self, key: str) -> None:
        self.key = key

    def _outcome(self, trial: Any) -> tuple[TrialOutcome | None, Any]:
        outcomes, done = _LISTENERS.get(self.key, ({}, None))
        return outcomes.get(trial.config["trial"]), done

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        outcome, _ = self._outcome(trial)
        if outcome is not None:
            outcome.scores.append((float(result["fraction"]), float(result["score"])))
            outcome.seconds += float(result.get("fit_seconds", 0.0))
            outcome.node_id = result.get("node_id") or outcome.node_id

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        outcome, done = self._outcome(trial)
        if outcome is not None and done:
            done(outcome)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        outcome, done = self._outcome(trial)
        if outcome is not None:
            outcome.error = str(getattr(trial, "error_msg", None) or "trial failed")
            if done:
                done(outcome)


def run_search(
    *,
    contract: Contract,
    features: list[str],
    search: SearchSpec,
    configs: list[dict[str, Any]],
    X_fit: pd.DataFrame,
    y_fit: pd.Series,
    X_val: pd.DataFrame,
    y_val: pd.Series,
    storage: Path,
    name: str,
    on_trial_done: Callable[[TrialOutcome], None] | None = None,
) -> list[TrialOutcome]:
    """Run every configuration as a Tune trial; returns their outcomes in config order."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    # Tune's console tables would interleave with mlfleet's progress; the legacy reporter
    # at verbosity 0 prints nothing. Trial results stay in `storage` for TensorBoard.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    fractions = rung_fractions(len(X_fit), search.scheduler)
    scheduler: Any
    if len(fractions) > 1:
        # The rung is the data fraction in eighths (1, 2, 4, 8), so every fraction below
        # the full data is a decision point: ASHA halves the field at 1/8, 1/4 and 1/2.
        scheduler = ASHAScheduler(
            time_attr="rung", max_t=RUNG_UNITS, grace_period=1, reduction_factor=2
        )
    else:
        scheduler = FIFOScheduler()
    data = {
        "configs": configs,
        "X_fit": X_fit,
        "y_fit": y_fit,
        "X_val": X_val,
        "y_val": y_val,
        "contract": contract,
        "features": features,
        "metric": search.metric,
        "fractions": fractions,
    }
    outcomes = {i: TrialOutcome(i, c["estimator"], c["params"]) for i, c in enumerate(configs)}
    # Tune pickles its callbacks with the experiment state; ours holds only a key into this
    # process-local table, not the outcomes or the caller's (lock-holding) progress display.
    _LISTENERS[name] = (outcomes, on_trial_done)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(_trial, data=data), {"cpu": 1}),
        param_space={"trial": tune.grid_search(list(range(len(configs))))},
        tune_config=tune.TuneConfig(
            metric="score",
            mode=search.mode,
            scheduler=scheduler,
            max_concurrent_trials=search.max_concurrent,
            # A warm worker per slot: a new process per trial costs ~5 s here.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(storage),
            verbose=0,
            callbacks=[_Progress(name)],
            log_to_file=True,
        ),
    )
    try:
        tuner.fit()
    finally:
        _LISTENERS.pop(name, None)
    return [outcomes[i] for i in range(len(configs))]
