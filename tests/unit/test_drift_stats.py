"""Drift statistics against scipy on the same counts, and against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon as scipy_jensenshannon
from scipy.stats import chi2_contingency, ks_2samp

from mlfleet.errors import UsageError
from mlfleet.monitoring import stats
from mlfleet.monitoring.stats import (
    DriftMethod,
    feature_verdict,
    get_method,
    model_status,
)

RNG = np.random.default_rng(7)
# Count vectors in the reference layout: empty under/overflow (or `other`) on the reference
# side, the current side spilling into them, slots empty on both sides.
PAIRS = [
    (np.array([0, 10, 20, 30, 0]), np.array([1, 12, 18, 25, 3])),
    (np.array([30, 20, 10, 0]), np.array([5, 5, 40, 2])),
    (np.array([0, 500, 0, 700, 0]), np.array([0, 20, 0, 9, 0])),
    (RNG.integers(0, 5000, 22), RNG.integers(0, 300, 22)),
    (np.array([0, 4, 0]), np.array([1, 3, 0])),
]


def test_psi_by_hand() -> None:
    # Shares 0.5/0.5 -> 0.25/0.75: (0.25-0.5)·ln(0.5) + (0.75-0.5)·ln(1.5).
    assert stats.psi(np.array([50, 50]), np.array([25, 75])) == pytest.approx(
        0.25 * math.log(2) + 0.25 * math.log(1.5)
    )
    # The reference's underflow is empty: its share becomes 1e-4, the empty overflow adds 0.
    expected = (0.1 - 1e-4) * math.log(0.1 / 1e-4) + (0.9 - 1.0) * math.log(0.9)
    assert stats.psi(np.array([0, 100, 0]), np.array([10, 90, 0])) == pytest.approx(expected)
    assert stats.psi(np.array([3, 0, 7]), np.array([30, 0, 70])) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize(("reference", "current"), PAIRS)
def test_jensenshannon_matches_scipy(reference: np.ndarray, current: np.ndarray) -> None:
    expected = scipy_jensenshannon(reference / reference.sum(), current / current.sum())
    assert stats.jensenshannon(reference, current) == pytest.approx(expected, abs=1e-12)
    # Natural log: disjoint supports give the largest distance, sqrt(ln 2).
    assert stats.jensenshannon(np.array([5, 0]), np.array([0, 9])) == pytest.approx(
        math.sqrt(math.log(2))
    )


@pytest.mark.parametrize(("reference", "current"), PAIRS)
def test_chisquare_matches_scipy(reference: np.ndarray, current: np.ndarray) -> None:
    keep = (reference + current) > 0
    table = np.vstack([reference[keep], current[keep]])
    expected = chi2_contingency(table, correction=False).pvalue
    assert stats.chisquare(reference, current) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_chisquare_with_one_slot_left_finds_nothing() -> None:
    assert stats.chisquare(np.array([0, 40, 0]), np.array([0, 7, 0])) == 1.0


def test_ks_matches_scipy_on_values_that_sit_on_the_bins() -> None:
    # Integer values 0…5 each in its own slot: the binned CDFs are the samples' CDFs.
    ref_values = RNG.integers(0, 5, 3000)
    cur_values = RNG.integers(1, 6, 700)
    reference = np.bincount(ref_values, minlength=6)
    current = np.bincount(cur_values, minlength=6)
    expected = ks_2samp(ref_values, cur_values).statistic
    assert stats.ks(reference, current) == pytest.approx(expected, abs=1e-12)
    assert stats.ks(np.array([0, 1, 1, 0]), np.array([0, 0, 1, 1])) == pytest.approx(0.5)


def test_mismatched_or_empty_vectors_are_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        stats.psi(np.array([1, 2]), np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="at least one"):
        stats.jensenshannon(np.array([0, 0]), np.array([1, 2]))
    with pytest.raises(ValueError, match="negative"):
        stats.ks(np.array([1, -1]), np.array([1, 2]))


def test_registry_names_directions_and_defaults() -> None:
    assert stats.method_names() == ("psi", "jensenshannon", "chisquare", "ks")
    psi = get_method("psi")
    assert (psi.drift, psi.warning, psi.direction) == (0.2, 0.1, "above")
    chi = get_method("chisquare")
    assert (chi.drift, chi.warning, chi.direction) == (0.01, 0.05, "below")
    assert get_method("ks").kinds == {"numeric"}
    with pytest.raises(UsageError, match="unknown drift method 'wasserstein'"):
        get_method("wasserstein")
    with pytest.raises(ValueError, match="already registered"):
        stats.register_method(psi)
    with pytest.raises(ValueError, match="beyond the drift threshold"):
        DriftMethod("bad", stats.psi, drift=0.1, warning=0.3)


def test_verdict_thresholds_are_strict_and_overridable() -> None:
    psi, chi = get_method("psi"), get_method("chisquare")
    assert [psi.verdict(v) for v in (0.05, 0.1, 0.15, 0.2, 0.21)] == [
        "ok",
        "ok",
        "warning",
        "warning",
        "drift",
    ]
    assert [chi.verdict(p) for p in (0.5, 0.05, 0.03, 0.01, 0.001)] == [
        "ok",
        "ok",
        "warning",
        "warning",
        "drift",
    ]
    assert psi.verdict(0.3, drift=0.5) == "warning"  # the default warning still applies
    assert psi.verdict(0.07, drift=0.05) == "drift"  # the default warning (0.1) is dropped
    assert psi.verdict(0.04, drift=0.05, warning=0.03) == "warning"
    with pytest.raises(ValueError, match="beyond"):
        psi.verdict(0.1, drift=0.2, warning=0.3)


def test_feature_verdict_needs_rows_and_a_fitting_method() -> None:
    reference = np.array([0, 100, 100, 0])
    few = feature_verdict(reference, np.array([0, 150, 40, 9]), kind="numeric")
    assert (few.verdict, few.value, few.rows) == ("insufficient", None, 199)
    many = feature_verdict(reference, np.array([0, 150, 40, 10]), kind="numeric")
    assert many.rows == 200 and many.verdict == "drift"
    assert many.value == pytest.approx(stats.psi(reference, np.array([0, 150, 40, 10])))
    same = feature_verdict(reference, np.array([0, 100, 100, 0]), kind="numeric", method="ks")
    assert (same.method, same.value, same.verdict) == ("ks", 0.0, "ok")
    empty_ref = feature_verdict(np.zeros(4), np.array([0, 150, 50, 0]), kind="numeric")
    assert empty_ref.verdict == "insufficient"
    with pytest.raises(UsageError, match="does not apply to categorical"):
        feature_verdict(reference, reference, kind="categorical", method="ks")


def test_statistics_lists_what_applies_to_the_kind() -> None:
    reference, current = np.array([10, 20, 30]), np.array([12, 18, 30])
    numeric = stats.statistics(reference, current, "numeric")
    assert set(numeric) == {"psi", "jensenshannon", "chisquare", "ks"}
    assert numeric["psi"] == stats.psi(reference, current)
    assert set(stats.statistics(reference, current, "categorical")) == {
        "psi",
        "jensenshannon",
        "chisquare",
    }
    assert stats.statistics(reference, np.zeros(3), "numeric")["ks"] is None


@pytest.mark.parametrize(
    ("features", "prediction", "expected"),
    [
        (["ok", "ok", "ok", "ok"], "ok", "ok"),
        (["drift", "drift", "ok", "ok"], "ok", "drift"),  # half the features
        (["drift", "ok", "ok", "ok"], "ok", "warning"),  # one drifted feature
        (["warning", "warning", "ok", "ok"], None, "warning"),  # half at warning
        (["warning", "ok", "ok", "ok"], "ok", "ok"),
        (["ok", "ok", "ok", "ok"], "drift", "drift"),  # the predictions drifted
        (["ok", "ok", "ok", "ok"], "warning", "warning"),
        (["drift", "insufficient", "insufficient", "ok"], "ok", "drift"),  # 1 of 2 judged
        (["insufficient", "insufficient"], "insufficient", "insufficient"),
        ([], None, "insufficient"),
        (["insufficient"], "ok", "ok"),
    ],
)
def test_model_status(
    features: list[stats.Verdict], prediction: stats.Verdict | None, expected: str
) -> None:
    assert model_status(features, prediction) == expected


def test_model_status_share_is_configurable() -> None:
    verdicts: list[stats.Verdict] = ["drift"] * 3 + ["ok"] * 7
    assert model_status(verdicts, drift_share=0.3) == "drift"
    assert model_status(verdicts, drift_share=0.31) == "warning"
    with pytest.raises(ValueError, match="drift_share"):
        model_status(verdicts, drift_share=0)


def test_a_small_unchanged_sample_needs_evidence_before_it_drifts() -> None:
    # Both sides drawn from one uniform distribution (numpy seed 0): 111 reference rows
    # (a small holdout) against 301 current ones. PSI alone reads drift; chi-square's
    # p-value (0.33) says sampling explains it, so the verdict is ok.
    reference = np.array([0, 6, 4, 2, 1, 8, 9, 6, 7, 6, 9, 7, 0, 8, 2, 7, 4, 9, 5, 6, 5, 0])
    current = np.array(
        [0, 14, 8, 11, 17, 17, 17, 14, 27, 23, 16, 15, 15, 12, 10, 16, 14, 12, 14, 11, 18, 0]
    )
    assert stats.psi(reference, current) > 0.5
    assert feature_verdict(reference, current, kind="numeric", evidence=None).verdict == "drift"
    assert feature_verdict(reference, current, kind="numeric").verdict == "ok"
    # A real shift on the same sample sizes keeps its verdict: half the rows move to the top.
    shifted = current.copy()
    shifted[1:11] //= 4
    shifted[19] += int(current[1:11].sum() - shifted[1:11].sum())
    assert feature_verdict(reference, shifted, kind="numeric").verdict == "drift"
