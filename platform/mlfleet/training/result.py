"""What a training returns, and its one error of its own: light to import, since commands
receive them from the warm trainer (``mlfleet.training.warm``) without loading the training
stack."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mlfleet.errors import MlfleetError


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
    # Where champion_score came from: "logged" (the champion's own holdout score, logged at
    # its registration on this very holdout), "rescored" (it was loaded and scored on this
    # holdout), or None without a champion.
    champion_score_source: str | None = None
    notes: list[str] = field(default_factory=list)
    # Wall seconds per step, in order: ray (joining or starting it), validate (or reading
    # the named version), split, search (the Tune run), refit, log_register (MLflow runs,
    # model serialisation, registry), gate (the champion's score, logged or re-scored;
    # tags, aliases).
    steps_s: dict[str, float] = field(default_factory=dict)
    # "local" (this process) or "warm" (mlfleet's warm trainer on the local head).
    trainer: str = "local"

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return asdict(self)
