"""The promotion gate: does a new version replace the champion? A pure decision.

Both versions are scored on the same holdout by the caller; the gate only compares.
"""

from __future__ import annotations

from dataclasses import dataclass

FIRST_VERSION = "first version: no champion yet"


@dataclass(frozen=True)
class PromotionDecision:
    """Whether the new version becomes champion, and why (recorded as a version tag)."""

    promoted: bool
    decision: str


def promotion_gate(
    new_score: float,
    champion_score: float | None,
    mode: str,
    min_improvement: float,
    champion_version: str | None,
) -> PromotionDecision:
    """Promote when there is no champion, or when the new score beats the champion's.

    Beating means strictly better in the metric's direction (``mode`` ``max`` or ``min``) and
    by at least ``min_improvement``: a tie keeps the champion.

    Args:
        new_score: The new version's score on the holdout.
        champion_score: The champion's score on the same holdout; None when there is none.
        mode: ``max`` when higher scores are better, ``min`` when lower ones are.
        min_improvement: The smallest margin that promotes.
        champion_version: The champion's version number (for the decision's wording).
    """
    if champion_score is None:
        return PromotionDecision(True, FIRST_VERSION)
    sign = 1 if mode == "max" else -1
    margin = sign * (new_score - champion_score)
    promoted = margin > 0 and margin >= min_improvement
    return PromotionDecision(
        promoted,
        f"{'beats' if promoted else 'does not beat'} champion v{champion_version} "
        f"on the same holdout: {new_score:.4f} vs {champion_score:.4f} "
        f"(needs +{min_improvement})",
    )


HOLDOUT_TAG = "mlfleet.holdout_key"
"""Version tag naming the holdout its ``mlfleet.holdout.<metric>`` tags were scored on."""


def holdout_key(
    dataset_version: str, test_fraction: float, seed: int, stratify: bool, target: str
) -> str:
    """Names a holdout: the same dataset version cut by the same split gives the same rows.

    Two trainings with equal keys score their models on identical rows, so a version's
    logged holdout score is what re-scoring it on the other training's holdout would give.
    """
    import hashlib
    import json

    body = json.dumps(
        {
            "dataset_version": dataset_version,
            "test_fraction": test_fraction,
            "seed": seed,
            "stratify": stratify,
            "target": target,
        },
        sort_keys=True,
    )
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def logged_score(tags: dict[str, str], key: str, metric: str) -> float | None:
    """A version's score on ``metric`` as logged at its registration, when it was scored on
    the holdout ``key`` names; None when it must be re-scored (another holdout, a version
    registered before mlfleet kept the key, or no such metric logged)."""
    if tags.get(HOLDOUT_TAG) != key:
        return None
    try:
        return float(tags[f"mlfleet.holdout.{metric}"])
    except (KeyError, ValueError):
        return None
