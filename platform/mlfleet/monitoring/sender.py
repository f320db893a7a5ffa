"""A prediction site's side of the monitor: record what was predicted, flush counts later.

Every place that predicts (the gateway's inline path, the pool, the dedicated deployments)
owns one :class:`SketchSender`. On the request path, :meth:`SketchSender.record` only
appends the model's input (a frame, or the request's parsed columns) and its answer to a
buffer: binning one row costs ~100 µs, a batch of a thousand ~1.4 µs a row. A background
task on the site's event loop wakes every ``monitor_flush_seconds`` (or as soon as
``monitor_flush_rows`` rows wait), bins the buffer per (model, version, minute) against each
version's reference in a worker thread, and sends the counts to the monitor actor as one
:class:`~mlfleet.monitoring.protocol.Flush`. A request never waits for any of it, and
nothing that goes wrong there reaches a request.

Delivery: each flush carries the sender's id and the next sequence number. One flush is in
flight at a time; until the monitor acknowledges it, it is resent unchanged (same seq, same
content), so the monitor can apply each (sender, seq) at most once. Counts made meanwhile
merge into one next flush (counts are additive), so an outage costs memory per (model,
version, minute), not per flush. While the monitor is unreachable at most
``monitor_max_pending_rows`` rows are kept (counts, and logged predictions); beyond that the
oldest are dropped, counted in ``dropped_rows`` (cumulative, sent with every flush) and
shown by :meth:`SketchSender.stats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from mlfleet.errors import NotFoundError
from mlfleet.monitoring.loading import load_reference
from mlfleet.monitoring.protocol import (
    MONITOR_NAME,
    NAMESPACE,
    Ack,
    Flush,
    PredictionRecord,
    SketchPart,
)
from mlfleet.monitoring.reference import MonitorReference
from mlfleet.monitoring.sketch import Binner, Counts
from mlfleet.monitoring.window import minute_of
from mlfleet.settings import Settings

log = logging.getLogger("mlfleet.monitoring")

SEND_TIMEOUT_S = 10.0  # a flush the monitor has not acknowledged by then is resent later
MAX_BACKOFF_S = 10.0  # longest pause between attempts while the monitor is unreachable
CLOSE_TIMEOUT_S = 5.0  # a replica shutting down waits this long at most for its last flush

Send = Callable[[Flush], Awaitable[Ack]]
LoadReference = Callable[[str, str], MonitorReference | None]
PartKey = tuple[str, str, int]  # (model, version, minute)
# What a site predicted from: the model's input frame (the pool and dedicated replicas, one
# per batch), or the request's columns as plain lists of parsed values (the gateway, which
# reads requests that way: a frame per request would cost more than binning it).
Table: TypeAlias = pd.DataFrame | Mapping[str, Sequence[Any]]


def sender_id(role: str) -> str:
    """An id unique to this process (one sender per replica process): role, host, pid."""
    return f"{role}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class MonitorUnavailable(Exception):
    """The monitor actor does not exist (yet) or cannot be reached."""


class MonitorLink:
    """A cached handle to the monitor actor, looked up again after a failure.

    ``find`` and ``name`` point it at another of mlfleet's named actors (the scaler).
    """

    def __init__(
        self, find: Callable[[], Any | None] | None = None, name: str = MONITOR_NAME
    ) -> None:
        self._handle: Any = None
        self._find = find or find_monitor_actor
        self._name = name

    async def handle(self) -> Any:
        """The monitor's actor handle (the lookup runs off the event loop).

        Raises:
            MonitorUnavailable: no monitor runs.
        """
        if self._handle is None:
            found = await asyncio.to_thread(self._find)
            if found is None:
                raise MonitorUnavailable(f"no actor {self._name!r} in namespace {NAMESPACE!r}")
            self._handle = found
        return self._handle

    def forget(self) -> None:
        """Drop the cached handle (the next call looks the actor up again)."""
        self._handle = None

    async def call(self, method: str, *args: Any, timeout: float = SEND_TIMEOUT_S) -> Any:
        """Call one of the monitor's methods and wait for its answer.

        Raises:
            MonitorUnavailable: no monitor runs, or it did not answer in time.
            Exception: whatever the method raised (a Ray task error wrapping it).
        """
        handle = await self.handle()
        try:
            return await asyncio.wait_for(getattr(handle, method).remote(*args), timeout)
        except TimeoutError:
            raise MonitorUnavailable(
                f"actor {self._name!r} did not answer within {timeout:.0f}s"
            ) from None
        except Exception as exc:
            if _unreachable(exc):
                self.forget()
                raise MonitorUnavailable(
                    f"actor {self._name!r} is unreachable ({type(exc).__name__})"
                ) from None
            raise


def find_monitor_actor() -> Any | None:
    """The monitor's handle, or None when it does not run (blocking: a GCS lookup)."""
    # Imported here: the actor module brings the store (SQLAlchemy), which a replica only
    # needs once it has something to send.
    from mlfleet.monitoring.actor import find_monitor

    return find_monitor()


def _unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the actor is gone or unreachable (not an error of its own)."""
    from ray import exceptions

    return isinstance(
        exc,
        exceptions.RayActorError  # died, or unavailable for now
        | exceptions.ActorUnschedulableError
        | exceptions.RaySystemError,
    )


@dataclass
class _Entry:
    """One recorded prediction, as it waits in the buffer."""

    model: str
    version: str
    minute: int
    at: float
    frame: Table
    result: dict[str, Any]
    request_id: str | None
    log: bool  # send a PredictionRecord (the gateway, for labels to join)
    sketch: bool  # count it (False where another site counts the same prediction)

    @property
    def rows(self) -> int:
        return _size(self.frame)


@dataclass
class _Binned:
    """What one pass over buffered entries made (in a worker thread)."""

    parts: list[SketchPart]
    records: list[PredictionRecord]
    retry: list[_Entry]  # entries whose reference could not be loaded yet
    unmonitored_rows: int  # rows of versions without a reference (registered before it)
    failed_rows: int = 0  # rows whose binning failed (a bug, logged): not sent


def _counted_rows(flush: Flush) -> int:
    return sum(p.counts.rows for p in flush.parts)


def _logged_rows(flush: Flush) -> int:
    return sum(len(r.predictions) for r in flush.predictions)


def _plain_column(values: pd.Series | Sequence[Any]) -> list[Any]:
    """A column as JSON-ready Python values, missing values as None."""
    if not isinstance(values, pd.Series):
        return list(values)  # parsed request values: None already stands for missing
    return [None if isinstance(v, float) and v != v else v for v in values.tolist()]


def _size(table: Table) -> int:
    """Rows in ``table``."""
    if isinstance(table, pd.DataFrame):
        return len(table)
    return len(next(iter(table.values()), ()))


def _rows_of(table: Table, rows: np.ndarray) -> Table:
    """The given rows of ``table`` (positions, in order)."""
    if isinstance(table, pd.DataFrame):
        return table.iloc[rows].reset_index(drop=True)
    return {name: [values[i] for i in rows] for name, values in table.items()}


def _joined(tables: list[Table]) -> Table:
    """One table of ``tables``' rows, in order (frames concatenated, columns extended)."""
    if len(tables) == 1:
        return tables[0]
    if all(isinstance(t, pd.DataFrame) for t in tables):
        return pd.concat(tables, ignore_index=True)
    names: list[str] = list(dict.fromkeys(chain.from_iterable(tables)))
    joined: dict[str, list[Any]] = {name: [] for name in names}
    for table in tables:
        for name in names:
            joined[name].extend(
                _plain_column(table[name]) if name in table else [None] * _size(table)
            )
    return joined


class SketchSender:
    """Counts one prediction site's predictions and flushes them to the monitor.

    Args:
        sender_id: This sender's id, unique per process (:func:`sender_id`).
        settings: ``monitoring_enabled``, ``monitor_flush_seconds``, ``monitor_flush_rows``
            and ``monitor_max_pending_rows``.
        send: Delivers a flush and returns the monitor's acknowledgement (default: the
            monitor actor's ``ingest``). Raising, or not answering within
            ``SEND_TIMEOUT_S``, means "not delivered".
        load: A version's reference, None when it has none (default:
            :func:`~mlfleet.monitoring.loading.load_reference`). Blocking; run in a thread.
        clock: Seconds since the Unix epoch (the minute a prediction is counted in).
        recording: Asked while paused, every flush interval: has recording resumed?
            (default: the monitor actor's ``recording``). Raising means "nobody to ask".
    """

    def __init__(
        self,
        sender_id: str,
        settings: Settings,
        *,
        send: Send | None = None,
        load: LoadReference = load_reference,
        clock: Callable[[], float] = time.time,
        recording: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.sender_id = sender_id
        self.enabled = settings.monitoring_enabled
        # Paused fleet-wide by an operator (the monitor's answer to our last flush).
        self._paused = False
        self.flush_seconds = settings.monitor_flush_seconds
        self.flush_rows = settings.monitor_flush_rows
        self.max_pending_rows = settings.monitor_max_pending_rows
        self._link = MonitorLink()
        self._send: Send = send or self._send_to_monitor
        self._load = load
        self._clock = clock
        self._recording = recording or self._monitor_records
        # Recorded, not yet binned (request path appends; the flusher takes it all).
        self._buffer: list[_Entry] = []
        self._buffered_rows = 0
        self._binning_rows = 0  # taken by the flush that is binning them right now
        # Binned, not yet in a flush: merged per (model, version, minute).
        self._unsent: dict[PartKey, Counts] = {}
        self._unsent_records: list[PredictionRecord] = []
        # Sent (at least once) and not acknowledged: resent as it is.
        self._inflight: Flush | None = None
        self._binners: dict[tuple[str, str], Binner | None] = {}
        self._seq = 0
        self._acked_seq = 0
        self._flushes_acked = 0
        self._dropped_rows = 0
        self._dropped_records = 0
        self._dropped_reported = 0
        self._unmonitored_rows = 0
        self._failed_rows = 0
        self._counted_rows = 0
        self._logged_rows = 0
        self._failures = 0
        self._next_attempt = 0.0
        self._last_error: str | None = None
        self._lock: asyncio.Lock | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    # --- the request path ----------------------------------------------------------------

    def record(
        self,
        model: str,
        version: str,
        frame: Table,
        result: dict[str, Any],
        *,
        request_id: str | None = None,
        log: bool = False,
        sketch: bool = True,
    ) -> None:
        """Keep one prediction for the next flush (cheap: no binning, no I/O, no await).

        Args:
            model: The model's name.
            version: The version that predicted.
            frame: The model's input frame (:func:`mlfleet.contract.semantics.model_frame`),
                or the same rows as columns of parsed values (:data:`Table`).
            result: What :func:`mlfleet.serving.models.predict` returned for ``frame``.
            request_id: The request's id (with ``log``).
            log: Also send a :class:`PredictionRecord` (features, predictions, calibrated
                confidences) for delayed labels to join.
            sketch: Count the rows (False when another prediction site counts them).
        """
        if not self.enabled or self._paused or not (log or sketch):
            return
        now = self._clock()
        entry = _Entry(model, version, minute_of(now), now, frame, result, request_id, log, sketch)
        self._buffer.append(entry)
        self._buffered_rows += entry.rows
        if self._buffered_rows > self.max_pending_rows:
            self._trim_buffer()  # the flusher is not keeping up (or not running)
        self._start()
        if self._buffered_rows >= self.flush_rows and self._wake is not None:
            self._wake.set()

    # --- the background task ---------------------------------------------------------------

    def _start(self) -> None:
        if self._task is not None and not self._task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop here: flush() (or the next record on a loop) will
        self._wake = asyncio.Event()
        self._task = loop.create_task(self._run(), name=f"sketch-sender-{self.sender_id}")

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_seconds)
            self._wake.clear()
            try:
                if await self._flush(force=False) is None:
                    # Nothing acknowledged this tick: ask whether recording is paused or
                    # resumed (a replica without traffic learns it too, ready for its next).
                    await self._ask_recording()
            except Exception:  # never let the flusher die: the next tick tries again
                log.warning("sketch flush failed", exc_info=True)

    async def _ask_recording(self) -> None:
        """With nothing to send, ask whether the fleet records (one small call per flush
        interval; a busy sender learns it from its acknowledgements)."""
        try:
            self._paused = not await self._recording()
        except Exception:
            # Nobody to ask (the monitor is down or gone): record again. Counts wait within
            # the bound, and a restarted monitor records.
            self._paused = False

    async def _monitor_records(self) -> bool:
        answer = await self._link.call("recording")
        return bool(answer["recording"])

    async def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Stop the background task after one last flush (best effort, bounded by ``timeout``)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        try:
            await asyncio.wait_for(self.flush(), timeout)
        except Exception:
            log.warning("last sketch flush failed", exc_info=True)

    # --- flushing ----------------------------------------------------------------------------

    async def flush(self) -> Ack | None:
        """Bin what was recorded and send what is pending (now, whatever the timers say).

        Returns:
            The last acknowledgement received, or None if nothing was acknowledged.
        """
        return await self._flush(force=True)

    async def _flush(self, *, force: bool) -> Ack | None:
        # Shielded: a caller that stops waiting (a timeout, close()) must not cancel a
        # flush between taking the buffer and keeping what it binned.
        return await asyncio.shield(self._flush_locked(force=force))

    async def _flush_locked(self, *, force: bool) -> Ack | None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            await self._bin_buffer()
            return await self._send_pending(force=force)

    async def _bin_buffer(self) -> None:
        entries, self._buffer, self._buffered_rows = self._buffer, [], 0
        if not entries:
            return
        self._binning_rows = sum(e.rows for e in entries)
        try:
            binned = await asyncio.to_thread(self._bin, entries)
        finally:
            self._binning_rows = 0
        for part in binned.parts:
            key = (part.model, part.version, part.minute)
            if key in self._unsent:
                self._unsent[key].add(part.counts)
            else:
                self._unsent[key] = part.counts
        self._unsent_records.extend(binned.records)
        self._unmonitored_rows += binned.unmonitored_rows
        self._failed_rows += binned.failed_rows
        self._counted_rows += sum(p.counts.rows for p in binned.parts)
        self._logged_rows += sum(len(r.predictions) for r in binned.records)
        if binned.retry:  # they are older than whatever was recorded meanwhile
            self._buffer[:0] = binned.retry
            self._buffered_rows += sum(e.rows for e in binned.retry)
        self._enforce_bound()

    def _binner(self, model: str, version: str) -> Binner | None:
        """The version's binner (cached; None for a version without a reference). Blocking."""
        key = (model, version)
        if key not in self._binners:
            try:
                reference = self._load(model, version)
            except NotFoundError:
                reference = None  # a version deleted since it predicted
            self._binners[key] = None if reference is None else Binner(reference)
        return self._binners[key]

    def _bin(self, entries: list[_Entry]) -> _Binned:
        """Counts and records of ``entries``, per (model, version, minute). Runs in a thread."""
        out = _Binned([], [], [], 0)
        groups: dict[PartKey, list[_Entry]] = {}
        for entry in entries:
            groups.setdefault((entry.model, entry.version, entry.minute), []).append(entry)
        failed: set[tuple[str, str]] = set()
        for (model, version, minute), group in groups.items():
            if (model, version) in failed:
                out.retry.extend(group)
                continue
            try:
                binner = self._binner(model, version)
            except Exception:
                log.warning("no reference for %s/%s yet", model, version, exc_info=True)
                failed.add((model, version))
                out.retry.extend(group)
                continue
            try:
                self._bin_group(model, version, minute, group, binner, out)
            except Exception:
                log.exception("could not bin %d predictions of %s/%s", len(group), model, version)
                out.failed_rows += sum(e.rows for e in group)
        return out

    def _bin_group(
        self,
        model: str,
        version: str,
        minute: int,
        group: list[_Entry],
        binner: Binner | None,
        out: _Binned,
    ) -> None:
        frame = _joined([e.frame for e in group])
        predictions = list(chain.from_iterable(e.result["predictions"] for e in group))
        has_proba = all("probabilities" in e.result for e in group)
        proba = (
            np.asarray(
                list(chain.from_iterable(e.result["probabilities"] for e in group)), np.float64
            )
            if has_proba
            else None
        )
        sizes = np.array([e.rows for e in group])
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        counted = np.array([e.sketch for e in group])
        if binner is None:
            out.unmonitored_rows += int(sizes[counted].sum())
        elif counted.all():
            counts = binner.count(frame, predictions, proba)
            out.parts.append(SketchPart(model, version, minute, counts))
        elif counted.any():
            rows = np.concatenate(
                [np.arange(s, s + n) for s, n, c in zip(starts, sizes, counted, strict=True) if c]
            )
            counts = binner.count(
                _rows_of(frame, rows),
                [predictions[i] for i in rows],
                None if proba is None else proba[rows],
            )
            out.parts.append(SketchPart(model, version, minute, counts))
        if not any(e.log for e in group):
            return
        calibration = None if binner is None else binner.reference.calibration
        confidences: list[float] | None = None
        if calibration is not None and proba is not None and proba.size:
            confidences = [float(c) for c in calibration(proba.max(axis=1))]
        names = list(frame.columns) if isinstance(frame, pd.DataFrame) else list(frame)
        columns = [_plain_column(frame[name]) for name in names]
        rows_as_dicts = [
            dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)
        ]
        for entry, start, size in zip(group, starts, sizes, strict=True):
            if not entry.log:
                continue
            end = int(start + size)
            out.records.append(
                PredictionRecord(
                    request_id=entry.request_id or uuid.uuid4().hex,
                    model=model,
                    version=version,
                    at=entry.at,
                    rows=rows_as_dicts[start:end],
                    predictions=predictions[start:end],
                    confidences=None if confidences is None else confidences[start:end],
                )
            )

    def _form_flush(self) -> Flush | None:
        """The next flush from what is unsent, with the next seq (None if nothing to say)."""
        news = self._unsent or self._unsent_records
        if not news and self._dropped_rows == self._dropped_reported:
            return None
        self._seq += 1
        parts = [
            SketchPart(model, version, minute, counts)
            for (model, version, minute), counts in sorted(self._unsent.items())
        ]
        flush = Flush(
            sender=self.sender_id,
            seq=self._seq,
            parts=parts,
            predictions=self._unsent_records,
            dropped_rows=self._dropped_rows,
        )
        self._unsent, self._unsent_records = {}, []
        return flush

    async def _send_pending(self, *, force: bool) -> Ack | None:
        last: Ack | None = None
        while True:
            if self._inflight is None:
                self._inflight = self._form_flush()
                if self._inflight is None:
                    return last
            if not force and time.monotonic() < self._next_attempt:
                return last  # backing off while the monitor is unreachable
            flush = self._inflight
            try:
                ack = await asyncio.wait_for(self._send(flush), SEND_TIMEOUT_S)
                if ack.seq != flush.seq:
                    raise RuntimeError(f"acknowledged seq {ack.seq}, sent {flush.seq}")
            except Exception as exc:
                self._failures += 1
                pause = min(self.flush_seconds * 2 ** (self._failures - 1), MAX_BACKOFF_S)
                self._next_attempt = time.monotonic() + pause
                self._last_error = f"{type(exc).__name__}: {exc}"[:300]
                if self._failures == 1:
                    log.warning("monitor unreachable, keeping counts: %s", self._last_error)
                return last
            if self._inflight is flush:  # not dropped by the bound meanwhile
                self._inflight = None
            self._failures, self._next_attempt = 0, 0.0
            self._acked_seq = max(self._acked_seq, ack.seq)
            self._paused = not ack.recording
            self._flushes_acked += 1
            self._dropped_reported = max(self._dropped_reported, flush.dropped_rows)
            last = ack

    async def _send_to_monitor(self, flush: Flush) -> Ack:
        ack: Ack = await self._link.call("ingest", flush)
        return ack

    # --- the bound ---------------------------------------------------------------------------

    def _pending_rows(self) -> tuple[int, int]:
        """Rows kept for the monitor: (counted rows, logged rows), buffer included."""
        counted = sum(c.rows for c in self._unsent.values())
        logged = sum(len(r.predictions) for r in self._unsent_records)
        if self._inflight is not None:
            counted += _counted_rows(self._inflight)
            logged += _logged_rows(self._inflight)
        counted += sum(e.rows for e in self._buffer if e.sketch)
        logged += sum(e.rows for e in self._buffer if e.log)
        return counted, logged

    def _drop_entry(self, entry: _Entry) -> None:
        self._buffered_rows -= entry.rows
        if entry.sketch:
            self._dropped_rows += entry.rows
        if entry.log:
            self._dropped_records += entry.rows

    def _trim_buffer(self) -> None:
        """Drop the oldest recorded rows beyond the bound (cheap: on the request path)."""
        before = self._dropped_rows + self._dropped_records
        while self._buffered_rows > self.max_pending_rows and len(self._buffer) > 1:
            self._drop_entry(self._buffer.pop(0))
        if before == 0 and self._dropped_rows + self._dropped_records:
            log.warning("monitor flushes are not keeping up: dropping the oldest rows")

    def _enforce_bound(self) -> None:
        """Drop the oldest pending rows beyond ``max_pending_rows`` and count them."""
        before = self._dropped_rows + self._dropped_records
        counted, logged = self._pending_rows()
        limit = self.max_pending_rows
        while counted > limit or logged > limit:
            inflight = self._inflight
            if inflight is not None and (
                (counted > limit and _counted_rows(inflight))
                or (logged > limit and _logged_rows(inflight))
            ):
                # The oldest of all. The monitor may have stored it (only its
                # acknowledgement lost): the next flush simply takes the next seq.
                gone_counted, gone_logged = _counted_rows(inflight), _logged_rows(inflight)
                self._inflight = None
            elif counted > limit and self._unsent:
                key = min(self._unsent, key=lambda k: k[2])
                gone_counted, gone_logged = self._unsent.pop(key).rows, 0
            elif logged > limit and self._unsent_records:
                gone_counted, gone_logged = 0, len(self._unsent_records.pop(0).predictions)
            elif self._buffer:
                entry = self._buffer.pop(0)
                self._buffered_rows -= entry.rows
                gone_counted = entry.rows if entry.sketch else 0
                gone_logged = entry.rows if entry.log else 0
            else:
                break
            counted -= gone_counted
            logged -= gone_logged
            self._dropped_rows += gone_counted
            self._dropped_records += gone_logged
        if self._dropped_rows + self._dropped_records > before:
            log.warning(
                "the monitor is unreachable and %d rows wait: dropped the oldest "
                "(%d counted rows and %d logged rows so far)",
                limit,
                self._dropped_rows,
                self._dropped_records,
            )

    # --- for operators -----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Where this sender stands: sequence numbers, what waits, what was dropped."""
        counted, logged = self._pending_rows()
        return {
            "sender": self.sender_id,
            "enabled": self.enabled,
            "paused": self._paused,
            "seq": self._seq,
            "acked_seq": self._acked_seq,
            "flushes_acked": self._flushes_acked,
            "inflight_seq": None if self._inflight is None else self._inflight.seq,
            "counted_rows": self._counted_rows,
            "logged_rows": self._logged_rows,
            "buffered_rows": self._buffered_rows + self._binning_rows,  # recorded, not binned
            "pending_rows": counted,
            "pending_logged_rows": logged,
            "dropped_rows": self._dropped_rows,
            "dropped_logged_rows": self._dropped_records,
            "unmonitored_rows": self._unmonitored_rows,
            "failed_rows": self._failed_rows,
            "send_failures": self._failures,
            "last_error": self._last_error,
        }
