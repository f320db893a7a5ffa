"""Assembling the fleet application: gateway, pool and one deployment per dedicated model.

Every deployment gets a fractional CPU share: Serve's default of one CPU per replica would
leave a 2-CPU machine unable to start the app.
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
MAX_ONGOING = 32  # Serve's default of 5 left a third of 2 CPUs idle under load (Ray 2.60)


class FleetArgs(BaseModel):
    """Arguments of the fleet application (what a `serve deploy` YAML fills in)."""

    specs_dir: str = Field(default="specs", description="Folder of model specs (*/model.yaml).")
    gateway_min_replicas: int = Field(default=1, ge=1)
    gateway_max_replicas: int = Field(default=2, ge=1)
    pool_min_replicas: int = Field(default=1, ge=1)
    pool_max_replicas: int = Field(default=2, ge=1)


def _autoscaled(name: str, cpus: float, min_replicas: int, max_replicas: int) -> Any:
    """A deployment decorator with mlfleet's CPU share, concurrency and autoscaling."""
    return serve.deployment(
        name=name,
        ray_actor_options={"num_cpus": cpus},
        max_ongoing_requests=MAX_ONGOING,
        autoscaling_config={
            "min_replicas": min_replicas,
            "max_replicas": max_replicas,
            "target_ongoing_requests": 16,
        },
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
            max_ongoing_requests=max(MAX_ONGOING, spec.serving.max_batch_size * 2),
            autoscaling_config={
                "min_replicas": auto.min_replicas,
                "max_replicas": auto.max_replicas,
                "target_ongoing_requests": auto.target_ongoing_requests,
            },
        )(DedicatedModel)
        dedicated[spec.name] = deployment.bind(
            spec.name, settings_json, spec.serving.max_batch_size, spec.serving.batch_wait_timeout_s
        )

    pool = _autoscaled(POOL, POOL_CPUS, args.pool_min_replicas, args.pool_max_replicas)(
        pool_class(settings.max_num_models_per_replica)
    ).bind(settings_json)

    ingress = _autoscaled(
        GATEWAY, GATEWAY_CPUS, args.gateway_min_replicas, args.gateway_max_replicas
    )(serve.ingress(app)(Gateway))
    return ingress.bind(pool, dedicated, settings_json, str(Path(args.specs_dir).resolve()))


__all__ = ["FleetArgs", "build_fleet"]
