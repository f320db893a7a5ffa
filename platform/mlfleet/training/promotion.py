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
