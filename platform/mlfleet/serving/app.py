"""Assembling the fleet application: gateway, pool and one deployment per dedicated model.

Every deployment gets a fractional CPU share: Serve's default of one CPU per replica would
leave a 2-CPU machine unable to start the app.

Every deployment also gets mlfleet's overload and fault options (see docs/reliability.md):
bounded concurrency and queues, so that a burst is shed with 503 and Retry-After instead of
queueing without end; health checks often enough that a dead replica is replaced within
seconds; and a shutdown long enough for a replica to flush its monitoring counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from ray import serve

from mlfleet.serving.names import GATEWAY, POOL, dedicated_deployment_name
from mlfleet.settings import Settings
from mlfleet.spec import load_spec

GATEWAY_CPUS = 0.25
POOL_CPUS = 0.25


class FleetArgs(BaseModel):
    """Arguments of the fleet application (what a `serve deploy` YAML fills in)."""

    specs_dir: str = Field(default="specs", description="Folder of model specs (*/model.yaml).")
    gateway_min_replicas: int = Field(default=1, ge=1)
    gateway_max_replicas: int = Field(default=2, ge=1)
    pool_min_replicas: int = Field(default=1, ge=1)
    pool_max_replicas: int = Field(default=2, ge=1)


def _resilient(settings: Settings, max_ongoing: int, max_queued: int) -> dict[str, Any]:
    """Serve options every deployment shares: bounded work, shedding, health, shutdown."""
    from ray.serve.config import BackpressureConfig

    return {
        "max_ongoing_requests": max_ongoing,
        # Per caller: Serve's proxy (or a gateway replica's own ingress) for the gateway,
        # each gateway replica's handle for the pool and dedicated deployments.
        "max_queued_requests": max_queued,
        "backpressure_config": BackpressureConfig(
            status_code=503, retry_after_s=settings.overload_retry_after_seconds
        ),
        "health_check_period_s": settings.replica_health_check_seconds,
        "graceful_shutdown_timeout_s": settings.replica_shutdown_timeout_seconds,
    }


def _autoscaled(
    name: str,
    cpus: float,
    min_replicas: int,
    max_replicas: int,
    options: dict[str, Any],
) -> Any:
    """A deployment decorator with mlfleet's CPU share, autoscaling and ``options``."""
    return serve.deployment(
        name=name,
        ray_actor_options={"num_cpus": cpus},
        autoscaling_config={
            "min_replicas": min_replicas,
            "max_replicas": max_replicas,
            "target_ongoing_requests": 16,
        },
        **options,
    )


def build_fleet(args: FleetArgs, settings: Settings) -> serve.Application:
    """Bind the fleet: one gateway, one pool, a dedicated deployment per spec that asks."""
    from mlfleet.serving.dedicated import DedicatedModel
    from mlfleet.serving.gateway import Gateway, app
    from mlfleet.serving.pool import pool_class

    settings_json = settings.model_dump_json()
    specs = sorted(Path(args.specs_dir).glob("*/model.yaml"))
    dedicated: dict[str, Any] = {}
    for path in specs:
        spec = load_spec(path).spec
        if spec.serving.mode != "dedicated":
            continue
        auto = spec.serving.autoscaling
        deployment = serve.deployment(
            name=dedicated_deployment_name(spec.name),
            ray_actor_options={"num_cpus": spec.serving.num_cpus},
            autoscaling_config={
                "min_replicas": auto.min_replicas,
                "max_replicas": auto.max_replicas,
                "target_ongoing_requests": auto.target_ongoing_requests,
            },
            # Room for one batch to fill while the previous one runs; and a batch's worth
            # may wait at once in a gateway's router while it picks replicas for them.
            **_resilient(
                settings,
                max(settings.model_max_ongoing_requests, 2 * spec.serving.max_batch_size),
                max(settings.model_max_queued_requests, spec.serving.max_batch_size),
            ),
        )(DedicatedModel)
        dedicated[spec.name] = deployment.bind(
            spec.name, settings_json, spec.serving.max_batch_size, spec.serving.batch_wait_timeout_s
        )

    pool = _autoscaled(
        POOL,
        POOL_CPUS,
        args.pool_min_replicas,
        args.pool_max_replicas,
        _resilient(
            settings, settings.model_max_ongoing_requests, settings.model_max_queued_requests
        ),
    )(pool_class(settings.max_num_models_per_replica)).bind(settings_json)

    ingress = _autoscaled(
        GATEWAY,
        GATEWAY_CPUS,
        args.gateway_min_replicas,
        args.gateway_max_replicas,
        _resilient(
            settings,
            settings.gateway_max_ongoing_requests,
            settings.gateway_max_queued_requests,
        ),
    )(serve.ingress(app)(Gateway))
    return ingress.bind(pool, dedicated, settings_json, str(Path(args.specs_dir).resolve()))


__all__ = ["FleetArgs", "build_fleet"]
