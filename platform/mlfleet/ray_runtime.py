"""Connecting to Ray the same way everywhere: an explicit address, or an embedded cluster.

Never ``address="auto"``: on a shared host it silently joins whichever cluster it finds.
"""

from __future__ import annotations

import logging
import os

from mlfleet.settings import Settings

NAMESPACE = "mlfleet"


def prepare_ray_env() -> None:
    """Environment Ray reads once, when first imported: call before anything imports ray.

    Clusters started by `ray start` (2.60) accept clients only with their token, and
    embedded ones use a token too; Ray workers must not be relaunched through `uv run`.
    """
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


def ensure_ray(settings: Settings) -> None:
    """Initialise Ray once per process from settings (no-op when already connected)."""
    import ray

    if ray.is_initialized():
        return
    # Ray 2.60 warns on every start that token auth is on; that is the default we want.
    logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
    if settings.ray_address:
        ray.init(
            address=settings.ray_address,
            namespace=NAMESPACE,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    else:
        # An embedded cluster lives as long as this process; the dashboard is only needed
        # for Jobs and `serve deploy`, and costs ~1 GB and 2 s here.
        ray.init(
            num_cpus=settings.ray_num_cpus,
            include_dashboard=False,
            namespace=NAMESPACE,
            logging_level=logging.WARNING,
            log_to_driver=False,
            configure_logging=True,
        )
    quiet_ray_data()


def quiet_ray_data() -> None:
    """mlfleet draws its own progress; silence Ray Data's bars and start-up banners."""
    from ray.data import DataContext

    # Setting the flag logs a warning of its own; raise the level first.
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.verbose_stats_logs = False
