"""The monitor's state: exact one-minute buckets, exactly-once flushes, evaluations, statuses.

:class:`MonitorState` is everything the monitor actor knows, with no Ray import: the actor
(:mod:`mlfleet.monitoring.actor`) is a thin asynchronous shell around it, and tests drive
it directly on an in-memory SQLite store.

**Exactly once.** :meth:`MonitorState.ingest` applies a flush's parts to in-memory buckets
unless its (sender, seq) was applied before. What changed is written by the next group
commit (:meth:`take_commit`, the store's one transaction, then :meth:`committed`): the
sender's applied sequence numbers go in the same transaction as the buckets, and a flush is
acknowledged only after that. If a write fails, :meth:`rollback` puts the touched buckets
and senders back as stored, so the unacknowledged flushes can be sent again. Sequence
numbers may arrive in any order: a sender's applied seqs are kept as "all up to ``floor``,
and these above it" (a seq missing for more than :data:`MAX_OUT_OF_ORDER` later ones is
given up).

**Evaluation.** A model is evaluated when a flush completes one of its buckets (a part for a
newer minute arrives) and at least every ``monitor_evaluate_seconds``. Per (model, version)
the current window is :func:`~mlfleet.monitoring.window.current_window` over its buckets;
per column every registered statistic is computed and the configured method gives the
verdict; :func:`~mlfleet.monitoring.stats.model_status` gives the version's status.

**Performance** of a version over its window: the estimated accuracy (classifiers, the mean
calibrated confidence of the window's predictions,
:func:`~mlfleet.monitoring.performance.estimated_accuracy`) and the realised accuracy and
macro F1, or MAE, of the labelled rows among the same minutes' predictions: the prediction
log reports labels through :meth:`MonitorState.add_realised`, bucketed by the minute the
rows were predicted, so the two figures describe the same traffic.

**Which version a model's status is about**: the version with the most rows in its window
(ties: the newest bucket, then the highest version number). That is the champion in normal
operation, and after a promotion it becomes the new champion as soon as that one has
answered more of the window's traffic. When that version changes, the drift streak starts
again: a new version earns its own sustained drift.

**Alerts and retrains.** A model's status counts as changed for alerts when its *judged*
status (``ok``, ``warning``, ``drift``; ``insufficient`` says nothing) differs from the last
judged one, a model's first judged status being compared with ``ok``. Each such change is
stored as an :class:`~mlfleet.monitoring.store.Alert` and handed to the alert hook after it
is committed. Every evaluation with status ``drift`` extends the model's drift streak (any
other status ends it); once the streak reaches the spec's ``retrain.sustained_windows``, each
further drift evaluation calls ``on_sustained_drift(model, streak)``: the retrain policy
decides (``retrain.on_drift``, cooldown) and records what it did in the store.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mlfleet.errors import MlfleetError, NotFoundError, UsageError
from mlfleet.monitoring import stats
from mlfleet.monitoring.performance import ConfusionCounts, ErrorCounts, estimated_accuracy
from mlfleet.monitoring.protocol import FeedbackResult, Flush, Label, PredictionRecord
from mlfleet.monitoring.reference import ColumnKind, ColumnReference, MonitorReference
from mlfleet.monitoring.sketch import Counts
from mlfleet.monitoring.store import (
    Alert,
    Batch,
    BucketRow,
    ModelRow,
    MonitorStore,
    SenderRow,
    StatusChange,
    new_id,
)
from mlfleet.monitoring.window import add_to_bucket, current_window, merge, minute_of
from mlfleet.settings import Settings
from mlfleet.spec import ModelSpec, load_fleet_specs

log = logging.getLogger(__name__)

DEFAULT_METHOD = "psi"
MAX_OUT_OF_ORDER = 256  # applied seqs kept above a sender's floor before gaps are given up
FUTURE_MINUTES = 60  # parts stamped further ahead of the monitor's clock are refused
REFERENCE_RETRY_S = 60.0  # a reference that failed to load is retried after this long
HISTORY_IN_DETAIL = 20  # status changes shown by model()
# Evaluations whose statistics each model keeps in memory for history() (the drift statistic
# over time on the dashboard): 4 h at the default of one evaluation a minute. Not stored: a
# restarted monitor starts the trail afresh (status changes, alerts and retrains are stored).
TRAIL_KEPT = 240

SKETCH = "sketch"
Realised = ConfusionCounts | ErrorCounts
ReferenceLoader = Callable[[str, str], MonitorReference | None]
"""``loader(model, version)``: a version's reference, or None when it has none."""
AlertHook = Callable[[Alert], None]
"""Called with each alert once it is stored; must return quickly (the actor runs it on a
thread of its own)."""
SustainedDriftHook = Callable[[str, int], None]
"""``on_sustained_drift(model, evaluations)``: the model's status was ``drift`` at this many
consecutive evaluations (at least its ``retrain.sustained_windows``)."""


class PredictionLog(Protocol):
    """Keeps predicted rows by request id until labels arrive (another module's job).

    It reports realised performance back through :meth:`MonitorState.add_realised`, bucketed
    by the minute the rows were predicted. Its methods run on the monitor's event loop.
    """

    def record(self, records: Sequence[PredictionRecord]) -> None:
        """Keep these predictions (idempotent by request id: a resent flush repeats them)."""
        ...

    def feedback(self, model: str, labels: Sequence[Label]) -> FeedbackResult:
        """Join labels to kept predictions and report the realised counts."""
        ...


class MonitorError(MlfleetError):
    """The monitor is not running, not reachable, or cannot do what was asked."""

    code = "monitor_unavailable"
    exit_code = 1
    http_status = 503


# --- configuration: settings, then the spec's monitoring: and retrain: blocks ------------


@dataclass(frozen=True)
class ColumnRule:
    """How one column is judged."""

    method: stats.DriftMethod
    drift: float | None  # None: the method's default
    warning: float | None
    min_rows: int

    def thresholds(self) -> dict[str, float | None]:
        """The drift and warning thresholds in force (configured, else the method's)."""
        return {
            "drift": self.method.drift if self.drift is None else self.drift,
            "warning": self.method.warning if self.warning is None else self.warning,
        }


@dataclass(frozen=True)
class ModelConfig:
    """A model's monitoring configuration, resolved from its spec and the settings."""

    window_minutes: int
    window_rows: int
    rule: ColumnRule
    drift_share: float
    columns: Mapping[str, ColumnRule] = field(default_factory=dict)
    sustained_windows: int = 3

    def rule_for(self, name: str, kind: ColumnKind) -> ColumnRule:
        """The rule for a column; a method that does not apply to its kind (``ks`` on a
        categorical column) gives way to the default method with its own thresholds."""
        rule = self.columns.get(name, self.rule)
        if kind not in rule.method.kinds:
            return dataclasses.replace(
                rule, method=stats.get_method(DEFAULT_METHOD), drift=None, warning=None
            )
        return rule


def _rule(
    where: str,
    method: str,
    drift: float | None,
    warning: float | None,
    min_rows: int,
) -> ColumnRule:
    try:
        found = stats.get_method(method)
        found.verdict(0.0, drift=drift, warning=warning)  # checks the thresholds' order
    except (UsageError, ValueError) as exc:
        raise UsageError(f"{where}: {exc}") from None
    return ColumnRule(found, drift, warning, min_rows)


def model_config(spec: ModelSpec | None, settings: Settings) -> ModelConfig:
    """Resolve a model's monitoring configuration (defaults for a model without a spec).

    A column override that names another method than the model's does not inherit the
    model's thresholds (they belong to the model's method).

    Raises:
        UsageError: the spec names an unknown drift method or thresholds out of order.
    """
    if spec is None:
        rule = _rule("monitoring", DEFAULT_METHOD, None, None, stats.MIN_ROWS)
        return ModelConfig(
            settings.monitor_window_minutes, settings.monitor_window_rows, rule, stats.DRIFT_SHARE
        )
    mon = spec.monitoring
    where = f"{spec.name}: monitoring"
    min_rows = mon.min_rows or stats.MIN_ROWS
    rule = _rule(where, mon.method, mon.drift, mon.warning, min_rows)
    columns = {}
    for name, col in mon.features.items():
        method = col.method or mon.method
        inherit = method == mon.method
        columns[name] = _rule(
            f"{where}.features.{name}",
            method,
            col.drift if col.drift is not None or not inherit else mon.drift,
            col.warning if col.warning is not None or not inherit else mon.warning,
            col.min_rows or min_rows,
        )
    return ModelConfig(
        window_minutes=mon.window.minutes or settings.monitor_window_minutes,
        window_rows=mon.window.rows or settings.monitor_window_rows,
        rule=rule,
        drift_share=mon.drift_share or stats.DRIFT_SHARE,
        columns=columns,
        sustained_windows=spec.retrain.sustained_windows,
    )


def fleet_specs(specs_dir: str | Path | None) -> dict[str, ModelSpec]:
    """The specs of a fleet folder by model name (none without a folder)."""
    if specs_dir is None:
        return {}
    return {loaded.spec.name: loaded.spec for loaded in load_fleet_specs(specs_dir)}


# --- loaders ----------------------------------------------------------------------------


class StaticReferences:
    """A reference loader over references held in memory (tests, benchmarks, notebooks).

    Picklable, so it can be handed to the monitor actor.
    """

    def __init__(self, references: Iterable[MonitorReference]) -> None:
        self._refs = {(r.model, r.version): r for r in references}

    def __call__(self, model: str, version: str) -> MonitorReference | None:
        """The reference of (model, version), if held."""
        return self._refs.get((model, version))


class RegistryReferences:
    """The default loader: ``mlfleet.monitoring.loading.load_reference(name, version)``,
    which reads the registry's ``profile.json`` and ``monitoring.json`` of a version."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._configured = False

    def __call__(self, model: str, version: str) -> MonitorReference | None:
        """The reference the registry holds for (model, version)."""
        import importlib

        from mlfleet import registry

        if not self._configured:
            registry.configure(self._settings)
            self._configured = True
        # Looked up by name: the loading module is written beside this one.
        loading = importlib.import_module("mlfleet.monitoring.loading")
        reference: MonitorReference | None = loading.load_reference(model, version)
        return reference


# --- per-sender sequence numbers --------------------------------------------------------


@dataclass
class _Sender:
    floor: int = -1  # every seq <= floor is applied
    above: set[int] = field(default_factory=set)
    dropped_rows: int = 0
    last_seen: float = 0.0

    def seen(self, seq: int) -> bool:
        return seq <= self.floor or seq in self.above

    def add(self, seq: int) -> None:
        self.above.add(seq)
        if len(self.above) > MAX_OUT_OF_ORDER:
            # A seq missing this long is not coming back: give up the gaps below the rest.
            self.floor = min(self.above) - 1
        while self.floor + 1 in self.above:
            self.floor += 1
            self.above.remove(self.floor)

    @property
    def last_seq(self) -> int:
        return max(self.above, default=self.floor)

    def row(self, name: str) -> SenderRow:
        above = tuple(sorted(self.above))
        return SenderRow(name, self.floor, above, self.dropped_rows, self.last_seen)

    @classmethod
    def of(cls, row: SenderRow) -> _Sender:
        return cls(row.floor, set(row.above), row.dropped_rows, row.last_seen)


# --- evaluations --------------------------------------------------------------------------


@dataclass
class _ModelState:
    version: str | None = None
    status: str = "insufficient"
    judged: str | None = None
    streak: int = 0
    evaluated_at: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)
    details: dict[str, dict[str, Any]] = field(default_factory=dict)  # by version
    trail: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=TRAIL_KEPT))


@dataclass
class VersionEvaluation:
    """One (model, version) judged over its current window."""

    version: str
    status: str
    rows: int
    minutes: tuple[int, ...]  # the window's buckets, newest first
    columns: list[dict[str, Any]]  # the features, then the predictions (see _column)
    estimated_accuracy: float | None
    realised: dict[str, Any] | None
    error: str | None = None

    def by_verdict(self, verdict: str) -> list[str]:
        """Names of the features with this verdict."""
        return [
            c["name"] for c in self.columns if c["role"] == "feature" and c["verdict"] == verdict
        ]

    def prediction(self) -> dict[str, Any] | None:
        """The predictions' entry."""
        return next((c for c in self.columns if c["role"] == "prediction"), None)


@dataclass
class Commit:
    """A batch taken for one group commit, and what to do once it is stored."""

    batch: Batch
    bucket_keys: set[tuple[str, str, int, str]]
    senders: set[str]
    sustained: list[tuple[str, int]]


def _kind_of(counts: Realised) -> str:
    return "confusion" if isinstance(counts, ConfusionCounts) else "error"


def _realised_of(kind: str, data: dict[str, Any]) -> Realised:
    if kind == "confusion":
        return ConfusionCounts.from_json(data)
    return ErrorCounts.from_json(data)


def _fits(bucket: Counts, part: Counts) -> bool:
    """Whether ``part`` adds to ``bucket`` (every shared column has the same slots)."""
    for name, vector in part.columns.items():
        mine = bucket.columns.get(name)
        if mine is not None and mine.size != vector.size:
            return False
    return True


def _realised_json(counts: Realised | None) -> dict[str, Any] | None:
    if counts is None or counts.rows == 0:
        return None
    if isinstance(counts, ConfusionCounts):
        return {"rows": counts.rows, "accuracy": counts.accuracy, "macro_f1": counts.macro_f1}
    return {"rows": counts.rows, "mae": counts.mae}


def _reason(ev: VersionEvaluation | None) -> str:
    if ev is None:
        return "no traffic in the window"
    if ev.error:
        return ev.error
    if ev.status == "insufficient":
        return f"too few rows in the window to judge ({ev.rows})"
    judged = [c for c in ev.columns if c["role"] == "feature" and c["verdict"] != "insufficient"]
    drifted = ev.by_verdict("drift")
    text = f"{len(drifted)} of {len(judged)} features drifted"
    if drifted:
        text += f" ({', '.join(drifted)})"
    pred = ev.prediction()
    if pred is not None:
        text += f"; predictions {pred['verdict']}"
    return text


class MonitorState:
    """Buckets, senders, references and statuses of every monitored model (see module).

    Args:
        store: Where everything is kept; reloaded from at construction.
        settings: Window, evaluation and retention defaults.
        specs: The fleet's specs by model name (their ``monitoring:`` and ``retrain:``).
        loader: A version's reference (default: :class:`RegistryReferences`).
        on_alert: Called with each alert once stored.
        on_sustained_drift: Called as ``on_sustained_drift(model, evaluations)``.
        prediction_log: Keeps predictions for feedback (see :class:`PredictionLog`).
        clock: Unix time in seconds (tests move it).
    """

    def __init__(
        self,
        store: MonitorStore,
        settings: Settings,
        *,
        specs: Mapping[str, ModelSpec] | None = None,
        loader: ReferenceLoader | None = None,
        on_alert: AlertHook | None = None,
        on_sustained_drift: SustainedDriftHook | None = None,
        prediction_log: PredictionLog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.specs = dict(specs or {})
        self._default = model_config(None, settings)
        self._configs = {name: model_config(spec, settings) for name, spec in self.specs.items()}
        self._loader: ReferenceLoader = loader or RegistryReferences(settings)
        self.on_alert = on_alert
        self.on_sustained_drift = on_sustained_drift
        self.prediction_log = prediction_log
        self._clock = clock

        self._sketches: dict[tuple[str, str], dict[int, Counts]] = {}
        self._realised: dict[tuple[str, str], dict[int, Realised]] = {}
        self._versions: dict[str, set[str]] = {}
        self._newest: dict[tuple[str, str], int] = {}
        self._senders: dict[str, _Sender] = {}
        self._models: dict[str, _ModelState] = {}
        self._references: dict[tuple[str, str], MonitorReference] = {}
        self._reference_failed: dict[tuple[str, str], float] = {}
        self._due: set[str] = set()

        self._dirty: set[tuple[str, str, int, str]] = set()
        self._dirty_senders: set[str] = set()
        self._dirty_models: set[str] = set()
        self._changes: list[StatusChange] = []
        self._alerts: list[Alert] = []
        self._sustained: list[tuple[str, int]] = []

        self.counters = {
            "flushes": 0,
            "duplicates": 0,
            "rows": 0,
            "late_rows": 0,
            "rejected_rows": 0,
            "unlogged_predictions": 0,
            "prediction_log_errors": 0,
            "evaluations": 0,
            "commits": 0,
            "commit_errors": 0,
        }
        self._floor = self._now_minute() - self.max_window_minutes
        self._load()

    # --- configuration ------------------------------------------------------------------

    def config(self, model: str) -> ModelConfig:
        """A model's monitoring configuration (defaults when it has no spec)."""
        return self._configs.get(model, self._default)

    @property
    def max_window_minutes(self) -> int:
        """The widest window of any model: buckets older than this leave memory."""
        widths = [c.window_minutes for c in self._configs.values()]
        return max([self._default.window_minutes, *widths])

    def _now(self) -> float:
        return float(self._clock())

    def _now_minute(self) -> int:
        return minute_of(self._now())

    @property
    def _retention_minutes(self) -> int:
        return int(self.settings.monitor_retention_days * 24 * 60)

    # --- loading the store after a (re)start ------------------------------------------

    def _load(self) -> None:
        for row in self.store.load_buckets(self._floor):
            self._install_bucket(row)
        for srow in self.store.load_senders():
            self._senders[srow.sender] = _Sender.of(srow)
        for mrow in self.store.load_models():
            self._models[mrow.model] = _ModelState(
                version=mrow.version,
                status=mrow.status,
                judged=mrow.judged,
                streak=mrow.streak,
                evaluated_at=mrow.evaluated_at,
                summary=json.loads(mrow.summary or "{}"),
            )

    def _install_bucket(self, row: BucketRow) -> None:
        key = (row.model, row.version)
        data = json.loads(row.data)
        if row.kind == SKETCH:
            self._sketches.setdefault(key, {})[row.minute] = Counts.from_json(data)
            self._versions.setdefault(row.model, set()).add(row.version)
            self._newest[key] = max(self._newest.get(key, row.minute), row.minute)
        else:
            self._realised.setdefault(key, {})[row.minute] = _realised_of(row.kind, data)

    def _stored_bucket(self, model: str, version: str, minute: int, kind: str) -> Any:
        """A bucket older than what memory holds, read from the store (None if absent)."""
        rows = self.store.load_bucket_keys([(model, version, minute, kind)])
        if not rows:
            return None
        self._install_bucket(rows[0])
        if kind == SKETCH:
            return self._sketches[(model, version)][minute]
        return self._realised[(model, version)][minute]

    # --- ingest ---------------------------------------------------------------------------

    def ingest(self, flush: Flush) -> bool:
        """Apply a flush unless its (sender, seq) was applied before.

        Returns:
            True when applied now, False for a duplicate. Either way it is acknowledged
            only once :meth:`take_commit`'s batch holding it is stored.

        Raises:
            UsageError: the flush has no sender or a negative seq (nothing is applied).
        """
        if not flush.sender or flush.seq < 0:
            raise UsageError("a flush needs a sender id and a sequence number >= 0")
        sender = self._senders.get(flush.sender)
        if sender is None:
            sender = self._senders[flush.sender] = _Sender()
        if sender.seen(flush.seq):
            self.counters["duplicates"] += 1
            return False
        now_minute = self._now_minute()
        oldest = now_minute - self._retention_minutes
        for part in flush.parts:
            if not oldest <= part.minute <= now_minute + FUTURE_MINUTES:
                self.counters["late_rows"] += part.counts.rows
                continue
            self._apply_part(part.model, part.version, part.minute, part.counts)
        if flush.predictions:
            self._record_predictions(flush.predictions)
        sender.add(flush.seq)
        sender.dropped_rows = max(sender.dropped_rows, int(flush.dropped_rows))
        sender.last_seen = self._now()
        self._dirty_senders.add(flush.sender)
        self.counters["flushes"] += 1
        return True

    def _apply_part(self, model: str, version: str, minute: int, counts: Counts) -> None:
        key = (model, version)
        buckets = self._sketches.setdefault(key, {})
        bucket = buckets.get(minute)
        if bucket is None and minute < self._floor:
            bucket = self._stored_bucket(model, version, minute, SKETCH)
        if bucket is not None and not _fits(bucket, counts):
            # A sender binned against another layout for this version: refusing the part
            # keeps the bucket exact; refusing the whole flush would make it resend forever.
            log.warning("%s v%s: a part does not fit the bucket's layout; refused", model, version)
            self.counters["rejected_rows"] += counts.rows
            return
        add_to_bucket(buckets, minute, counts)
        self._versions.setdefault(model, set()).add(version)
        self._dirty.add((model, version, minute, SKETCH))
        self.counters["rows"] += counts.rows
        newest = self._newest.get(key)
        if newest is None or minute > newest:
            if newest is not None:
                self._due.add(model)  # the bucket of `newest` is complete
            self._newest[key] = minute

    def _record_predictions(self, records: Sequence[PredictionRecord]) -> None:
        if self.prediction_log is None:
            self.counters["unlogged_predictions"] += len(records)
            return
        try:
            self.prediction_log.record(records)
        except Exception:
            # The counts of the flush stay exact; only these predictions miss their labels.
            log.exception("the prediction log failed to record %d predictions", len(records))
            self.counters["prediction_log_errors"] += 1

    def add_realised(self, model: str, version: str, minute: int, counts: Realised) -> None:
        """Merge realised performance counters of rows predicted in ``minute`` (for the
        prediction log, once labels arrive); stored by the next commit.

        Raises:
            ValueError: the counters do not add to the bucket's (other labels or kind).
        """
        key = (model, version)
        kind = _kind_of(counts)
        buckets = self._realised.setdefault(key, {})
        bucket = buckets.get(minute)
        if bucket is None and minute < self._floor:
            bucket = self._stored_bucket(model, version, minute, kind)
        if bucket is not None and _kind_of(bucket) != kind:
            raise ValueError(f"{model} v{version}: {kind} counts do not add to {_kind_of(bucket)}")
        if bucket is None:
            buckets[minute] = copy.deepcopy(counts)
        else:
            bucket.add(counts)  # type: ignore[arg-type]  # same kind, checked above
        self._dirty.add((model, version, minute, kind))

    def feedback(self, model: str, labels: Sequence[Label]) -> FeedbackResult:
        """Hand labels to the prediction log.

        Raises:
            MonitorError: no prediction log is configured.
        """
        if self.prediction_log is None:
            raise MonitorError("feedback is not available: the monitor has no prediction log")
        return self.prediction_log.feedback(model, labels)

    # --- group commit ---------------------------------------------------------------------

    def has_pending(self) -> bool:
        """Whether anything waits to be stored."""
        dirty = self._dirty or self._dirty_senders or self._dirty_models
        return bool(dirty or self._changes or self._alerts)

    def take_commit(self) -> Commit | None:
        """Everything changed since the last commit, as one batch (None when nothing did).

        Call :meth:`committed` once the batch is stored, or :meth:`rollback` if it failed.
        """
        if not self.has_pending():
            return None
        rows = []
        for model, version, minute, kind in self._dirty:
            key = (model, version)
            bucket: Any = (self._sketches if kind == SKETCH else self._realised)[key][minute]
            rows.append(
                BucketRow(model, version, minute, kind, bucket.rows, json.dumps(bucket.to_json()))
            )
        models = []
        for name in self._dirty_models:
            st = self._models[name]
            models.append(
                ModelRow(
                    name,
                    st.version,
                    st.status,
                    st.judged,
                    st.streak,
                    st.evaluated_at,
                    json.dumps(st.summary),
                )
            )
        commit = Commit(
            batch=Batch(
                buckets=rows,
                senders=[self._senders[s].row(s) for s in self._dirty_senders],
                models=models,
                changes=self._changes,
                alerts=self._alerts,
            ),
            bucket_keys=self._dirty,
            senders=self._dirty_senders,
            sustained=self._sustained,
        )
        self._dirty, self._dirty_senders, self._dirty_models = set(), set(), set()
        self._changes, self._alerts, self._sustained = [], [], []
        return commit

    def committed(self, commit: Commit) -> None:
        """The batch is stored: hand its alerts and sustained drifts to the hooks."""
        self.counters["commits"] += 1
        for alert in commit.batch.alerts:
            if self.on_alert is not None:
                try:
                    self.on_alert(alert)
                except Exception:
                    log.exception("the alert hook failed for %s", alert.model)
        for model, streak in commit.sustained:
            if self.on_sustained_drift is not None:
                try:
                    self.on_sustained_drift(model, streak)
                except Exception:
                    log.exception("the sustained-drift hook failed for %s", model)

    def rollback(self, commit: Commit) -> None:
        """The batch was not stored: put its buckets and senders (and those changed since)
        back as stored, so that the flushes, never acknowledged, can be applied again.

        Evaluations, status changes and alerts are kept for the next commit.
        """
        self.counters["commit_errors"] += 1
        keys = commit.bucket_keys | self._dirty
        for model, version, minute, kind in keys:
            holder: Any = self._sketches if kind == SKETCH else self._realised
            holder.get((model, version), {}).pop(minute, None)
        for row in self.store.load_bucket_keys(keys):
            self._install_bucket(row)
        names = commit.senders | self._dirty_senders
        for name in names:
            self._senders.pop(name, None)
        for srow in self.store.load_senders(names):
            self._senders[srow.sender] = _Sender.of(srow)
        self._dirty, self._dirty_senders = set(), set()
        self._dirty_models |= {m.model for m in commit.batch.models}
        self._changes = commit.batch.changes + self._changes
        self._alerts = commit.batch.alerts + self._alerts
        self._sustained = commit.sustained + self._sustained

    def commit(self) -> bool:
        """Take and store a batch now, in this thread (returns whether there was one)."""
        commit = self.take_commit()
        if commit is None:
            return False
        try:
            self.store.write(commit.batch)
        except Exception:
            self.rollback(commit)
            raise
        self.committed(commit)
        return True

    # --- references -------------------------------------------------------------------

    def missing_references(self, models: Iterable[str]) -> list[tuple[str, str]]:
        """(model, version) pairs with traffic whose reference is not loaded (and did not
        fail to load within :data:`REFERENCE_RETRY_S`)."""
        now = self._now()
        out = []
        for model in models:
            for version in sorted(self._versions.get(model, ())):
                key = (model, version)
                failed = self._reference_failed.get(key)
                if key not in self._references and (
                    failed is None or now - failed >= REFERENCE_RETRY_S
                ):
                    out.append(key)
        return out

    def fetch_reference(self, model: str, version: str) -> MonitorReference | None:
        """Call the loader (safe on another thread: it changes nothing here)."""
        try:
            return self._loader(model, version)
        except Exception as exc:
            log.warning("no reference for %s v%s: %s", model, version, exc)
            return None

    def set_reference(self, model: str, version: str, reference: MonitorReference | None) -> None:
        """Keep a fetched reference (None: retry after :data:`REFERENCE_RETRY_S`)."""
        if reference is None:
            self._reference_failed[(model, version)] = self._now()
        else:
            self._references[(model, version)] = reference
            self._reference_failed.pop((model, version), None)

    def reference(self, model: str, version: str) -> MonitorReference | None:
        """A version's reference, loaded now if needed (None when it has none)."""
        key = (model, version)
        failed = self._reference_failed.get(key)
        retry = failed is None or self._now() - failed >= REFERENCE_RETRY_S
        if key not in self._references and retry:
            self.set_reference(model, version, self.fetch_reference(model, version))
        return self._references.get(key)

    # --- evaluation -----------------------------------------------------------------------

    def known_models(self) -> list[str]:
        """Models in the specs, with traffic in memory, or with a stored status."""
        return sorted(set(self.specs) | set(self._versions) | set(self._models))

    def due_models(self) -> list[str]:
        """Models with a newly completed bucket or not evaluated for a while."""
        now = self._now()
        every = self.settings.monitor_evaluate_seconds
        out = set(self._due)
        for name in self.known_models():
            st = self._models.get(name)
            if st is None or now - st.evaluated_at >= every:
                out.add(name)
        return sorted(out)

    def evaluate_all(self) -> list[dict[str, Any]]:
        """Evaluate every known model now; their summaries."""
        return [self.evaluate_model(name) for name in self.known_models()]

    def evaluate_model(self, model: str) -> dict[str, Any]:
        """Judge every version of ``model`` over its current window; update its status
        (queueing the status change, alert and sustained drift for the next commit)."""
        self._due.discard(model)
        at = self._now()
        now_minute = minute_of(at)
        cfg = self.config(model)
        evaluations: dict[str, VersionEvaluation] = {}
        for name in sorted(self._versions.get(model, ())):
            window = current_window(
                self._sketches.get((model, name), {}),
                now_minute,
                minutes=cfg.window_minutes,
                rows=cfg.window_rows,
            )
            if window.counts is None or window.rows == 0:
                continue
            evaluations[name] = self._evaluate_version(
                model, name, window.counts, window.minutes, cfg
            )
        primary = self._primary(evaluations)
        st = self._models.setdefault(model, _ModelState())
        status = primary.status if primary else "insufficient"
        version = primary.version if primary else None
        if primary is not None and st.version is not None and primary.version != st.version:
            st.streak = 0  # a new version earns its own sustained drift
        st.streak = st.streak + 1 if status == "drift" else 0
        reason = _reason(primary)
        summary = self._summary(model, cfg, primary, evaluations, st.streak, at, reason, status)
        rows = primary.rows if primary else 0
        if status != st.status:
            self._changes.append(StatusChange(model, version, at, st.status, status, rows, reason))
        if status != "insufficient":
            if status != (st.judged or "ok"):
                self._alerts.append(
                    Alert(new_id(), model, version, at, st.judged, status, reason, summary)
                )
            st.judged = status
        if status == "drift" and st.streak >= cfg.sustained_windows:
            self._sustained.append((model, st.streak))
        st.version, st.status, st.evaluated_at, st.summary = version, status, at, summary
        st.details = {v: self._detail(ev) for v, ev in evaluations.items()}
        if primary is not None:
            st.trail.append(
                {
                    "at": at,
                    "version": primary.version,
                    "status": status,
                    "rows": primary.rows,
                    "values": {c["name"]: c["value"] for c in primary.columns},
                }
            )
        self._dirty_models.add(model)
        self.counters["evaluations"] += 1
        return summary

    @staticmethod
    def _primary(evaluations: Mapping[str, VersionEvaluation]) -> VersionEvaluation | None:
        def rank(ev: VersionEvaluation) -> tuple[int, int, int, str]:
            numeric = int(ev.version) if ev.version.isdigit() else -1
            return (ev.rows, ev.minutes[0] if ev.minutes else 0, numeric, ev.version)

        return max(evaluations.values(), key=rank, default=None)

    def _evaluate_version(
        self,
        model: str,
        version: str,
        counts: Counts,
        minutes: tuple[int, ...],
        cfg: ModelConfig,
    ) -> VersionEvaluation:
        realised = merge(
            self._realised[(model, version)][m]
            for m in minutes
            if m in self._realised.get((model, version), {})
        )
        reference = self.reference(model, version)
        if reference is None:
            return VersionEvaluation(
                version,
                "insufficient",
                counts.rows,
                minutes,
                [],
                estimated_accuracy(counts),
                _realised_json(realised),
                error=f"no reference for version {version}",
            )
        columns = [self._column(ref, counts, cfg, "feature") for ref in reference.features]
        prediction = self._column(reference.prediction, counts, cfg, "prediction")
        status = stats.model_status(
            [c["verdict"] for c in columns], prediction["verdict"], drift_share=cfg.drift_share
        )
        return VersionEvaluation(
            version,
            status,
            counts.rows,
            minutes,
            [*columns, prediction],
            estimated_accuracy(counts) if reference.task == "classification" else None,
            _realised_json(realised),
        )

    @staticmethod
    def _column(
        ref: ColumnReference, counts: Counts, cfg: ModelConfig, role: str
    ) -> dict[str, Any]:
        rule = cfg.rule_for(ref.name, ref.kind)
        current = counts.columns.get(ref.name)
        entry: dict[str, Any] = {
            "name": ref.name,
            "role": role,
            "kind": ref.kind,
            "method": rule.method.name,
            **rule.thresholds(),
            "labels": ref.labels(),
            "reference": [int(x) for x in ref.counts],
            "reference_nulls": int(ref.nulls),
            "nulls": int(counts.nulls.get(ref.name, 0)),
        }
        if current is None or current.size != ref.counts.size:
            return {
                **entry,
                "value": None,
                "verdict": "insufficient",
                "rows": 0,
                "statistics": {},
                "current": None,
                "error": "no counts in the reference's layout",
            }
        found = stats.feature_verdict(
            ref.counts,
            current,
            kind=ref.kind,
            method=rule.method,
            drift=rule.drift,
            warning=rule.warning,
            min_rows=rule.min_rows,
        )
        return {
            **entry,
            "value": found.value,
            "verdict": found.verdict,
            "rows": found.rows,
            "statistics": stats.statistics(ref.counts, current, ref.kind),
            "current": [int(x) for x in np.asarray(current)],
        }

    def _summary(
        self,
        model: str,
        cfg: ModelConfig,
        primary: VersionEvaluation | None,
        evaluations: Mapping[str, VersionEvaluation],
        streak: int,
        at: float,
        reason: str,
        status: str,
    ) -> dict[str, Any]:
        prediction = primary.prediction() if primary else None
        return {
            "model": model,
            "status": status,
            "version": primary.version if primary else None,
            "evaluated_at": at,
            "rows": primary.rows if primary else 0,
            "window": {
                "minutes": cfg.window_minutes,
                "max_rows": cfg.window_rows,
                "buckets": list(primary.minutes) if primary else [],
            },
            "method": cfg.rule.method.name,
            "drifted_features": primary.by_verdict("drift") if primary else [],
            "warning_features": primary.by_verdict("warning") if primary else [],
            "prediction": None
            if prediction is None
            else {k: prediction[k] for k in ("method", "value", "verdict")},
            "drift_streak": streak,
            "sustained_windows": cfg.sustained_windows,
            "performance": {
                "estimated_accuracy": primary.estimated_accuracy if primary else None,
                "realised": primary.realised if primary else None,
            },
            "versions": [
                {"version": v, "status": ev.status, "rows": ev.rows}
                for v, ev in sorted(evaluations.items())
            ],
            "reason": reason,
            "error": primary.error if primary else None,
        }

    @staticmethod
    def _detail(ev: VersionEvaluation) -> dict[str, Any]:
        return {
            "version": ev.version,
            "status": ev.status,
            "rows": ev.rows,
            "buckets": list(ev.minutes),
            "features": [c for c in ev.columns if c["role"] == "feature"],
            "prediction": ev.prediction(),
            "estimated_accuracy": ev.estimated_accuracy,
            "realised": ev.realised,
            "error": ev.error,
        }

    # --- what the API shows -------------------------------------------------------------

    def fleet(self) -> list[dict[str, Any]]:
        """Every known model's latest summary, with its last alert and last retrain."""
        alerts = self._last_alerts()
        retrains = self.store.last_retrains()
        out = []
        for name in self.known_models():
            st = self._models.get(name)
            summary = dict(st.summary) if st and st.summary else self._never_evaluated(name)
            summary["last_alert"] = alerts.get(name)
            summary["last_retrain"] = retrains.get(name)
            out.append(summary)
        return out

    def _last_alerts(self) -> dict[str, dict[str, Any]]:
        """Each model's last alert without the evaluation it carried (the row has it)."""
        alerts = self.store.last_alerts()
        for alert in alerts.values():
            alert.pop("details", None)
        return alerts

    def _never_evaluated(self, model: str) -> dict[str, Any]:
        return {
            "model": model,
            "status": "insufficient",
            "version": None,
            "evaluated_at": None,
            "rows": 0,
            "drifted_features": [],
            "reason": "not evaluated yet",
        }

    def model(self, name: str, version: str | None = None) -> dict[str, Any]:
        """A model's summary with, for ``version`` (default: the one its status is about),
        every column's statistics, verdict and histograms, and its recent status changes.

        Raises:
            NotFoundError: the model is not monitored, or has no such version in its window.
        """
        if name not in self.known_models():
            raise NotFoundError(f"no monitored model is named {name!r}")
        st = self._models.get(name)
        if st is None or not st.summary or (st.version is not None and not st.details):
            self.evaluate_model(name)  # after a restart, before the first scheduled evaluation
            st = self._models[name]
        wanted = version or st.version
        detail = st.details.get(wanted) if wanted is not None else None
        if version is not None and detail is None:
            raise NotFoundError(f"{name} has no version {version!r} with rows in its window")
        out = dict(st.summary)
        out["detail"] = detail
        out["history"] = self.store.status_history(name, HISTORY_IN_DETAIL)
        out["last_alert"] = self._last_alerts().get(name)
        out["last_retrain"] = self.store.last_retrains().get(name)
        return out

    def history(self, name: str, limit: int = 50) -> dict[str, Any]:
        """A model's past: per evaluation (kept in memory, oldest first) the statistic of
        each column under its configured method, and from the store its latest status
        changes, alerts (without the evaluation they carried) and retrains, newest first.
        A model never monitored has empty lists."""
        st = self._models.get(name)
        alerts = self.store.alerts(name, limit)
        for alert in alerts:
            alert.pop("details", None)
        return {
            "model": name,
            "statistics": list(st.trail) if st is not None else [],
            "statuses": self.store.status_history(name, limit),
            "alerts": alerts,
            "retrains": self.store.retrains(name, limit),
        }

    def last_detail(self, model: str) -> dict[str, Any] | None:
        """The latest evaluation's detail of the version a model's status is about."""
        st = self._models.get(model)
        if st is None or st.version is None:
            return None
        return st.details.get(st.version)

    def health(self) -> dict[str, Any]:
        """Counters, senders and what waits to be stored."""
        now = self._now()
        active = [s for s in self._senders.values() if now - s.last_seen < 10 * 60]
        return {
            "models": len(self.known_models()),
            "buckets": sum(len(b) for b in self._sketches.values()),
            "senders": len(self._senders),
            "active_senders": len(active),
            "dropped_rows": sum(s.dropped_rows for s in self._senders.values()),
            "pending": self.has_pending(),
            "store": self.store.url,
            **self.counters,
        }

    def sender_seq(self, sender: str) -> int | None:
        """The highest seq applied from ``sender`` (None if never heard of)."""
        found = self._senders.get(sender)
        return None if found is None else found.last_seq

    # --- memory and retention -----------------------------------------------------------

    def expire(self) -> int:
        """Drop from memory the buckets no window can reach (they stay in the store)."""
        floor = self._now_minute() - self.max_window_minutes
        self._floor = max(self._floor, floor)
        dropped = 0
        for holder in (self._sketches, self._realised):
            for key in list(holder):
                buckets: dict[int, Any] = holder[key]
                for minute in [m for m in buckets if m < self._floor]:
                    kind = SKETCH if holder is self._sketches else _kind_of(buckets[minute])
                    if (*key, minute, kind) not in self._dirty:
                        del buckets[minute]
                        dropped += 1
                if not buckets:
                    del holder[key]
        for model in list(self._versions):
            live = {v for v in self._versions[model] if (model, v) in self._sketches}
            self._versions[model] = live
            if not self._versions[model]:
                del self._versions[model]
        for key in list(self._references):
            if key not in self._sketches:
                del self._references[key]
        return dropped

    def prune(self) -> int:
        """Delete from the store what is older than the retention; returns buckets deleted."""
        now = self._now()
        return self.store.prune(
            before_minute=minute_of(now) - self._retention_minutes,
            before_time=now - self.settings.monitor_retention_days * 86_400,
            keep_models=self.specs,
        )
