"""The names the fleet's Serve objects go by: its application and its deployments.

A leaf module (it imports nothing of mlfleet): the builder, the gateway and deployment
all read these names, so none of them has to import another for a string.
"""

from __future__ import annotations

APP_NAME = "fleet"
GATEWAY = "Gateway"
POOL = "ModelPool"


def dedicated_deployment_name(model: str) -> str:
    """Serve deployment name of a dedicated model."""
    return f"Dedicated-{model}"
