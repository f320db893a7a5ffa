"""What a search trial is and how the best one is chosen: plain data, no Ray.

The Tune runner (``search.py``) fills these in; MLflow logging, the CLI's progress and the
tests read them without importing Ray.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

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
    node_id: str | None = None  # the Ray node the trial ran on (its last report's)

    @property
    def final_fraction(self) -> float:
        """The largest fraction this trial reached."""
        return self.scores[-1][0] if self.scores else 0.0

    @property
    def final_score(self) -> float | None:
        """The score at the largest fraction reached."""
        return self.scores[-1][1] if self.scores else None


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
