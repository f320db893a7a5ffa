"""Delayed labels: the predicted rows kept for them, and the labelled rows as training data.

The gateway sends the monitor a :class:`~mlfleet.monitoring.protocol.PredictionRecord` per
answered request (its rows, as the model read them, and its predictions). A
:class:`PredictionLog` keeps them row by row in SQL (an SQLAlchemy ``Engine``, the
monitor store's), bounded to ``MLFLEET_FEEDBACK_MAX_ROWS`` predicted rows: the oldest go
first. When labels arrive (``POST /v1/models/{name}/feedback``), :meth:`PredictionLog.join`

- matches each :class:`~mlfleet.monitoring.protocol.Label` to its logged row (request id
  and row index, for that model); the request ids of labels that match no row it keeps
  (never logged, evicted, another model's, a row index beyond the request's) are reported;
- reads the label as the contract reads the target column (normalisation, tokens,
  parsing): a label the contract refuses fails the whole call (:class:`LabelError`),
  before anything is stored, so the caller can fix it and send the batch again;
- counts a row once: a label for a row that already has one is ignored;
- writes the newly labelled rows as one Parquet file under
  ``$MLFLEET_HOME/feedback/NAME/`` (written aside, then renamed into place, so a reader
  never sees half a file), in the contract's columns and types: the features the
  request carried and the target. The folder is a valid training source
  (:func:`feedback_source` gives its glob, which ``mlfleet train --extra-source`` takes);
- returns realised-performance counters per (version, minute the prediction was made):
  :class:`~mlfleet.monitoring.performance.ConfusionCounts` for classifiers,
  :class:`~mlfleet.monitoring.performance.ErrorCounts` for regressors, additive like the
  sketches, for the monitor's buckets.

The rows are written with the contract of the newest version among them: the contract a
retrain validates them with. Contract columns that are not features (keys, ids) are
written only when the logged rows carry them; a contract that requires such a column
rejects feedback rows without it, and a retrain then quarantines them.

The monitor actor takes :func:`prediction_log` (its store's engine, realised counters to
its state's ``add_realised``). No Ray; MLflow only in :func:`registry_target`, the
default way to learn a version's contract and classes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from mlfleet.contract import semantics
from mlfleet.contract.schema import Contract, parse_contract
from mlfleet.errors import MlfleetError, UsageError
from mlfleet.monitoring.performance import ConfusionCounts, ErrorCounts
from mlfleet.monitoring.protocol import FeedbackResult, Label, PredictionRecord
from mlfleet.monitoring.reference import MonitorReference
from mlfleet.monitoring.store import ROW_ID
from mlfleet.monitoring.window import minute_of
from mlfleet.settings import Settings
from mlfleet.spec import MODEL_NAME_PATTERN

FEEDBACK_DIR = "feedback"
MAX_UNKNOWN = 100  # request ids listed back at most per call
_IN_CHUNK = 500  # ids per SQL IN list (SQLite caps bound parameters)

logger = logging.getLogger(__name__)

Performance = ConfusionCounts | ErrorCounts
Realised = dict[tuple[str, int], Performance]  # (version, minute) -> counters

_metadata = sa.MetaData()
PREDICTIONS = sa.Table(
    "feedback_predictions",
    _metadata,
    sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("row_index", sa.Integer, nullable=False),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("features", sa.Text, nullable=False),  # JSON object: feature -> value
    sa.Column("prediction", sa.Text, nullable=False),  # JSON value
    sa.Column("label", sa.Text, nullable=True),  # JSON value, as the contract parsed it
    sa.Column("labelled_at", sa.Float, nullable=True),
    sa.UniqueConstraint("request_id", "row_index", name="feedback_predictions_request_row"),
)


class LabelError(MlfleetError):
    """Labels the contract's target column refuses; none of the call's labels was stored."""

    code = "label_invalid"
    http_status = 422


@dataclass(frozen=True)
class LabelTarget:
    """What joining labels needs to know about one model version.

    Attributes:
        contract: The version's data contract (its target column reads the labels).
        task: ``classification`` or ``regression``.
        classes: Classifiers: the class labels of the version's monitoring reference (the
            confusion matrix's slots, as text); without them no realised counters are
            returned. Empty for regressors.
    """

    contract: Contract
    task: str
    classes: tuple[str, ...] = ()


def feedback_dir(home: Path, name: str) -> Path:
    """``<home>/feedback/<name>``, where a model's labelled rows go.

    Raises:
        UsageError: ``name`` is not a model name (it becomes a folder name).
    """
    if not re.fullmatch(MODEL_NAME_PATTERN, name):
        raise UsageError(f"{name!r} is not a model name")
    return home / FEEDBACK_DIR / name


def feedback_source(home: Path, name: str) -> str | None:
    """The SOURCE glob of a model's labelled rows, or None while there are none."""
    folder = feedback_dir(home, name)
    if not any(folder.glob("*.parquet")):
        return None
    return str(folder / "*.parquet")


def registry_target(name: str, version: str) -> LabelTarget:
    """A version's contract, task and classes, from what training registered with it.

    The contract from ``contract.yaml``; task and classes from ``monitoring.json`` (the
    prediction reference), else the ``mlfleet.task`` tag and the target column's allowed
    values. The registry must be configured (:func:`mlfleet.registry.configure`).
    """
    import yaml

    from mlfleet import registry

    origin = f"models:/{name}/{version}/contract.yaml"
    contract = parse_contract(
        yaml.safe_load(registry.version_artifact(name, version, "contract.yaml")), origin=origin
    )
    try:
        monitoring = json.loads(registry.version_artifact(name, version, "monitoring.json"))
    except Exception:  # versions trained before monitoring.json existed
        monitoring = {}
    task = monitoring.get("task") or registry.get_version(name, version).tags.get("mlfleet.task")
    assert contract.target is not None
    target = contract.column(contract.target)
    if task is None:
        task = "classification" if semantics.kind(target) == "categorical" else "regression"
    classes: Iterable[Any] = ()
    if task == "classification":
        prediction = monitoring.get("prediction") or {}
        classes = prediction.get("categories") or target.values or ()
    return LabelTarget(contract=contract, task=str(task), classes=tuple(str(c) for c in classes))


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):
        return value.item()  # numpy scalars
    if isinstance(value, datetime):
        return value.isoformat()  # read back by _write for the contract's datetime columns
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_plain, separators=(",", ":"))


def _chunks(items: Sequence[str], size: int = _IN_CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (-1, version)


@dataclass
class _Logged:
    id: int
    version: str
    at: float
    features: dict[str, Any]
    prediction: Any
    labelled: bool


class PredictionLog:
    """Predicted rows by request id, bounded, and the join of labels to them.

    Args:
        engine: Where the rows live (the monitor store's engine); the table
            ``feedback_predictions`` is created on it if missing.
        home: ``MLFLEET_HOME``: labelled rows go to ``<home>/feedback/<name>/``.
        max_rows: Predicted rows kept; the oldest are evicted first.
        target_of: ``(name, version) -> LabelTarget``; default :func:`registry_target`.
            Looked up once per version.
        on_realised: ``(name, version, minute, counters)``, called by :meth:`feedback`
            for the realised counters of each (version, minute) it labelled.
    """

    def __init__(
        self,
        engine: sa.Engine,
        home: Path,
        *,
        max_rows: int = 200_000,
        target_of: Callable[[str, str], LabelTarget] = registry_target,
        on_realised: Callable[[str, str, int, Performance], None] | None = None,
    ) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        self.engine = engine
        self.home = home
        self.max_rows = max_rows
        self.on_realised = on_realised
        self._target_of = target_of
        self._targets: dict[tuple[str, str], LabelTarget] = {}
        _metadata.create_all(engine, tables=[PREDICTIONS])

    @classmethod
    def from_settings(cls, engine: sa.Engine, settings: Settings) -> PredictionLog:
        """A log under ``settings.home``, bounded by ``MLFLEET_FEEDBACK_MAX_ROWS``."""
        return cls(engine, settings.home, max_rows=settings.feedback_max_rows)

    # --- predictions ---------------------------------------------------------------------

    def record(self, records: Sequence[PredictionRecord]) -> None:
        """Keep the rows of ``records`` for their labels.

        A request id already logged is not stored again (a resent flush); a record whose
        rows and predictions differ in number is skipped with a warning.
        """
        if not records:
            return
        known = self._known_requests([r.request_id for r in records])
        values: list[dict[str, Any]] = []
        for record in records:
            if record.request_id in known:
                continue
            if len(record.rows) != len(record.predictions):
                logger.warning(
                    "prediction record %s of %s: %d rows but %d predictions; not logged",
                    record.request_id,
                    record.model,
                    len(record.rows),
                    len(record.predictions),
                )
                continue
            known.add(record.request_id)
            for index, (row, prediction) in enumerate(
                zip(record.rows, record.predictions, strict=True)
            ):
                values.append(
                    {
                        "request_id": record.request_id,
                        "row_index": index,
                        "model": record.model,
                        "version": str(record.version),
                        "at": float(record.at),
                        "features": _dumps(row),
                        "prediction": _dumps(prediction),
                    }
                )
        if not values:
            return
        with self.engine.begin() as conn:
            conn.execute(PREDICTIONS.insert(), values)
            self._evict(conn)

    def rows(self) -> int:
        """Predicted rows kept now."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(PREDICTIONS)).scalar_one()
            )

    def _known_requests(self, request_ids: Sequence[str]) -> set[str]:
        unique = sorted(set(request_ids))
        found: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in _chunks(unique):
                query = sa.select(PREDICTIONS.c.request_id).where(
                    PREDICTIONS.c.request_id.in_(chunk)
                )
                found.update(conn.execute(query.distinct()).scalars())
        return found

    def _evict(self, conn: sa.Connection) -> None:
        # The id of the newest row beyond the bound: it and every older row go.
        cut = conn.execute(
            sa.select(PREDICTIONS.c.id)
            .order_by(PREDICTIONS.c.id.desc())
            .limit(1)
            .offset(self.max_rows)
        ).scalar_one_or_none()
        if cut is not None:
            conn.execute(PREDICTIONS.delete().where(PREDICTIONS.c.id <= cut))

    # --- labels --------------------------------------------------------------------------

    def join(
        self, model: str, labels: Sequence[Label], *, now: float | None = None
    ) -> tuple[FeedbackResult, Realised]:
        """Join ``labels`` to the logged predictions of ``model`` (see the module).

        Returns:
            What became of the labels (rows newly labelled, unknown request ids, the
            Parquet file written), and the realised counters of the newly labelled rows
            per (version, minute of the prediction).

        Raises:
            LabelError: a label does not fit the contract's target column (nothing stored).
            UsageError: ``model`` is not a model name.
        """
        folder = feedback_dir(self.home, model)
        logged = self._logged(model, sorted({label.request_id for label in labels}))
        unknown: list[str] = []
        fresh: list[tuple[Label, _Logged]] = []
        seen: set[tuple[str, int]] = set()
        for label in labels:
            key = (label.request_id, label.row)
            row = logged.get(key)
            if row is None:
                if label.request_id not in unknown:
                    unknown.append(label.request_id)
                continue
            if row.labelled or key in seen:
                continue  # a row counts once, whatever is sent again
            seen.add(key)
            fresh.append((label, row))
        if not fresh:
            return FeedbackResult(matched=0, unknown=unknown[:MAX_UNKNOWN]), {}

        targets = {row.version: self.target(model, row.version) for _, row in fresh}
        parsed = self._parse_labels(fresh, targets)
        stamp = time.time() if now is None else now
        written: Path | None = None
        kept: list[tuple[_Logged, Any]] = []
        try:
            with self.engine.begin() as conn:
                for (_, row), value in zip(fresh, parsed, strict=True):
                    done = conn.execute(
                        PREDICTIONS.update()
                        .where(PREDICTIONS.c.id == row.id, PREDICTIONS.c.label.is_(None))
                        .values(label=_dumps(value), labelled_at=stamp)
                    )
                    if done.rowcount == 1:  # else another call labelled it meanwhile
                        kept.append((row, value))
                if kept:
                    newest = max(targets, key=_version_key)
                    written = self._write(folder, model, targets[newest].contract, kept, stamp)
        except BaseException:
            if written is not None:
                written.unlink(missing_ok=True)
            raise
        result = FeedbackResult(
            matched=len(kept),
            unknown=unknown[:MAX_UNKNOWN],
            written=None if written is None else str(written),
        )
        return result, self._realised(kept, targets)

    def feedback(self, model: str, labels: Sequence[Label]) -> FeedbackResult:
        """:meth:`join`, handing the realised counters to ``on_realised`` (the monitor's
        ``add_realised``) instead of returning them."""
        result, realised = self.join(model, labels)
        if self.on_realised is not None:
            for (version, minute), counts in realised.items():
                self.on_realised(model, version, minute, counts)
        return result

    def target(self, model: str, version: str) -> LabelTarget:
        """The contract, task and classes of a version (looked up once)."""
        key = (model, version)
        if key not in self._targets:
            self._targets[key] = self._target_of(model, version)
        return self._targets[key]

    def _logged(self, model: str, request_ids: Sequence[str]) -> dict[tuple[str, int], _Logged]:
        columns = PREDICTIONS.c
        out: dict[tuple[str, int], _Logged] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(request_ids):
                query = sa.select(
                    columns.id,
                    columns.request_id,
                    columns.row_index,
                    columns.version,
                    columns.at,
                    columns.features,
                    columns.prediction,
                    columns.label.is_not(None).label("labelled"),
                ).where(columns.model == model, columns.request_id.in_(chunk))
                for r in conn.execute(query):
                    out[(r.request_id, r.row_index)] = _Logged(
                        id=r.id,
                        version=r.version,
                        at=r.at,
                        features=json.loads(r.features),
                        prediction=json.loads(r.prediction),
                        labelled=bool(r.labelled),
                    )
        return out

    @staticmethod
    def _parse_labels(
        fresh: Sequence[tuple[Label, _Logged]], targets: Mapping[str, LabelTarget]
    ) -> list[Any]:
        """Each label as the version's contract reads its target column."""
        parsed: list[Any] = []
        refused: list[str] = []
        checkers: dict[str, semantics.RowChecker] = {}
        for label, row in fresh:
            contract = targets[row.version].contract
            assert contract.target is not None
            column = contract.column(contract.target)
            checker = checkers.get(row.version)
            if checker is None:
                checker = checkers[row.version] = semantics.RowChecker(contract, [column.name])
            value, codes = checker.check(column, label.label)
            if value is None and not codes:
                codes = (semantics.MISSING,)
            if codes:
                refused.append(f"request {label.request_id} row {label.row}: {', '.join(codes)}")
            parsed.append(value)
        if refused:
            more = f" (and {len(refused) - 3} more)" if len(refused) > 3 else ""
            raise LabelError(
                f"{len(refused)} label(s) do not fit the target column: "
                + "; ".join(refused[:3])
                + more
            )
        return parsed

    @staticmethod
    def _write(
        folder: Path,
        model: str,
        contract: Contract,
        kept: Sequence[tuple[_Logged, Any]],
        stamp: float,
    ) -> Path:
        """The labelled rows as one Parquet file in ``folder``, renamed into place."""
        assert contract.target is not None
        carried = {name for row, _ in kept for name in row.features}
        columns = [c for c in contract.columns if c.name in carried or c.name == contract.target]
        arrays = []
        for col in columns:
            if col.name == contract.target:
                values = [value for _, value in kept]
            else:
                values = [row.features.get(col.name) for row, _ in kept]
            if col.type == "datetime":
                values = [datetime.fromisoformat(v) if isinstance(v, str) else v for v in values]
            raw = semantics.json_column([_nan_to_none(v) for v in values])
            arrays.append(semantics.parse_column(raw, col, contract.null_tokens, len(kept)).values)
        schema = pa.schema(
            [(c.name, semantics.ARROW_TYPES[c.type]) for c in columns],
            metadata={
                "mlfleet.model": model,
                "mlfleet.contract_sha": contract.sha,
                "mlfleet.versions": ",".join(sorted({row.version for row, _ in kept})),
            },
        )
        table = pa.Table.from_arrays(arrays, schema=schema)
        folder.mkdir(parents=True, exist_ok=True)
        when = time.strftime("%Y%m%dT%H%M%S", time.gmtime(stamp))
        final = folder / f"{when}-{uuid.uuid4().hex[:8]}.parquet"
        partial = folder / f".{final.name}.partial"  # never matched by *.parquet
        try:
            pq.write_table(table, partial)
            os.replace(partial, final)
        finally:
            partial.unlink(missing_ok=True)
        return final

    @staticmethod
    def _realised(
        kept: Sequence[tuple[_Logged, Any]], targets: Mapping[str, LabelTarget]
    ) -> Realised:
        pairs: dict[tuple[str, int], tuple[list[Any], list[Any]]] = {}
        for row, value in kept:
            truth, predicted = pairs.setdefault((row.version, minute_of(row.at)), ([], []))
            truth.append(value)
            predicted.append(row.prediction)
        out: Realised = {}
        for key, (truth, predicted) in pairs.items():
            target = targets[key[0]]
            if target.task == "classification":
                if not target.classes:
                    continue  # no class slots to count into (see LabelTarget)
                out[key] = ConfusionCounts.of(target.classes, truth, predicted)
            else:
                out[key] = ErrorCounts.of(truth, predicted)
        return out


def _nan_to_none(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


class MonitorParts(Protocol):
    """What :func:`prediction_log` takes from the monitor: its store's engine…"""

    @property
    def engine(self) -> sa.Engine:
        """The store's SQLAlchemy engine."""
        ...


class MonitorStateParts(Protocol):
    """…and from its state: where realised counters go, and the versions' references."""

    def add_realised(self, model: str, version: str, minute: int, counts: Performance) -> None:
        """Merge realised counters of rows predicted in ``minute``."""
        ...

    def reference(self, model: str, version: str) -> MonitorReference | None:
        """A version's monitoring reference, if it has one."""
        ...


def prediction_log(
    settings: Settings, store: MonitorParts, state: MonitorStateParts
) -> PredictionLog:
    """The monitor actor's prediction log: on the store's engine, bounded by
    ``MLFLEET_FEEDBACK_MAX_ROWS``, its realised counters merged into the state's buckets.

    A classifier's confusion slots are the classes of the reference the monitor holds for
    the version (so the counters add to its buckets); the contract comes from the registry.
    """
    from mlfleet import registry

    registry.configure(settings)

    def target_of(model: str, version: str) -> LabelTarget:
        target = registry_target(model, version)
        reference = state.reference(model, version)
        if target.task == "classification" and reference is not None:
            categories = reference.prediction.categories
            if categories:
                target = LabelTarget(target.contract, target.task, tuple(categories))
        return target

    return PredictionLog(
        store.engine,
        settings.home,
        max_rows=settings.feedback_max_rows,
        target_of=target_of,
        on_realised=state.add_realised,
    )
