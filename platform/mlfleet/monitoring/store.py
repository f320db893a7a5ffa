"""The monitor's SQL store: buckets, senders' sequence numbers, statuses, alerts, retrains.

SQLAlchemy Core on the URL of ``Settings.monitor_store`` (SQLite under ``$MLFLEET_HOME``
by default; the SQL is written for SQLite and PostgreSQL, and the production profile runs
it on PostgreSQL: see docs/production.md). Tables:

============================ =============================================================
``monitor_buckets``          merged counts per (model, version, minute, kind) as JSON:
                             ``sketch`` (:class:`~mlfleet.monitoring.sketch.Counts`),
                             ``confusion`` / ``error`` (realised performance counters)
``monitor_senders``          per sender: the sequence numbers applied, its dropped rows
``monitor_models``           per model: last status, the version it is about, drift streak,
                             last evaluation (JSON)
``monitor_status_history``   one row per status change of a model
``monitor_alerts``           one row per alert (a change of judged status), with what each
                             sink made of it
``monitor_retrains``         one row per retrain the policy decided, with its Ray job id
``scaling_moves``            one row per move of model-aware scaling (promoted to a
                             dedicated deployment, folded back into the pool): why, the
                             rate it saw, and how the move ended
============================ =============================================================

The monitor actor writes buckets, senders, models, history and new alerts in group commits
(:meth:`MonitorStore.write`): a batch of flushes is one transaction, so a sender's sequence
number is stored together with the counts it carried. Sinks and the retrain policy write
through :meth:`~MonitorStore.update_alert`, :meth:`~MonitorStore.record_retrain` and
:meth:`~MonitorStore.update_retrain`; the prediction log creates its own tables on
:attr:`MonitorStore.engine`.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a committed transaction survives the
monitor's process being killed (not a power cut), and readers never wait for the writer.
Write transactions start with ``BEGIN IMMEDIATE`` so that writers from several threads
queue on SQLite's busy timeout instead of failing with "database is locked".

No Ray here.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from mlfleet.errors import SettingsError

SQLITE_BUSY_TIMEOUT_S = 30.0
READ_ONLY = "mlfleet_read_only"  # an execution option: the connection only reads
# Row ids that only grow (history, the prediction log): 64-bit on PostgreSQL, where a SERIAL
# would run out after 2**31 rows; SQLite's INTEGER PRIMARY KEY is 64-bit already and must
# stay spelled INTEGER to remain its rowid.
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()

buckets_table = sa.Table(
    "monitor_buckets",
    metadata,
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("minute", sa.BigInteger, primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_monitor_buckets_minute", "minute"),
)

senders_table = sa.Table(
    "monitor_senders",
    metadata,
    sa.Column("sender", sa.String(256), primary_key=True),
    sa.Column("floor", sa.BigInteger, nullable=False),
    sa.Column("above", sa.Text, nullable=False),  # JSON list of applied seqs above floor
    sa.Column("dropped_rows", sa.BigInteger, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False),
)

models_table = sa.Table(
    "monitor_models",
    metadata,
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("version", sa.String(64), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("judged", sa.String(16), nullable=True),
    sa.Column("streak", sa.Integer, nullable=False),
    sa.Column("evaluated_at", sa.Float, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
)

history_table = sa.Table(
    "monitor_status_history",
    metadata,
    sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(128), nullable=False, index=True),
    sa.Column("version", sa.String(64), nullable=True),
    sa.Column("at", sa.Float, nullable=False, index=True),
    sa.Column("previous", sa.String(16), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)

alerts_table = sa.Table(
    "monitor_alerts",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("model", sa.String(128), nullable=False, index=True),
    sa.Column("version", sa.String(64), nullable=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("previous", sa.String(16), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("deliveries", sa.Text, nullable=False),  # JSON {sink: what it reported}
    sa.Column("updated_at", sa.Float, nullable=False),
)

retrains_table = sa.Table(
    "monitor_retrains",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("model", sa.String(128), nullable=False, index=True),
    sa.Column("version", sa.String(64), nullable=True),  # the version that drifted
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("job_id", sa.String(128), nullable=True),
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

moves_table = sa.Table(
    "scaling_moves",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("model", sa.String(128), nullable=False, index=True),
    sa.Column("at", sa.Float, nullable=False, index=True),
    sa.Column("action", sa.String(16), nullable=False),  # promote | fold
    sa.Column("outcome", sa.String(16), nullable=False),  # done | failed
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("rate", sa.Float, nullable=False),  # requests/s over the policy's window
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("details", sa.Text, nullable=False),  # JSON: deployment, seconds taken, error
)


@dataclass(frozen=True)
class BucketRow:
    """The merged counts of one (model, version, minute) of one kind, as stored."""

    model: str
    version: str
    minute: int
    kind: str  # "sketch", "confusion" or "error"
    rows: int
    data: str  # the counts' to_json(), as JSON text


@dataclass(frozen=True)
class SenderRow:
    """What the monitor applied of one sender: every seq <= floor, and those in above."""

    sender: str
    floor: int
    above: tuple[int, ...]
    dropped_rows: int
    last_seen: float


@dataclass(frozen=True)
class ModelRow:
    """A model's last evaluation as the monitor keeps it across restarts."""

    model: str
    version: str | None
    status: str
    judged: str | None  # last status other than insufficient (what alerts compare)
    streak: int  # consecutive evaluations with status drift
    evaluated_at: float
    summary: str  # JSON of the model's row in fleet()


@dataclass(frozen=True)
class StatusChange:
    """A model's status changed at one evaluation."""

    model: str
    version: str | None
    at: float
    previous: str | None
    status: str
    rows: int
    reason: str


@dataclass(frozen=True)
class Alert:
    """A change of a model's judged status (``ok`` / ``warning`` / ``drift``), for the sinks.

    Attributes:
        id: Unique id (hex), the key sinks report deliveries under.
        model: Model name.
        version: The version the status is about (most rows in the window).
        at: Unix time of the evaluation.
        previous: The judged status before (None for a model's first judged status).
        status: The new status.
        reason: One line for people, e.g. ``3 of 6 features drifted (…)``.
        details: The evaluation's summary (the model's ``fleet()`` row).
    """

    id: str
    model: str
    version: str | None
    at: float
    previous: str | None
    status: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what a webhook posts)."""
        return asdict(self)


@dataclass
class Batch:
    """Everything one group commit writes, in one transaction."""

    buckets: list[BucketRow] = field(default_factory=list)
    senders: list[SenderRow] = field(default_factory=list)
    models: list[ModelRow] = field(default_factory=list)
    changes: list[StatusChange] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.buckets or self.senders or self.models or self.changes or self.alerts)


def new_id() -> str:
    """A fresh id for an alert or a retrain."""
    return uuid.uuid4().hex


def _sqlite_setup(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own transaction handling would BEGIN DEFERRED: take it over (below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A deferred transaction that reads and then writes fails at once with "database is
        # locked" when another writer holds the lock; an immediate one waits its turn.
        # Read-only connections take no lock, and WAL lets them read beside the writer.
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def create_store_engine(url: str) -> Engine:
    """An engine for the monitor's store (SQLite: WAL, busy timeout, folder created).

    Raises:
        SettingsError: the URL does not parse or names an unsupported database.
    """
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise SettingsError(f"MLFLEET_MONITOR_STORE_URL: not a database URL: {url!r}") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise SettingsError(
            f"MLFLEET_MONITOR_STORE_URL: {backend} is not supported (sqlite or postgresql)"
        )
    if backend == "postgresql":
        try:
            return sa.create_engine(parsed, pool_pre_ping=True)
        except ImportError:
            raise SettingsError(
                f"MLFLEET_MONITOR_STORE_URL: the driver {parsed.get_driver_name()} is not "
                "installed (postgresql:// uses psycopg 3, which mlfleet installs)"
            ) from None
    database = parsed.database or ""
    if database in ("", ":memory:"):
        # One shared connection: each new connection to :memory: would be a new database.
        engine = sa.create_engine(
            parsed,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
        )
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
    _sqlite_setup(engine)
    return engine


def _loads(text: str | None, default: Any) -> Any:
    return default if not text else json.loads(text)


class MonitorStore:
    """The monitor's tables on one database (created when missing)."""

    def __init__(self, url: str) -> None:
        self._engine = create_store_engine(url)
        # Reads need no write lock: with WAL they never wait for the writer (see _sqlite_setup).
        self._reader = self._engine.execution_options(**{READ_ONLY: True})
        self._url = url
        metadata.create_all(self._engine)

    @property
    def engine(self) -> Engine:
        """The engine, for tables of the same database kept by others (the prediction log)."""
        return self._engine

    @property
    def url(self) -> str:
        """The store's URL with any password hidden."""
        return sa.make_url(self._url).render_as_string(hide_password=True)

    def close(self) -> None:
        """Release the engine's connections."""
        self._engine.dispose()

    def _upsert(self, table: sa.Table, keys: Sequence[str]) -> Any:
        """An INSERT that overwrites the non-key columns of an existing row."""
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(table)
        update = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
        return stmt.on_conflict_do_update(index_elements=list(keys), set_=update)

    def _insert_new(self, table: sa.Table) -> Any:
        """An INSERT that leaves an existing row (same key) alone."""
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table).on_conflict_do_nothing()

    # --- the monitor's group commit ---------------------------------------------------

    def write(self, batch: Batch, *, at: float | None = None) -> None:
        """Write one batch in one transaction (all of it or nothing)."""
        now = time.time() if at is None else at
        with self._engine.begin() as conn:
            if batch.buckets:
                conn.execute(
                    self._upsert(buckets_table, ("model", "version", "minute", "kind")),
                    [{**asdict(b), "updated_at": now} for b in batch.buckets],
                )
            if batch.senders:
                conn.execute(
                    self._upsert(senders_table, ("sender",)),
                    [{**asdict(s), "above": json.dumps(list(s.above))} for s in batch.senders],
                )
            if batch.models:
                conn.execute(
                    self._upsert(models_table, ("model",)), [asdict(m) for m in batch.models]
                )
            if batch.changes:
                conn.execute(history_table.insert(), [asdict(c) for c in batch.changes])
            if batch.alerts:
                conn.execute(
                    self._insert_new(alerts_table),
                    [
                        {
                            **asdict(a),
                            "details": json.dumps(a.details),
                            "deliveries": "{}",
                            "updated_at": now,
                        }
                        for a in batch.alerts
                    ],
                )

    # --- reading back after a restart -------------------------------------------------

    def load_buckets(self, since_minute: int) -> list[BucketRow]:
        """Every bucket of minute ``since_minute`` or later."""
        t = buckets_table
        query = sa.select(t.c.model, t.c.version, t.c.minute, t.c.kind, t.c.rows, t.c.data).where(
            t.c.minute >= since_minute
        )
        with self._reader.connect() as conn:
            return [BucketRow(*row) for row in conn.execute(query)]

    def load_bucket_keys(self, keys: Iterable[tuple[str, str, int, str]]) -> list[BucketRow]:
        """The stored buckets among ``keys`` (model, version, minute, kind)."""
        t = buckets_table
        wanted = list(keys)
        out: list[BucketRow] = []
        with self._reader.connect() as conn:
            for model, version, minute, kind in wanted:
                row = conn.execute(
                    sa.select(t.c.model, t.c.version, t.c.minute, t.c.kind, t.c.rows, t.c.data)
                    .where(t.c.model == model)
                    .where(t.c.version == version)
                    .where(t.c.minute == minute)
                    .where(t.c.kind == kind)
                ).first()
                if row is not None:
                    out.append(BucketRow(*row))
        return out

    def load_senders(self, names: Iterable[str] | None = None) -> list[SenderRow]:
        """Every sender's applied sequence numbers (or those of ``names``)."""
        t = senders_table
        query = sa.select(t.c.sender, t.c.floor, t.c.above, t.c.dropped_rows, t.c.last_seen)
        if names is not None:
            query = query.where(t.c.sender.in_(list(names)))
        with self._reader.connect() as conn:
            return [
                SenderRow(s, int(f), tuple(_loads(a, [])), int(d), float(seen))
                for s, f, a, d, seen in conn.execute(query)
            ]

    def load_models(self) -> list[ModelRow]:
        """Every model's last evaluation."""
        t = models_table
        names = ("model", "version", "status", "judged", "streak", "evaluated_at", "summary")
        query = sa.select(*(t.c[n] for n in names))
        with self._reader.connect() as conn:
            return [ModelRow(*row) for row in conn.execute(query)]

    def status_history(self, model: str, limit: int = 50) -> list[dict[str, Any]]:
        """A model's latest status changes, newest first."""
        t = history_table
        query = (
            sa.select(t)
            .where(t.c.model == model)
            .order_by(t.c.at.desc(), t.c.id.desc())
            .limit(limit)
        )
        with self._reader.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for row in rows:
            row.pop("id", None)
        return rows

    # --- alerts (written by the monitor, deliveries reported by the sinks) ------------

    def record_alert(self, alert: Alert) -> None:
        """Store an alert outside a group commit (a second call with its id does nothing)."""
        self.write(Batch(alerts=[alert]))

    def update_alert(self, alert_id: str, sink: str, delivery: dict[str, Any]) -> None:
        """Record what ``sink`` made of an alert (e.g. ``{"ok": true, "attempts": 2}``).

        Raises:
            KeyError: no alert has this id.
        """
        t = alerts_table
        with self._engine.begin() as conn:
            current = conn.execute(sa.select(t.c.deliveries).where(t.c.id == alert_id)).first()
            if current is None:
                raise KeyError(alert_id)
            deliveries = {**_loads(current[0], {}), sink: delivery}
            conn.execute(
                t.update()
                .where(t.c.id == alert_id)
                .values(deliveries=json.dumps(deliveries, default=str), updated_at=time.time())
            )

    def alerts(self, model: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The latest alerts (of one model), newest first."""
        return self._recent(alerts_table, model, limit)

    def last_alerts(self) -> dict[str, dict[str, Any]]:
        """Each model's latest alert."""
        return self._latest(alerts_table)

    # --- retrains (written by the retrain policy) -------------------------------------

    def record_retrain(
        self,
        model: str,
        *,
        reason: str,
        version: str | None = None,
        status: str = "submitted",
        job_id: str | None = None,
        details: dict[str, Any] | None = None,
        at: float | None = None,
    ) -> str:
        """Record a retrain the policy decided (or skipped); returns its id."""
        retrain_id = new_id()
        now = time.time() if at is None else at
        with self._engine.begin() as conn:
            conn.execute(
                retrains_table.insert().values(
                    id=retrain_id,
                    model=model,
                    version=version,
                    at=now,
                    reason=reason,
                    status=status,
                    job_id=job_id,
                    details=json.dumps(details or {}, default=str),
                    updated_at=now,
                )
            )
        return retrain_id

    def update_retrain(
        self,
        retrain_id: str,
        *,
        status: str | None = None,
        job_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Update a retrain's status, job id or details (merged into the stored details).

        Raises:
            KeyError: no retrain has this id.
        """
        t = retrains_table
        with self._engine.begin() as conn:
            current = conn.execute(sa.select(t.c.details).where(t.c.id == retrain_id)).first()
            if current is None:
                raise KeyError(retrain_id)
            values: dict[str, Any] = {"updated_at": time.time()}
            if status is not None:
                values["status"] = status
            if job_id is not None:
                values["job_id"] = job_id
            if details:
                merged = {**_loads(current[0], {}), **details}
                values["details"] = json.dumps(merged, default=str)
            conn.execute(t.update().where(t.c.id == retrain_id).values(**values))

    def retrains(self, model: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The latest retrains (of one model), newest first."""
        return self._recent(retrains_table, model, limit)

    def last_retrains(self) -> dict[str, dict[str, Any]]:
        """Each model's latest retrain."""
        return self._latest(retrains_table)

    def _recent(self, table: sa.Table, model: str | None, limit: int) -> list[dict[str, Any]]:
        query = sa.select(table).order_by(table.c.at.desc()).limit(limit)
        if model is not None:
            query = query.where(table.c.model == model)
        with self._reader.connect() as conn:
            return [_decoded(dict(r._mapping)) for r in conn.execute(query)]

    def _latest(self, table: sa.Table) -> dict[str, dict[str, Any]]:
        latest = (
            sa.select(table.c.model, sa.func.max(table.c.at).label("at"))
            .group_by(table.c.model)
            .subquery()
        )
        query = sa.select(table).join(
            latest, sa.and_(table.c.model == latest.c.model, table.c.at == latest.c.at)
        )
        with self._reader.connect() as conn:
            return {r.model: _decoded(dict(r._mapping)) for r in conn.execute(query)}

    # --- model-aware scaling (written by mlfleet.serving.scaler) ---------------------------

    def record_move(
        self,
        model: str,
        *,
        action: str,
        outcome: str,
        reason: str,
        rate: float,
        threshold: float,
        details: dict[str, Any] | None = None,
        at: float | None = None,
    ) -> str:
        """Record one scaling move as it ended; returns its id."""
        move_id = new_id()
        with self._engine.begin() as conn:
            conn.execute(
                moves_table.insert().values(
                    id=move_id,
                    model=model,
                    at=time.time() if at is None else at,
                    action=action,
                    outcome=outcome,
                    reason=reason,
                    rate=rate,
                    threshold=threshold,
                    details=json.dumps(details or {}, default=str),
                )
            )
        return move_id

    def moves(self, model: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The latest scaling moves (of one model), newest first."""
        return self._recent(moves_table, model, limit)

    def last_moves(self) -> dict[str, dict[str, Any]]:
        """Each model's latest scaling move."""
        return self._latest(moves_table)

    # --- retention ----------------------------------------------------------------------

    def prune(self, before_minute: int, before_time: float, keep_models: Iterable[str]) -> int:
        """Delete buckets before ``before_minute``, history and senders before
        ``before_time``, and the statuses of models that have no bucket left and are not in
        ``keep_models``. Alerts, retrains and scaling moves are kept (they are few and are
        the audit trail).

        Returns:
            How many buckets went.
        """
        keep = list(keep_models)
        with self._engine.begin() as conn:
            gone = conn.execute(
                buckets_table.delete().where(buckets_table.c.minute < before_minute)
            ).rowcount
            conn.execute(history_table.delete().where(history_table.c.at < before_time))
            conn.execute(senders_table.delete().where(senders_table.c.last_seen < before_time))
            with_buckets = sa.select(buckets_table.c.model).distinct()
            stale = models_table.delete().where(models_table.c.model.not_in(with_buckets))
            if keep:
                stale = stale.where(models_table.c.model.not_in(keep))
            conn.execute(stale)
        return int(gone or 0)


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    """An alert's or a retrain's row with its JSON columns read."""
    for name in ("details", "deliveries"):
        if name in row:
            row[name] = _loads(row[name], {})
    return row
