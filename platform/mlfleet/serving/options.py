"""The Serve options of mlfleet's deployments, and a dedicated model's deployment.

Every deployment gets a fractional CPU share: Serve's default of one CPU per replica would
leave a 2-CPU machine unable to start the app.

Every deployment also gets mlfleet's overload and fault options (see docs/reliability.md):
bounded concurrency and queues, so that a burst is shed with 503 and Retry-After instead of
queueing without end; health checks often enough that a dead replica is replaced within
seconds; and a shutdown long enough for a replica to flush its monitoring counts.

The fleet's builder (:mod:`mlfleet.serving.app`) and the scaler, which promotes hot pool
models to a deployment of their own at run time, build dedicated deployments alike here.
"""

from __future__ import annotations

from typing import Any

from ray import serve

from mlfleet.serving.dedicated import DedicatedModel
from mlfleet.serving.names import dedicated_deployment_name
from mlfleet.settings import Settings
from mlfleet.spec import ServingSpec


def resilient(settings: Settings, max_ongoing: int, max_queued: int) -> dict[str, Any]:
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


def autoscaled(
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


def dedicated_model(model: str, serving: ServingSpec, settings: Settings) -> serve.Application:
    """The bound deployment of one model with its spec's replicas, CPU share and batching."""
    auto = serving.autoscaling
    deployment = serve.deployment(
        name=dedicated_deployment_name(model),
        ray_actor_options={"num_cpus": serving.num_cpus},
        autoscaling_config={
            "min_replicas": auto.min_replicas,
            "max_replicas": auto.max_replicas,
            "target_ongoing_requests": auto.target_ongoing_requests,
        },
        # Room for one batch to fill while the previous one runs; and a batch's worth
        # may wait at once in a gateway's router while it picks replicas for them.
        **resilient(
            settings,
            max(settings.model_max_ongoing_requests, 2 * serving.max_batch_size),
            max(settings.model_max_queued_requests, serving.max_batch_size),
        ),
    )(DedicatedModel)
    return deployment.bind(
        model, settings.model_dump_json(), serving.max_batch_size, serving.batch_wait_timeout_s
    )


__all__ = ["autoscaled", "dedicated_model", "resilient"]
