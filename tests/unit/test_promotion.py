"""The promotion gate: first versions, ties, the margin, both metric directions."""

from __future__ import annotations

from mlfleet.training.promotion import (
    HOLDOUT_TAG,
    PromotionDecision,
    holdout_key,
    logged_score,
    promotion_gate,
)


def test_first_version_is_promoted() -> None:
    assert promotion_gate(0.1, None, "max", 0.5, None) == PromotionDecision(
        True, "first version: no champion yet"
    )


def test_a_tie_keeps_the_champion() -> None:
    gate = promotion_gate(0.75, 0.75, "max", 0.0, "3")
    assert not gate.promoted
    assert gate.decision == (
        "does not beat champion v3 on the same holdout: 0.7500 vs 0.7500 (needs +0.0)"
    )
    assert not promotion_gate(-0.5, -0.5, "min", 0.0, "3").promoted


def test_higher_wins_in_max_mode() -> None:
    gate = promotion_gate(0.875, 0.5, "max", 0.0, "1")
    assert gate.promoted
    assert gate.decision == "beats champion v1 on the same holdout: 0.8750 vs 0.5000 (needs +0.0)"
    assert not promotion_gate(0.5, 0.875, "max", 0.0, "1").promoted


def test_lower_wins_in_min_mode() -> None:
    assert promotion_gate(1.5, 2.0, "min", 0.0, "4").promoted
    gate = promotion_gate(2.0, 1.5, "min", 0.0, "4")
    assert not gate.promoted
    assert gate.decision.startswith("does not beat champion v4 on the same holdout: 2.0000 vs")


def test_min_improvement_is_inclusive() -> None:
    # Exact binary fractions, so the margin is exactly 0.25.
    assert promotion_gate(0.75, 0.5, "max", 0.25, "2").promoted
    assert not promotion_gate(0.75, 0.5, "max", 0.375, "2").promoted
    assert promotion_gate(0.25, 0.5, "min", 0.25, "2").promoted
    below = promotion_gate(0.6875, 0.5, "max", 0.25, "2")
    assert not below.promoted
    assert below.decision.endswith("0.6875 vs 0.5000 (needs +0.25)")


def test_a_logged_score_is_reused_only_on_the_same_holdout() -> None:
    key = holdout_key("v1", 0.25, 7, True, "species")
    tags = {HOLDOUT_TAG: key, "mlfleet.holdout.f1_macro": "0.9125"}
    assert logged_score(tags, key, "f1_macro") == 0.9125
    # Any other dataset version, split or target is another set of rows: re-score.
    for other in (
        holdout_key("v2", 0.25, 7, True, "species"),
        holdout_key("v1", 0.3, 7, True, "species"),
        holdout_key("v1", 0.25, 8, True, "species"),
        holdout_key("v1", 0.25, 7, False, "species"),
        holdout_key("v1", 0.25, 7, True, "island"),
    ):
        assert other != key
        assert logged_score(tags, other, "f1_macro") is None
    assert logged_score(tags, key, "accuracy") is None  # that metric was not logged
    # A version registered before mlfleet kept the key is re-scored.
    assert logged_score({"mlfleet.holdout.f1_macro": "0.9125"}, key, "f1_macro") is None
    assert (
        logged_score({HOLDOUT_TAG: key, "mlfleet.holdout.f1_macro": "?"}, key, "f1_macro") is None
    )
