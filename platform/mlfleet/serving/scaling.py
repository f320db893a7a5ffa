"""Model-aware scaling, the policy: which pool models get a deployment of their own.

A model that stays hot is promoted from the multiplexed pool to a dedicated deployment;
one that goes cold is folded back. This module decides the moves and nothing else: pure
functions over request rates, no Ray, so every rule is unit-tested in milliseconds. The
controller that carries the moves out is :mod:`mlfleet.serving.scaler`.

The rules, in order:

- Models the policy does not cover (their spec turned scaling off) that it placed
  earlier are folded at once, whatever their rate.
- Nothing else moves until rates have been observed for a whole window: a controller
  that has just started would see every model as cold.
- Hysteresis: promote at ``promote_rps`` or more, fold at ``fold_rps`` or less, with
  ``fold_rps < promote_rps``; a rate between the two keeps the model where it is.
- Dwell: a model moved less than ``min_dwell_s`` ago stays where it is.
- At most ``max_dedicated`` promoted models; the hottest candidates go first. A full
  set is not reshuffled (a promoted model leaves only by going cold).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

from mlfleet.errors import SpecError
from mlfleet.settings import Settings
from mlfleet.spec import ServingSpec

Action = Literal["promote", "fold"]


@dataclass(frozen=True)
class Thresholds:
    """When one model moves (Settings' defaults overridden by its spec's ``serving.scaling``)."""

    promote_rps: float
    fold_rps: float
    enabled: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.fold_rps < self.promote_rps:
            raise ValueError(
                f"scaling thresholds need 0 <= fold_rps < promote_rps "
                f"(got fold {self.fold_rps}, promote {self.promote_rps})"
            )


@dataclass(frozen=True)
class Policy:
    """The fleet-wide part of the policy."""

    window_s: float
    min_dwell_s: float
    max_dedicated: int


@dataclass(frozen=True)
class Move:
    """One decided move, with what it was decided on."""

    model: str
    action: Action
    reason: str
    rate: float
    threshold: float


def plan(
    *,
    rates: Mapping[str, float],
    placed: Collection[str],
    thresholds: Mapping[str, Thresholds],
    policy: Policy,
    now: float,
    last_moved: Mapping[str, float],
    observed_s: float,
) -> list[Move]:
    """The moves to make now: folds first (they free room), then promotions.

    Args:
        rates: Requests per second of each model over the last ``policy.window_s``.
        placed: The models the scaler has promoted (a spec's own ``mode: dedicated`` is
            not the scaler's and is never listed).
        thresholds: The models the policy may move; a placed model missing here, or
            whose thresholds are disabled, is folded.
        policy: Window, dwell and how many promoted models at most.
        now: The current time (seconds, the clock of ``last_moved``).
        last_moved: When each model last moved.
        observed_s: How long rates have been observed (since the controller started).
    """
    folds: list[Move] = []
    for model in sorted(placed):
        limits = thresholds.get(model)
        if limits is None or not limits.enabled:
            folds.append(
                Move(model, "fold", "scaling is off for this model", rates.get(model, 0.0), 0.0)
            )
    if observed_s < policy.window_s:
        return folds

    def settled(model: str) -> bool:
        moved = last_moved.get(model)
        return moved is None or now - moved >= policy.min_dwell_s

    window = f"{policy.window_s:g} s"
    folding = {m.model for m in folds}
    for model in sorted(placed):
        limits = thresholds.get(model)
        if model in folding or limits is None or not settled(model):
            continue
        rate = rates.get(model, 0.0)
        if rate <= limits.fold_rps:
            folds.append(
                Move(
                    model,
                    "fold",
                    f"{rate:.2f} req/s over the last {window} <= fold_rps {limits.fold_rps:g}",
                    rate,
                    limits.fold_rps,
                )
            )
            folding.add(model)

    room = policy.max_dedicated - (len(set(placed)) - len(folding))
    candidates = [
        (rate, model)
        for model, limits in thresholds.items()
        if limits.enabled
        and model not in placed
        and settled(model)
        and (rate := rates.get(model, 0.0)) >= limits.promote_rps
    ]
    candidates.sort(key=lambda c: (-c[0], c[1]))
    promotions = [
        Move(
            model,
            "promote",
            f"{rate:.2f} req/s over the last {window} >= promote_rps "
            f"{thresholds[model].promote_rps:g}",
            rate,
            thresholds[model].promote_rps,
        )
        for rate, model in candidates[: max(room, 0)]
    ]
    return folds + promotions


def thresholds_for(model: str, serving: ServingSpec, settings: Settings) -> Thresholds | None:
    """A pool model's thresholds: its spec's ``serving.scaling`` over Settings' defaults.

    None for a model whose spec has ``mode: dedicated`` (always dedicated, never moved).

    Raises:
        SpecError: the merged thresholds have no gap (fold_rps is not below promote_rps).
    """
    if serving.mode == "dedicated":
        return None
    own = serving.scaling
    enabled = settings.scaling_enabled if own.enabled is None else own.enabled
    promote = settings.scaling_promote_rps if own.promote_rps is None else own.promote_rps
    fold = settings.scaling_fold_rps if own.fold_rps is None else own.fold_rps
    try:
        return Thresholds(promote_rps=promote, fold_rps=fold, enabled=enabled)
    except ValueError as exc:
        raise SpecError(f"model {model!r}: serving.scaling: {exc}") from None


def scaling_active(servings: Mapping[str, ServingSpec], settings: Settings) -> bool:
    """Whether any model may move: on in Settings, or turned on by a pool model's spec."""
    return settings.scaling_enabled or any(
        s.mode == "pool" and s.scaling.enabled for s in servings.values()
    )


class RateWindow:
    """Request counts reported by the gateways, turned into rates over a sliding window.

    Each report carries the requests one gateway replica counted since its previous
    report; a report is counted in full at the time it arrives.
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._reports: deque[tuple[float, dict[str, int]]] = deque()

    def add(self, at: float, counts: Mapping[str, int]) -> None:
        """Record one report made at ``at`` (reports arrive in time order)."""
        if counts:
            self._reports.append((at, dict(counts)))

    def rates(self, now: float) -> dict[str, float]:
        """Requests per second of each model over the window ending at ``now``."""
        start = now - self.window_s
        while self._reports and self._reports[0][0] <= start:
            self._reports.popleft()
        totals: dict[str, int] = {}
        for _, counts in self._reports:
            for model, n in counts.items():
                totals[model] = totals.get(model, 0) + n
        return {model: n / self.window_s for model, n in totals.items()}


__all__ = [
    "Move",
    "Policy",
    "RateWindow",
    "Thresholds",
    "plan",
    "scaling_active",
    "thresholds_for",
]
