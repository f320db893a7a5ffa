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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from ray import tune

from mlfleet.contract.schema import Contract
from mlfleet.spec import SearchSpec
from mlfleet.training.evaluate import score
from mlfleet.training.features import build_pipeline

MIN_RUNG_ROWS = 1_000
RUNGS = (0.125, 0.25, 0.5, 1.0)
RUNG_UNITS = 8  # fractions are reported to ASHA in eighths of the fit split


def rung_of(fraction: float) -> int:
    """A data fraction as ASHA's progress unit (eighths of the fit split)."""
    return max(1, round(fraction * RUNG_UNITS))


def rung_fractions(rows: int, scheduler: str) -> list[float]:
    """Data fractions a trial goes through: all four rungs only when the data is big enough."""
    if scheduler == "fifo":
        return [1.0]
    return [f for f in RUNGS if f == 1.0 or f * rows >= MIN_RUNG_ROWS]


def make_estimator(config: dict[str, Any]) -> Any:
    """Instantiate the configuration's estimator with its params."""
    import importlib

    module_name, _, class_name = config["estimator"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**config["params"])


@dataclass
class TrialOutcome:
    """One configuration's path through the rungs."""

    index: int
    estimator: str
    params: dict[str, Any]
    scores: list[tuple[float, float]] = field(default_factory=list)  # (fraction, score)
    seconds: float = 0.0
    error: str | None = None

    @property
    def final_fraction(self) -> float:
        """The largest fraction this trial reached."""
        return self.scores[-1][0] if self.scores else 0.0

    @property
    def final_score(self) -> float | None:
        """The score at the largest fraction reached."""
        return self.scores[-1][1] if self.scores else None


def _trial(config: dict[str, Any], data: dict[str, Any]) -> None:
    cfg = data["configs"][config["trial"]]
    X_fit, y_fit = data["X_fit"], data["y_fit"]
    X_val, y_val = data["X_val"], data["y_val"]
    pipeline = build_pipeline(data["contract"], data["features"], make_estimator(cfg))
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


def best_outcome(outcomes: list[TrialOutcome], mode: str) -> TrialOutcome:
    """The best configuration among those that reached the largest fraction."""
    finished = [o for o in outcomes if o.final_score is not None and o.error is None]
    if not finished:
        errors = [o.error for o in outcomes if o.error]
        raise RuntimeError(f"every trial failed; first error: {errors[0] if errors else '?'}")
    top = max(o.final_fraction for o in finished)
    contenders = [o for o in finished if o.final_fraction == top]
    sign = 1 if mode == "max" else -1
    return max(contenders, key=lambda o: sign * (o.final_score or 0.0))
