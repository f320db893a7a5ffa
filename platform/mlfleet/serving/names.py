"""The names the fleet's Serve objects go by: its application and its deployments.

A leaf module (it imports nothing of mlfleet): the builder, the gateway and deployment
all read these names, so none of them has to import another for a string.
"""

from __future__ import annotations

APP_NAME = "fleet"
GATEWAY = "Gateway"
POOL = "ModelPool"
SCALER = "mlfleet-scaler"  # the scaler's actor, in the monitor's namespace ("mlfleet")
SCALED_APP_PREFIX = f"{APP_NAME}-scaled-"


def dedicated_deployment_name(model: str) -> str:
    """Serve deployment name of a dedicated model."""
    return f"Dedicated-{model}"


def scaled_app_name(model: str) -> str:
    """Serve application of a model the scaler promoted (one application per model, so
    that adding or removing it never redeploys the fleet's own application)."""
    return f"{SCALED_APP_PREFIX}{model}"
