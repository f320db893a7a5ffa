"""The scaler: carries out model-aware scaling on the running fleet.

One detached named actor (``SCALER`` in the ``mlfleet`` namespace), started by the gateway
replicas when scaling is on for any model, as they start the monitor. It decides with
:func:`mlfleet.serving.scaling.plan` every ``scaling_interval_seconds``.

**Where rates come from.** Every predict request passes a gateway replica, whichever site
serves it, so each gateway counts its requests per model and reports the counts every
interval (:meth:`Scaler.report`); the reply tells it where each model is served now. This
is the simplest source that is both complete and prompt: the monitor's rows arrive in
one-minute buckets, and only while monitoring is on.

**Where a promoted model runs.** In a Serve application of its own
(:func:`~mlfleet.serving.names.scaled_app_name`), built like a spec's dedicated deployment:
adding or deleting it never redeploys the fleet's application, so the gateway and the pool
keep their replicas and their loaded models.

**Moves never drop a request.**

- Promote: the application is deployed and awaited until it runs, then the model's
  champion is loaded in it; only then does the placement change. Gateways switch at their
  next report; until then they send the model to the pool, which still has it.
- Fold: the placement changes first. Once every gateway that reported lately has
  acknowledged the change (its next report), the application is deleted; Serve lets its
  replicas finish the requests they hold. A gateway that still sends there (one that went
  silent) falls back to the pool when the call fails.

Every move is recorded, with its reason, rate and outcome, in the monitor's store
(``scaling_moves``), where ``GET /v1/scaling`` and ``mlfleet serve status`` read it. After a
restart the scaler takes its placement from the scaled applications Serve runs, and when
each model last moved from the store.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from mlfleet.monitoring.protocol import NAMESPACE
from mlfleet.monitoring.store import MonitorStore
from mlfleet.serving.names import (
    SCALED_APP_PREFIX,
    SCALER,
    dedicated_deployment_name,
    scaled_app_name,
)
from mlfleet.serving.scaling import Move, Policy, RateWindow, Thresholds, plan, thresholds_for
from mlfleet.settings import Settings
from mlfleet.spec import ServingSpec

log = logging.getLogger("mlfleet.scaler")
# A gateway counts as alive while its last report is younger than this many intervals.
ALIVE_INTERVALS = 3
DELETE_TIMEOUT_S = 60.0


class Scaler:
    """Rates in, moves out; the placement of promoted models (a Ray actor, async)."""

    def __init__(self, settings_json: str, servings_json: str) -> None:
        self.settings = Settings.model_validate_json(settings_json)
        s = self.settings
        self.servings = {
            name: ServingSpec.model_validate(serving)
            for name, serving in json.loads(servings_json).items()
        }
        self.policy = Policy(
            window_s=s.scaling_window_seconds,
            min_dwell_s=s.scaling_min_dwell_seconds,
            max_dedicated=s.scaling_max_dedicated,
        )
        self.window = RateWindow(s.scaling_window_seconds)
        self.store = MonitorStore(s.monitor_store)
        self.started = time.time()
        self.last_moved = {m: float(row["at"]) for m, row in self.store.last_moves().items()}
        self.placement = {m: app for m, app in _scaled_apps().items()}
        self.epoch = 1
        self.gateways: dict[str, tuple[float, int]] = {}  # id -> (last report, epoch seen)
        self.rates: dict[str, float] = {}
        self._loop_task = asyncio.get_running_loop().create_task(self._decide_loop())

    # --- gateways ------------------------------------------------------------------------

    async def report(self, gateway: str, counts: dict[str, int], seen_epoch: int) -> dict[str, Any]:
        """A gateway's requests per model since its last report; returns the placement."""
        now = time.time()
        self.window.add(now, counts)
        self.gateways[gateway] = (now, seen_epoch)
        return {"epoch": self.epoch, "placement": dict(self.placement), "rates": self.rates}

    async def status(self) -> dict[str, Any]:
        """The placement, the latest rates and the gateways heard from (for operators)."""
        return {
            "placement": dict(self.placement),
            "rates": self.rates,
            "epoch": self.epoch,
            "gateways": len(self._alive(time.time())),
        }

    def _alive(self, now: float) -> dict[str, int]:
        horizon = now - ALIVE_INTERVALS * self.settings.scaling_interval_seconds
        return {g: seen for g, (at, seen) in self.gateways.items() if at >= horizon}

    # --- deciding --------------------------------------------------------------------------

    def _thresholds(self, models: set[str]) -> dict[str, Thresholds]:
        out: dict[str, Thresholds] = {}
        for model in models:
            try:
                limits = thresholds_for(model, self._serving(model), self.settings)
            except Exception:
                log.warning("model %s: invalid scaling thresholds, not moved", model, exc_info=True)
                continue
            if limits is not None:
                out[model] = limits
        return out

    def _serving(self, model: str) -> ServingSpec:
        return self.servings.get(model) or ServingSpec()

    async def _decide_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.scaling_interval_seconds)
            try:
                await self.decide()
            except Exception:  # a failed round must not end the loop
                log.exception("scaling round failed")

    async def decide(self) -> list[dict[str, Any]]:
        """One round: rates, the policy's moves, each carried out and recorded in turn."""
        now = time.time()
        self.rates = {m: round(r, 3) for m, r in self.window.rates(now).items()}
        moves = plan(
            rates=self.rates,
            placed=set(self.placement),
            thresholds=self._thresholds(set(self.rates) | set(self.placement)),
            policy=self.policy,
            now=now,
            last_moved=self.last_moved,
            observed_s=now - self.started,
        )
        return [await self._carry_out(move) for move in moves]

    async def _carry_out(self, move: Move) -> dict[str, Any]:
        started = time.time()
        app_name = scaled_app_name(move.model)
        details: dict[str, Any] = {"application": app_name}
        try:
            if move.action == "promote":
                details["version"] = await self._promote(move.model, app_name)
            else:
                details["gateways_acknowledged"] = await self._fold(move.model, app_name)
            outcome = "done"
        except Exception as exc:
            log.warning("scaling: %s of %s failed", move.action, move.model, exc_info=True)
            outcome, details["error"] = "failed", f"{type(exc).__name__}: {exc}"[:500]
        details["seconds"] = round(time.time() - started, 2)
        # A failed move waits out the dwell time too, so that it is not retried every round.
        self.last_moved[move.model] = time.time()
        record: dict[str, Any] = {
            "model": move.model,
            "action": move.action,
            "outcome": outcome,
            "reason": move.reason,
            "rate": move.rate,
            "threshold": move.threshold,
            "details": details,
        }
        await asyncio.to_thread(self.store.record_move, **record)
        log.info("scaling: %s", record)
        return record

    async def _promote(self, model: str, app_name: str) -> str:
        """Deploy ``model``'s own application and load its champion there; then place it."""
        from ray import serve

        from mlfleet import registry
        from mlfleet.serving.options import dedicated_model

        registry.configure(self.settings)
        champion = await asyncio.to_thread(registry.alias_version, model, registry.CHAMPION)
        if champion is None:
            raise RuntimeError(f"model {model!r} has no champion")
        application = dedicated_model(model, self._serving(model), self.settings)
        timeout = self.settings.scaling_ready_timeout_seconds
        try:
            await asyncio.to_thread(
                serve.run_many,
                [serve.RunTarget(application, name=app_name, route_prefix=None)],
                wait_for_applications_running=False,
            )
            await self._until_running(app_name, timeout)
            handle = serve.get_deployment_handle(dedicated_deployment_name(model), app_name)
            await asyncio.wait_for(handle.ready.remote(champion.version), timeout)
        except BaseException:
            await asyncio.to_thread(_delete_app, app_name)
            raise
        self.placement[model] = app_name
        self.epoch += 1
        return champion.version

    async def _until_running(self, app_name: str, timeout: float) -> None:
        from ray import serve

        deadline = time.monotonic() + timeout
        while True:
            app = (await asyncio.to_thread(serve.status)).applications.get(app_name)
            state = str(getattr(app.status, "value", app.status)) if app else "MISSING"
            if state == "RUNNING":
                return
            if state in ("DEPLOY_FAILED", "UNHEALTHY") or time.monotonic() > deadline:
                raise RuntimeError(f"application {app_name} is {state}, not running")
            await asyncio.sleep(0.5)

    async def _fold(self, model: str, app_name: str) -> int:
        """Send ``model`` back to the pool, wait for the gateways to switch, then delete."""
        self.placement.pop(model, None)
        self.epoch += 1
        epoch = self.epoch
        deadline = time.monotonic() + (ALIVE_INTERVALS + 1) * self.settings.scaling_interval_seconds
        while time.monotonic() < deadline:
            alive = self._alive(time.time())
            if all(seen >= epoch for seen in alive.values()):
                break
            await asyncio.sleep(min(0.2, self.settings.scaling_interval_seconds))
        acknowledged = sum(1 for seen in self._alive(time.time()).values() if seen >= epoch)
        await asyncio.to_thread(_delete_app, app_name)
        return acknowledged


def _scaled_apps() -> dict[str, str]:
    """The scaled applications Serve runs now, by model."""
    from ray import serve

    try:
        apps = serve.status().applications
    except Exception:
        log.warning("could not read Serve's applications", exc_info=True)
        return {}
    return {
        name.removeprefix(SCALED_APP_PREFIX): name
        for name in apps
        if name.startswith(SCALED_APP_PREFIX)
    }


def _delete_app(app_name: str) -> None:
    from ray import serve

    try:
        serve.delete(app_name)
    except Exception:
        log.warning("could not delete %s", app_name, exc_info=True)


def find_scaler() -> Any | None:
    """The running scaler's handle, or None (blocking: a GCS lookup)."""
    import ray

    try:
        return ray.get_actor(SCALER, namespace=NAMESPACE)
    except ValueError:
        return None


def ensure_scaler(settings: Settings, servings: dict[str, ServingSpec]) -> Any:
    """The fleet's scaler: the running one, else a new one (safe to race; idempotent).

    A running scaler keeps the settings and specs it was started with.
    """
    import ray

    servings_json = json.dumps({m: s.model_dump(mode="json") for m, s in servings.items()})
    handle: Any = (
        ray.remote(Scaler)
        .options(
            name=SCALER,
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,
            # It sleeps between rounds and waits on Serve during moves: no CPU reserved,
            # so that it fits beside the replicas on a small cluster.
            num_cpus=0,
        )
        .remote(settings.trusted_json(), servings_json)
    )
    ray.get(handle.status.remote(), timeout=60)
    return handle


__all__ = ["Scaler", "ensure_scaler", "find_scaler"]
