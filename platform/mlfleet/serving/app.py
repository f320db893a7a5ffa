"""Assembling the fleet application: gateway, pool and one deployment per dedicated model.

The deployments' CPU shares and overload options are :mod:`mlfleet.serving.options`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from ray import serve

from mlfleet.serving.names import GATEWAY, POOL
from mlfleet.serving.options import autoscaled, dedicated_model, resilient
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


def build_fleet(args: FleetArgs, settings: Settings) -> serve.Application:
    """Bind the fleet: one gateway, one pool, a dedicated deployment per spec that asks."""
    from mlfleet.serving.gateway import Gateway, app
    from mlfleet.serving.pool import pool_class

    settings_json = settings.model_dump_json()
    specs = sorted(Path(args.specs_dir).glob("*/model.yaml"))
    dedicated: dict[str, Any] = {}
    servings: dict[str, Any] = {}  # for model-aware scaling's per-model settings
    for path in specs:
        spec = load_spec(path).spec
        servings[spec.name] = spec.serving.model_dump(mode="json")
        if spec.serving.mode == "dedicated":
            dedicated[spec.name] = dedicated_model(spec.name, spec.serving, settings)

    pool = autoscaled(
        POOL,
        POOL_CPUS,
        args.pool_min_replicas,
        args.pool_max_replicas,
        resilient(
            settings, settings.model_max_ongoing_requests, settings.model_max_queued_requests
        ),
    )(pool_class(settings.max_num_models_per_replica)).bind(settings_json)

    ingress = autoscaled(
        GATEWAY,
        GATEWAY_CPUS,
        args.gateway_min_replicas,
        args.gateway_max_replicas,
        resilient(
            settings,
            settings.gateway_max_ongoing_requests,
            settings.gateway_max_queued_requests,
        ),
    )(serve.ingress(app)(Gateway))
    return ingress.bind(
        pool, dedicated, settings_json, str(Path(args.specs_dir).resolve()), servings
    )


__all__ = ["FleetArgs", "build_fleet"]
