"""The fleet application: `serve run serve_apps.fleet:app_builder specs_dir=specs`.

``app_builder`` is a typed Serve application builder: Serve fills ``FleetArgs`` from the
command line (``key=value``) or the ``args`` of a `serve deploy` config (fleet.yaml).
Everything else (registry, keys, limits) comes from mlfleet's settings (MLFLEET_*).

No ``from __future__ import annotations`` here: Serve reads the builder's annotation at
run time to know it wants ``FleetArgs``, and a postponed (string) annotation hides it.
"""

from ray import serve

from mlfleet.serving.app import FleetArgs, build_fleet
from mlfleet.settings import get_settings


def app_builder(args: FleetArgs) -> serve.Application:
    """Build the fleet from the model specs in ``args.specs_dir``."""
    if isinstance(args, dict):  # called by hand with plain arguments
        args = FleetArgs.model_validate(args)
    return build_fleet(args, get_settings())
