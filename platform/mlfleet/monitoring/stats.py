"""Drift statistics on two count vectors of one layout, the methods that judge them, verdicts.

Every function here takes the reference counts and the current counts of one column in
the layout of :mod:`mlfleet.monitoring.reference` (``[underflow, bins…, overflow]`` or
``[values…, other]``; nulls are counted apart and never enter). Counts, not rows: the
statistics cost O(slots) whatever the traffic.

Methods are registered by name with a direction and default thresholds, the way
Evidently registers its stat tests, so a model spec can pick one per model or feature:

============== =================================== ========= ======== =========
name           value                               drift if  drift    warning
============== =================================== ========= ======== =========
psi            population stability index          above     0.2      0.1
jensenshannon  Jensen–Shannon distance (natural    above     0.1      0.05
               log, as scipy's and Evidently's)
chisquare      p-value of the 2×k chi-square       below     0.01     0.05
               homogeneity test
ks             max distance of the binned CDFs     above     0.1      0.05
               (numeric columns only)
============== =================================== ========= ======== =========

PSI's thresholds are the usual ones (and the issue's); Jensen–Shannon's drift threshold
is Evidently's. The p-value thresholds are stricter than Evidently's 0.05 because the
monitor judges every model at least once a minute on overlapping windows, so a per-run
false alarm rate of 5% would flap. PSI, Jensen–Shannon and KS are effect sizes: on few
rows their noise floor is high (with 22 slots PSI's expected value with no drift at all is
about ``(slots - 1) * (1/n_current + 1/n_reference)``, ~0.1 at 200 rows), while the
chi-square p-value accounts for the sample size.

Pure numpy; scipy only for the chi-square survival function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.special import chdtrc  # the chi-square survival function

from mlfleet.errors import UsageError
from mlfleet.monitoring.reference import ColumnKind

Verdict = Literal["ok", "warning", "drift", "insufficient"]
ModelStatus = Literal["ok", "warning", "drift", "insufficient"]
Direction = Literal["above", "below"]

# A slot holding nothing on one side gets this share instead of 0 in PSI (Evidently uses
# the same floor), so the log stays finite: the reference's underflow, overflow and
# `other` slots are empty by construction, and a current window that puts 1% of its rows
# there adds 0.01 * ln(0.01 / 1e-4) ≈ 0.046 to the PSI, a 10% share ≈ 0.69.
PSI_EPSILON = 1e-4

# A drift verdict needs the chi-square p-value below this too (see feature_verdict).
EVIDENCE = 0.05
MIN_ROWS = 200  # no verdict on a feature with fewer non-null values in the window
DRIFT_SHARE = 0.5  # a model drifts when at least this share of its judged features does


def _pair(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if ref.ndim != 1 or ref.shape != cur.shape:
        raise ValueError(f"count vectors differ in shape: {ref.shape} and {cur.shape}")
    if (ref < 0).any() or (cur < 0).any():
        raise ValueError("counts must not be negative")
    if ref.sum() <= 0 or cur.sum() <= 0:
        raise ValueError("both count vectors need at least one count")
    return ref, cur


def _shares(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref, cur = _pair(reference, current)
    return ref / ref.sum(), cur / cur.sum()


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index ``Σ (q - p) ln(q / p)`` of the slot shares.

    Shares below :data:`PSI_EPSILON` (empty slots in particular) count as that much on
    either side, without renormalising, so a slot empty on both sides adds nothing.
    """
    p, q = _shares(reference, current)
    p, q = np.maximum(p, PSI_EPSILON), np.maximum(q, PSI_EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def _kl(p: np.ndarray, m: np.ndarray) -> float:
    # 0 · ln(0 / m) is 0; m > 0 wherever p > 0.
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / m[mask])))


def jensenshannon(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen–Shannon distance of the slot shares, natural log (0 … √ln 2 ≈ 0.83).

    The square root of the divergence ``(KL(p‖m) + KL(q‖m)) / 2`` with ``m = (p + q) / 2``;
    the same value as ``scipy.spatial.distance.jensenshannon(p, q)``. Empty slots need no
    epsilon.
    """
    p, q = _shares(reference, current)
    m = (p + q) / 2
    divergence = (_kl(p, m) + _kl(q, m)) / 2
    return float(np.sqrt(max(divergence, 0.0)))


def chisquare(reference: np.ndarray, current: np.ndarray) -> float:
    """P-value of Pearson's chi-square homogeneity test on the 2×k table of counts.

    Slots empty on both sides are dropped (they carry no information and would divide by
    zero); ``k - 1`` degrees of freedom on what remains, no continuity correction (as
    ``scipy.stats.chi2_contingency(table, correction=False)``). With fewer than two slots
    left there is nothing to compare and the p-value is 1.
    """
    ref, cur = _pair(reference, current)
    keep = (ref + cur) > 0
    table = np.vstack([ref[keep], cur[keep]])
    if table.shape[1] < 2:
        return 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return float(chdtrc(table.shape[1] - 1, statistic))


def ks(reference: np.ndarray, current: np.ndarray) -> float:
    """Kolmogorov–Smirnov statistic of the binned CDFs: ``max |F_ref - F_cur|`` at slot ends.

    Exact for values that sit on the bins (discrete data); for continuous data a lower
    bound of the samples' KS statistic (the CDFs are compared at the reference edges only).
    Slot order matters, so it applies to numeric columns only.
    """
    p, q = _shares(reference, current)
    return float(np.max(np.abs(np.cumsum(p) - np.cumsum(q))))


@dataclass(frozen=True)
class DriftMethod:
    """A statistic with the direction and default thresholds that turn it into a verdict.

    Attributes:
        name: What a spec calls it (``monitoring: {method: psi}``).
        statistic: ``f(reference_counts, current_counts) -> value``.
        drift: Default threshold beyond which the column has drifted.
        warning: Default threshold beyond which it earns a warning (None: no warnings).
        direction: ``"above"`` when larger values mean drift (distances), ``"below"``
            when smaller ones do (p-values). Comparisons are strict.
        kinds: The column kinds it applies to.
        description: One line for docs and the CLI.
    """

    name: str
    statistic: Callable[[np.ndarray, np.ndarray], float] = field(repr=False)
    drift: float
    warning: float | None
    direction: Direction = "above"
    kinds: frozenset[ColumnKind] = frozenset({"numeric", "categorical"})
    description: str = ""

    def __post_init__(self) -> None:
        _check_thresholds(self.name, self.direction, self.drift, self.warning)

    def verdict(
        self, value: float, *, drift: float | None = None, warning: float | None = None
    ) -> Verdict:
        """``drift``, ``warning`` or ``ok`` for a value, with optional threshold overrides.

        Overriding the drift threshold alone keeps the default warning threshold while it
        still comes before the new drift threshold, and drops it otherwise.
        """
        drift_at = self.drift if drift is None else drift
        warning_at = self.warning if warning is None else warning
        if warning is None and drift is not None and warning_at is not None:
            beyond = warning_at >= drift_at if self.direction == "above" else warning_at <= drift_at
            if beyond:
                warning_at = None
        _check_thresholds(self.name, self.direction, drift_at, warning_at)
        if self._beyond(value, drift_at):
            return "drift"
        if warning_at is not None and self._beyond(value, warning_at):
            return "warning"
        return "ok"

    def _beyond(self, value: float, threshold: float) -> bool:
        return value > threshold if self.direction == "above" else value < threshold


def _check_thresholds(name: str, direction: Direction, drift: float, warning: float | None) -> None:
    if warning is None:
        return
    if (direction == "above" and warning > drift) or (direction == "below" and warning < drift):
        raise ValueError(
            f"{name}: the warning threshold {warning} lies beyond the drift threshold {drift}"
        )


_METHODS: dict[str, DriftMethod] = {
    m.name: m
    for m in (
        DriftMethod("psi", psi, 0.2, 0.1, description="population stability index"),
        DriftMethod(
            "jensenshannon", jensenshannon, 0.1, 0.05, description="Jensen–Shannon distance (ln)"
        ),
        DriftMethod("chisquare", chisquare, 0.01, 0.05, "below", description="chi-square p-value"),
        DriftMethod(
            "ks", ks, 0.1, 0.05, kinds=frozenset({"numeric"}), description="binned KS statistic"
        ),
    )
}


def register_method(method: DriftMethod, *, replace: bool = False) -> None:
    """Make a method available by its name (``replace`` to redefine an existing one)."""
    if method.name in _METHODS and not replace:
        raise ValueError(f"a drift method named {method.name!r} is already registered")
    _METHODS[method.name] = method


def method_names() -> tuple[str, ...]:
    """The registered methods' names."""
    return tuple(_METHODS)


def get_method(name: str) -> DriftMethod:
    """The method registered as ``name``.

    Raises:
        UsageError: for an unknown name (a spec naming a method that does not exist).
    """
    try:
        return _METHODS[name]
    except KeyError:
        known = ", ".join(_METHODS)
        raise UsageError(f"unknown drift method {name!r} (known: {known})") from None


def statistics(
    reference: np.ndarray, current: np.ndarray, kind: ColumnKind
) -> dict[str, float | None]:
    """Every registered statistic that applies to ``kind`` (None while a side is empty)."""
    empty = float(np.sum(reference)) <= 0 or float(np.sum(current)) <= 0
    return {
        m.name: None if empty else m.statistic(reference, current)
        for m in _METHODS.values()
        if kind in m.kinds
    }


@dataclass(frozen=True)
class FeatureDrift:
    """One column's verdict and the value it came from."""

    method: str
    value: float | None  # None when insufficient
    verdict: Verdict
    rows: int  # non-null current values the verdict is based on


def feature_verdict(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    kind: ColumnKind,
    method: str | DriftMethod = "psi",
    drift: float | None = None,
    warning: float | None = None,
    min_rows: int = MIN_ROWS,
    evidence: float | None = EVIDENCE,
) -> FeatureDrift:
    """Judge one column of the current window against its reference.

    A drift or warning verdict needs a material effect (the method's threshold) *and*
    evidence that the two samples differ: the chi-square homogeneity p-value below
    ``evidence``. PSI and the other effect sizes have a noise floor that grows as samples
    shrink (with 22 slots and 111 reference rows an unchanged stream scores PSI ~0.2), so
    on a small reference they alone would raise false alarms; the p-value accounts for
    both sample sizes and, on real shifts with a few hundred rows, is far below 0.05.

    Args:
        reference: The reference counts (the column's layout, nulls excluded).
        current: The current window's counts in the same layout.
        kind: ``numeric`` or ``categorical`` (some methods apply to one only).
        method: A registered method's name, or a method.
        drift: Overrides the method's drift threshold.
        warning: Overrides its warning threshold.
        min_rows: Below this many non-null current values (or with an empty reference)
            the verdict is ``insufficient`` and no statistic is computed.
        evidence: The chi-square p-value a drift or warning verdict needs to stay below
            (None: the method's threshold alone decides).

    Raises:
        UsageError: for an unknown method, or one that does not apply to ``kind``.
    """
    found = get_method(method) if isinstance(method, str) else method
    if kind not in found.kinds:
        raise UsageError(f"drift method {found.name!r} does not apply to {kind} columns")
    rows = int(np.sum(current))
    if rows < max(min_rows, 1) or float(np.sum(reference)) <= 0:
        return FeatureDrift(found.name, None, "insufficient", rows)
    value = found.statistic(reference, current)
    verdict = found.verdict(value, drift=drift, warning=warning)
    if verdict != "ok" and evidence is not None and chisquare(reference, current) >= evidence:
        verdict = "ok"  # an effect this size is within what sampling alone produces here
    return FeatureDrift(found.name, value, verdict, rows)


def model_status(
    features: Iterable[Verdict],
    prediction: Verdict | None = None,
    *,
    drift_share: float = DRIFT_SHARE,
) -> ModelStatus:
    """A model's status from its features' verdicts and its predictions' verdict.

    Only judged columns count (``insufficient`` ones are left out of the share):

    - ``insufficient``: no column could be judged (a quiet window);
    - ``drift``: the predictions drifted, or at least ``drift_share`` of the judged
      features did;
    - ``warning``: otherwise, any judged column drifted or the predictions earned a
      warning, or at least ``drift_share`` of the judged features are at warning or worse;
    - ``ok``: otherwise.
    """
    if not 0 < drift_share <= 1:
        raise ValueError(f"drift_share must be in (0, 1], not {drift_share}")
    judged = [v for v in features if v != "insufficient"]
    pred = None if prediction == "insufficient" else prediction
    if not judged and pred is None:
        return "insufficient"
    drifted = sum(v == "drift" for v in judged)
    flagged = drifted + sum(v == "warning" for v in judged)
    share = drifted / len(judged) if judged else 0.0
    flagged_share = flagged / len(judged) if judged else 0.0
    if pred == "drift" or share >= drift_share:
        return "drift"
    if drifted or pred == "warning" or flagged_share >= drift_share:
        return "warning"
    return "ok"
