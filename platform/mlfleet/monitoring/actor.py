"""The monitor actor: one detached named Ray actor around :class:`MonitorState`.

``mlfleet-monitor`` in namespace ``mlfleet`` (:mod:`mlfleet.monitoring.protocol`), detached
(it outlives whoever created it, redeploys and `serve shutdown`), restarted by Ray when it
dies (``max_restarts=-1``; its state is reloaded from the store), on a fractional CPU.

It is asynchronous, and all of :class:`MonitorState` runs on its event loop:

- ``ingest`` applies a flush at once and waits for the group commit that stores it: a
  commit task stores everything changed every ``monitor_commit_seconds`` in one
  transaction, on a thread of its own, and resolves the waiting callers;
- an evaluation task judges the models that are due (a completed bucket, or not judged
  for ``monitor_evaluate_seconds``), loading references on a thread, and sets the
  Prometheus gauges (``ray.util.metrics``);
- hooks (alert sinks, the retrain policy) run on a small thread pool, never on the loop.

Sinks, the retrain policy and the prediction log are other modules of this package, found
by name when the actor starts (:data:`PLUGINS`); without them alerts are logged, sustained
drift is only counted, and feedback is refused.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from mlfleet.errors import MlfleetError
from mlfleet.monitoring.protocol import MONITOR_NAME, NAMESPACE, Ack, FeedbackResult, Flush, Label
from mlfleet.monitoring.state import (
    AlertHook,
    MonitorError,
    MonitorState,
    ReferenceLoader,
    SustainedDriftHook,
    fleet_specs,
    model_config,
)
from mlfleet.monitoring.store import Alert, MonitorStore
from mlfleet.settings import Settings
from mlfleet.spec import ModelSpec

log = logging.getLogger("mlfleet.monitor")

MAX_TASK_RETRIES = 3  # calls are safe to repeat: a resent flush is recognised by its seq
READY_TIMEOUT_S = 120.0
TICK_S = 1.0  # how often the evaluation task looks for due models
EXPIRE_EVERY_S = 60.0
PRUNE_EVERY_S = 3600.0
LATENCIES_KEPT = 10_000
STATUS_VALUE = {"insufficient": -1.0, "ok": 0.0, "warning": 1.0, "drift": 2.0}

# Modules written beside this one, each with a factory, looked up when the actor starts:
#   alerts.alert_hook(settings, store) -> AlertHook                 (log and webhook sinks)
#   retrain.retrain_hook(settings, store, specs_dir) -> SustainedDriftHook (retrain policy)
#   feedback.prediction_log(settings, store, state) -> PredictionLog  (feedback labels)
PLUGINS = {
    "alerts": ("mlfleet.monitoring.alerts", "alert_hook"),
    "retrain": ("mlfleet.monitoring.retrain", "retrain_hook"),
    "feedback": ("mlfleet.monitoring.feedback", "prediction_log"),
}


def _plugin(kind: str) -> Callable[..., Any] | None:
    module_name, factory = PLUGINS[kind]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    found: Callable[..., Any] | None = getattr(module, factory, None)
    return found


def _plugin_name(kind: str) -> str | None:
    module_name, factory = PLUGINS[kind]
    return f"{module_name}.{factory}" if importlib.util.find_spec(module_name) else None


def log_alert(alert: Alert) -> None:
    """The alert sink used when no other is configured: one log line."""
    log.warning(
        "model %s v%s: %s -> %s: %s",
        alert.model,
        alert.version,
        alert.previous or "-",
        alert.status,
        alert.reason,
    )


def _percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"p50": None, "p99": None, "n": 0}
    p50, p99 = np.percentile(np.asarray(values), [50, 99])
    return {"p50": round(float(p50), 3), "p99": round(float(p99), 3), "n": len(values)}


class _Gauges:
    """The monitor's Prometheus gauges (exported by Ray's metrics agent)."""

    def __init__(self) -> None:
        from ray.util.metrics import Gauge

        self.status = Gauge(
            "mlfleet_monitor_status",
            "Model status: -1 insufficient, 0 ok, 1 warning, 2 drift.",
            tag_keys=("model",),
        )
        self.rows = Gauge(
            "mlfleet_monitor_rows_in_window",
            "Rows in the current window of the version the status is about.",
            tag_keys=("model",),
        )
        self.statistic = Gauge(
            "mlfleet_monitor_feature_statistic",
            "A drift statistic of one column over the current window.",
            tag_keys=("model", "feature", "method"),
        )
        self.dropped = Gauge(
            "mlfleet_monitor_dropped_rows",
            "Rows senders could not keep while the monitor was unreachable (cumulative).",
        )

    def model(self, summary: dict[str, Any], detail: dict[str, Any] | None) -> None:
        model = summary["model"]
        self.status.set(STATUS_VALUE.get(summary["status"], -1.0), tags={"model": model})
        self.rows.set(float(summary.get("rows") or 0), tags={"model": model})
        if detail is None:
            return
        columns = [*detail["features"], *([detail["prediction"]] if detail["prediction"] else [])]
        for column in columns:
            for method, value in column["statistics"].items():
                if value is not None:
                    tags = {"model": model, "feature": column["name"], "method": method}
                    self.statistic.set(float(value), tags=tags)


class MonitorActor:
    """The body of the ``mlfleet-monitor`` actor (see the module docstring).

    Its methods are the protocol's: ``ingest``, ``feedback``, ``fleet``, ``model``,
    ``evaluate``, ``health``. When it cannot start (a store it cannot open), it stays up and
    every method raises :class:`MonitorError` with the reason, rather than being restarted
    in a loop.
    """

    def __init__(
        self,
        settings_json: str,
        specs_json: str = "{}",
        specs_dir: str | None = None,
        reference_loader: ReferenceLoader | None = None,
    ) -> None:
        self._error: str | None = None
        self._plugin_errors: dict[str, str] = {}
        self._started = time.time()
        self._open: asyncio.Future[None] | None = None  # flushes waiting for the next commit
        self._inflight: asyncio.Future[None] | None = None  # the commit being written
        self._latencies: deque[float] = deque(maxlen=LATENCIES_KEPT)  # ingest -> ack, ms
        self._writes: deque[float] = deque(maxlen=LATENCIES_KEPT)  # one commit's write, ms
        # Recording paused by an operator (a load test, a backfill): not stored, so a
        # restarted monitor records again, erring on the side of counting.
        self._recording = True
        self._recording_changed: dict[str, Any] | None = None
        self._hooks = ThreadPoolExecutor(max_workers=2, thread_name_prefix="monitor-hooks")
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="monitor-store")
        # References come from the registry, which may take seconds: never ahead of a commit.
        self._fetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="monitor-refs")
        try:
            self._settings = Settings.model_validate_json(settings_json)
            self._store = MonitorStore(self._settings.monitor_store)
            # The specs' content, not their folder: the actor may run on another node.
            specs = {
                name: ModelSpec.model_validate(spec)
                for name, spec in json.loads(specs_json).items()
            }
            self._state = MonitorState(
                self._store, self._settings, specs=specs, loader=reference_loader
            )
            self._wire(specs_dir)
            self._gauges = _Gauges()
        except Exception as exc:
            log.exception("the monitor cannot start")
            self._error = f"the monitor cannot start: {exc}"
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._tasks = [
            self._loop.create_task(self._commit_loop()),
            self._loop.create_task(self._evaluate_loop()),
        ]

    # --- wiring ---------------------------------------------------------------------------

    def _wire(self, specs_dir: str | None) -> None:
        """Plug in the sinks, the retrain policy and the prediction log. One that fails to
        build is left out (and named in ``health()``): drift monitoring goes on without it."""
        alert_hook: AlertHook = log_alert
        built = self._build("alerts", self._settings, self._store)
        if built is not None:
            alert_hook = built
        self._state.on_alert = self._in_thread(alert_hook)
        drift_hook: SustainedDriftHook | None = self._build(
            "retrain", self._settings, self._store, specs_dir
        )
        if drift_hook is not None:
            self._state.on_sustained_drift = self._in_thread(drift_hook)
        self._state.prediction_log = self._build(
            "feedback", self._settings, self._store, self._state
        )

    def _build(self, kind: str, *args: Any) -> Any:
        try:
            factory = _plugin(kind)
            return None if factory is None else factory(*args)
        except Exception as exc:
            log.exception("the monitor's %s module failed to start; going on without it", kind)
            self._plugin_errors[kind] = repr(exc)
            return None

    def _in_thread(self, hook: Callable[..., None]) -> Callable[..., None]:
        """The hook, run on the hook threads so that a slow sink never stalls the loop."""

        def run(*args: Any) -> None:
            future = self._hooks.submit(hook, *args)
            future.add_done_callback(_log_failure)

        return run

    def _check(self) -> MonitorState:
        if self._error is not None:
            raise MonitorError(self._error)
        return self._state

    # --- group commit ---------------------------------------------------------------------

    def _stored(self) -> asyncio.Future[None] | None:
        """A future resolved once everything applied so far is stored (None: it is)."""
        if self._state.has_pending() or self._open is not None:
            if self._open is None:
                self._open = self._loop.create_future()
            self._wake.set()
            return self._open
        return self._inflight

    async def _commit_loop(self) -> None:
        interval = self._settings.monitor_commit_seconds
        while True:
            await self._wake.wait()
            await asyncio.sleep(interval)  # let the batch fill: one transaction for many
            self._wake.clear()
            waiting, self._open = self._open, None
            commit = self._state.take_commit()
            if commit is None:
                _resolve(waiting)
                continue
            self._inflight = waiting
            started = time.perf_counter()
            try:
                await self._loop.run_in_executor(self._io, self._store.write, commit.batch)
            except Exception as exc:
                log.exception("a group commit failed; its flushes will be resent")
                self._state.rollback(commit)
                # The rollback also undid what arrived during the write: those wait in vain.
                failed, self._open = self._open, None
                error = MonitorError(f"the monitor could not store the flush: {exc}")
                _resolve(waiting, error)
                _resolve(failed, error)
            else:
                self._writes.append((time.perf_counter() - started) * 1000)
                self._state.committed(commit)
                _resolve(waiting)
            finally:
                self._inflight = None

    # --- evaluation -----------------------------------------------------------------------

    async def _evaluate(self, models: Sequence[str]) -> None:
        state = self._state
        for model, version in state.missing_references(models):
            found = await self._loop.run_in_executor(
                self._fetch, state.fetch_reference, model, version
            )
            state.set_reference(model, version, found)
        for model in models:
            summary = state.evaluate_model(model)
            try:
                self._gauges.model(summary, state.last_detail(model))
            except Exception:
                log.exception("could not set the gauges of %s", model)
            await asyncio.sleep(0)  # let flushes in between models
        self._gauges.dropped.set(float(state.health()["dropped_rows"]))
        self._wake.set()

    async def _evaluate_loop(self) -> None:
        state = self._state
        expired = pruned = time.monotonic()
        first = True
        while True:
            try:
                due = state.known_models() if first else state.due_models()
                first = False
                if due:
                    await self._evaluate(due)
                now = time.monotonic()
                if now - expired >= EXPIRE_EVERY_S:
                    state.expire()
                    expired = now
                if now - pruned >= PRUNE_EVERY_S:
                    pruned = now
                    gone = await self._loop.run_in_executor(self._io, state.prune)
                    log.info("retention: %d buckets deleted", gone)
            except Exception:
                log.exception("evaluation round failed")
            await asyncio.sleep(TICK_S)

    # --- the protocol's methods -----------------------------------------------------------

    async def ingest(self, flush: Flush) -> Ack:
        """Apply a flush once, and acknowledge it once it is stored."""
        state = self._check()
        started = time.perf_counter()
        applied = state.ingest(flush)
        waiting = self._stored()
        if waiting is not None:
            await asyncio.shield(waiting)
        self._latencies.append((time.perf_counter() - started) * 1000)
        return Ack(seq=flush.seq, duplicate=not applied, recording=self._recording)

    async def recording(self) -> dict[str, Any]:
        """Whether senders record predictions, and the last change (who asked, when)."""
        self._check()
        return {"recording": self._recording, "changed": self._recording_changed}

    async def set_recording(self, on: bool, by: str = "") -> dict[str, Any]:
        """Pause (False) or resume (True) recording across the fleet.

        Senders learn it from their next acknowledgement, or, while paused, from asking
        every flush interval: within about two flush intervals every replica follows.
        Predictions made while paused are neither counted nor logged (their labels do not
        join). What was recorded before the pause is still flushed and stored.
        """
        self._check()
        if on != self._recording:
            self._recording = on
            self._recording_changed = {"recording": on, "at": time.time(), "by": by}
            log.warning("recording %s by %s", "resumed" if on else "paused", by or "an operator")
        return await self.recording()

    async def feedback(self, model: str, labels: list[Label]) -> FeedbackResult:
        """Join labels to logged predictions; returns once the realised counts are stored."""
        result = self._check().feedback(model, labels)
        waiting = self._stored()
        if waiting is not None:
            await asyncio.shield(waiting)
        return result

    async def fleet(self) -> list[dict[str, Any]]:
        """Every model's latest evaluation (``GET /v1/monitoring``)."""
        return self._check().fleet()

    async def model(self, name: str, version: str | None = None) -> dict[str, Any]:
        """One model's columns, statistics and histograms (``GET /v1/monitoring/{name}``)."""
        return self._check().model(name, version)

    async def history(self, name: str, limit: int = 50) -> dict[str, Any]:
        """A model's statistics per evaluation, status changes, alerts and retrains (the
        dashboard's model page)."""
        return self._check().history(name, limit)

    async def evaluate(self) -> list[dict[str, Any]]:
        """Evaluate every model now; returns :meth:`fleet` once the results are stored."""
        state = self._check()
        await self._evaluate(state.known_models())
        waiting = self._stored()
        if waiting is not None:
            await asyncio.shield(waiting)
        return state.fleet()

    async def health(self) -> dict[str, Any]:
        """Counters, the store, latencies (ms) and this process."""
        state = self._check()
        return {
            **state.health(),
            "recording": self._recording,
            "recording_changed": self._recording_changed,
            "pid": os.getpid(),
            "started_at": self._started,
            "ack_ms": _percentiles(list(self._latencies)),
            "write_ms": _percentiles(list(self._writes)),
            "plugins": {kind: _plugin_name(kind) for kind in PLUGINS},
            "plugin_errors": dict(self._plugin_errors),
        }


def _resolve(future: asyncio.Future[None] | None, error: BaseException | None = None) -> None:
    if future is None or future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
        future.exception()  # retrieved: nobody may be waiting any more


def _log_failure(future: Future[None]) -> None:
    error = future.exception()
    if error is not None:
        log.error("a monitor hook failed: %r", error)


# --- finding and starting the actor -----------------------------------------------------


def find_monitor() -> Any | None:
    """The running monitor's handle, or None (call once joined to the fleet's cluster)."""
    import ray

    try:
        return ray.get_actor(MONITOR_NAME, namespace=NAMESPACE)
    except ValueError:
        return None


def require_monitor() -> Any:
    """The running monitor's handle.

    Raises:
        MonitorError: no monitor runs on this cluster.
    """
    handle = find_monitor()
    if handle is None:
        raise MonitorError(
            "no monitor runs on this cluster (`mlfleet serve up` starts it with the fleet)"
        )
    return handle


def call(ref: Any, timeout: float | None = 60.0) -> Any:
    """``ray.get`` of a monitor call, with its errors as mlfleet's.

    Raises:
        MlfleetError: what the monitor raised (e.g. NotFoundError for an unknown model).
        MonitorError: the monitor failed, died or did not answer in time.
    """
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

    try:
        return ray.get(ref, timeout=timeout)
    except RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, MlfleetError):
            raise cause from None
        raise MonitorError(f"the monitor failed: {cause!r}") from None
    except (RayActorError, GetTimeoutError) as exc:
        reason = str(exc).splitlines()[0][:200]
        raise MonitorError(f"the monitor did not answer: {reason}") from None


def ensure_monitor(
    settings: Settings,
    *,
    specs_dir: str | Path | None = None,
    reference_loader: ReferenceLoader | None = None,
    timeout: float = READY_TIMEOUT_S,
) -> Any:
    """The fleet's monitor: the running one, else a new one; returns once it answers.

    Idempotent and safe to race (Ray's ``get_if_exists``); a running monitor keeps the
    settings and specs it was started with. Call it once joined to the fleet's cluster
    (:func:`mlfleet.ray_runtime.connect`).

    Args:
        settings: The store URL, windows and the actor's CPU share.
        specs_dir: The fleet's specs (``*/model.yaml``): checked here, then their content
            (``monitoring:`` and ``retrain:`` blocks) is handed to the actor, which may run on
            another node; the folder itself only to the retrain policy.
        reference_loader: Where references come from (default: the registry); for tests
            and benchmarks. It is pickled into the actor's arguments; a large one lives in
            the object store, owned by this process, and a restart after this process has
            ended cannot read it back (Ray's limit for restartable actors).
        timeout: Seconds to wait for the actor to answer.

    Raises:
        SpecError, UsageError: a spec or its monitoring block is invalid.
        MonitorError: Ray is not joined, or the monitor did not start.
    """
    import ray

    if not ray.is_initialized():
        raise MonitorError("join the fleet's Ray cluster before starting its monitor")
    folder = None if specs_dir is None else str(Path(specs_dir).resolve())
    specs = fleet_specs(folder)
    for spec in specs.values():
        model_config(spec, settings)
    specs_json = json.dumps({name: spec.model_dump(mode="json") for name, spec in specs.items()})
    handle: Any = (
        ray.remote(MonitorActor)
        .options(
            name=MONITOR_NAME,
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,
            max_task_retries=MAX_TASK_RETRIES,
            num_cpus=settings.monitor_num_cpus,
        )
        .remote(settings.trusted_json(), specs_json, folder, reference_loader)
    )
    try:
        call(handle.health.remote(), timeout=timeout)
    except MonitorError:
        # A monitor that cannot start (say, a store it cannot open) stays up to say why;
        # remove it so that the next attempt, with other settings, starts afresh.
        ray.kill(handle, no_restart=True)
        raise
    return handle
