"""Model-aware scaling's policy: promote the hot, fold the cold, with hysteresis and dwell."""

from __future__ import annotations

import pytest

from mlfleet.errors import SpecError
from mlfleet.serving.scaling import Policy, RateWindow, Thresholds, plan, thresholds_for
from mlfleet.settings import get_settings
from mlfleet.spec import ScalingSpec, ServingSpec

POLICY = Policy(window_s=60, min_dwell_s=300, max_dedicated=2)
T = Thresholds(promote_rps=20, fold_rps=5)
NOW = 10_000.0


def moves(rates, placed=(), thresholds=None, last_moved=None, observed_s=600, policy=POLICY):
    out = plan(
        rates=rates,
        placed=set(placed),
        thresholds=thresholds if thresholds is not None else {m: T for m in ("a", "b", "c", "d")},
        policy=policy,
        now=NOW,
        last_moved=last_moved or {},
        observed_s=observed_s,
    )
    return [(m.action, m.model) for m in out]


def test_a_hot_pool_model_is_promoted_and_a_cold_one_is_folded() -> None:
    assert moves({"a": 25.0, "b": 1.0}) == [("promote", "a")]
    assert moves({"a": 2.0}, placed={"a"}) == [("fold", "a")]
    assert moves({}, placed={"a"}) == [("fold", "a")]  # no traffic at all is cold


def test_between_the_thresholds_nothing_moves() -> None:
    assert moves({"a": 12.0}) == []
    assert moves({"a": 12.0}, placed={"a"}) == []
    assert moves({"a": 20.0}) == [("promote", "a")]  # the bounds are inclusive
    assert moves({"a": 5.0}, placed={"a"}) == [("fold", "a")]


def test_a_model_that_moved_lately_stays_put() -> None:
    recent = {"a": NOW - 299}
    assert moves({"a": 1.0}, placed={"a"}, last_moved=recent) == []
    assert moves({"a": 99.0}, last_moved=recent) == []
    assert moves({"a": 1.0}, placed={"a"}, last_moved={"a": NOW - 300}) == [("fold", "a")]


def test_no_decision_before_a_whole_window_was_observed() -> None:
    assert moves({"a": 99.0}, observed_s=59) == []
    assert moves({}, placed={"a"}, observed_s=10) == []  # a fresh controller sees no rate


def test_at_most_max_dedicated_the_hottest_first() -> None:
    assert moves({"a": 30.0, "b": 50.0, "c": 40.0}) == [("promote", "b"), ("promote", "c")]
    assert moves({"a": 30.0, "b": 50.0, "d": 10.0}, placed={"d"}) == [("promote", "b")]
    # A full set is not reshuffled for a hotter model...
    assert moves({"a": 99.0, "b": 30.0, "c": 30.0}, placed={"b", "c"}) == []
    # ...but a fold frees its room in the same round.
    assert moves({"a": 99.0, "b": 30.0, "c": 1.0}, placed={"b", "c"}) == [
        ("fold", "c"),
        ("promote", "a"),
    ]
    zero = Policy(window_s=60, min_dwell_s=0, max_dedicated=0)
    assert moves({"a": 99.0}, policy=zero) == []


def test_a_model_scaling_no_longer_covers_is_folded_at_once() -> None:
    off = {"a": Thresholds(promote_rps=20, fold_rps=5, enabled=False)}
    assert moves({"a": 99.0}, placed={"a"}, thresholds=off, observed_s=0) == [("fold", "a")]
    assert moves({"a": 99.0}, thresholds=off) == []
    assert moves({"a": 99.0}, placed={"a"}, thresholds={}) == [("fold", "a")]
    # Ignoring the dwell time: the operator asked for it.
    assert moves({}, placed={"a"}, thresholds=off, last_moved={"a": NOW}) == [("fold", "a")]


def test_a_move_says_why_with_the_rate_and_threshold() -> None:
    (move,) = plan(
        rates={"a": 25.0},
        placed=set(),
        thresholds={"a": T},
        policy=POLICY,
        now=NOW,
        last_moved={},
        observed_s=600,
    )
    assert (move.rate, move.threshold) == (25.0, 20)
    assert "25.00 req/s" in move.reason and "promote_rps 20" in move.reason


def test_thresholds_need_a_gap() -> None:
    with pytest.raises(ValueError, match="fold_rps < promote_rps"):
        Thresholds(promote_rps=5, fold_rps=5)


def test_a_spec_overrides_the_settings_per_model() -> None:
    settings = get_settings(scaling_enabled=False, scaling_promote_rps=20, scaling_fold_rps=5)
    assert thresholds_for("a", ServingSpec(), settings) == Thresholds(20, 5, enabled=False)
    own = ServingSpec(scaling=ScalingSpec(enabled=True, promote_rps=8, fold_rps=2))
    assert thresholds_for("a", own, settings) == Thresholds(8, 2, enabled=True)
    assert thresholds_for("a", ServingSpec(mode="dedicated"), settings) is None
    # Only promote_rps given, below the settings' fold_rps: no gap, said with the model.
    with pytest.raises(SpecError, match="model 'a'"):
        thresholds_for("a", ServingSpec(scaling=ScalingSpec(promote_rps=4)), settings)


def test_settings_and_specs_refuse_thresholds_without_a_gap() -> None:
    from mlfleet.errors import SettingsError

    with pytest.raises(SettingsError, match="MLFLEET_SCALING_FOLD_RPS"):
        get_settings(scaling_promote_rps=5, scaling_fold_rps=5)
    with pytest.raises(ValueError, match="fold_rps must be below promote_rps"):
        ScalingSpec(promote_rps=3, fold_rps=4)


def test_rates_are_counts_over_the_window() -> None:
    window = RateWindow(10)
    window.add(100.0, {"a": 50, "b": 5})
    window.add(105.0, {"a": 50})
    assert window.rates(105.0) == {"a": 10.0, "b": 0.5}
    assert window.rates(110.5) == {"a": 5.0}  # the first report left the window
    assert window.rates(200.0) == {}
