"""Connecting to Ray the same way everywhere: an explicit address, mlfleet's own warm head,
or an embedded cluster.

Never ``address="auto"``: on a shared host it silently joins whichever cluster it finds.
mlfleet's own detached head (``mlfleet.cluster``) is joined by its recorded address, and
only while it answers.
"""

from __future__ import annotations

import logging
import os
import sys

from mlfleet.cluster import LOCAL_CLUSTER, ClusterError, answering_head
from mlfleet.settings import Settings

NAMESPACE = "mlfleet"
# Set by Ray for the driver of every Ray job (ray._private.runtime_env.constants).
JOB_DRIVER_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def prepare_ray_env() -> None:
    """Environment Ray reads once, when first imported: call before anything imports ray.

    Clusters started by `ray start` (2.60) accept clients only with their token, and
    embedded ones use a token too, so token mode is the default; inside a Ray job the
    cluster's own mode holds. Ray workers must not be relaunched through `uv run`.

    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is Ray's switch for a cluster that is this machine
    alone. Without it Ray rewrites a loopback address into the host's routable one: a client
    given ``127.0.0.1:PORT`` dials the routable address, where mlfleet's own heads do not
    listen (``mlfleet.cluster``), and an embedded cluster listens on every interface. Other
    addresses are left as they are, so joining a multi-node cluster is unaffected.
    """
    # A Ray job's driver already has its cluster's mode: a head with token auth on puts
    # RAY_AUTH_MODE=token in the environment its processes and jobs inherit. Forcing token
    # mode there would only break the jobs of a cluster without it (no token to send).
    if JOB_DRIVER_ENV not in os.environ:
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    os.environ.setdefault(LOCAL_CLUSTER, "0")
    # Ctrl-C during a search: Tune's own handler ends the search early and returns, and the
    # training would go on to register what the cut-short search found. Without it the
    # interrupt ends the command, and nothing is registered.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")


def connect(settings: Settings, address: str = "") -> None:
    """Join Ray once per process (a no-op when already connected): the one way mlfleet does.

    Args:
        settings: MLFLEET_RAY_ADDRESS, and the CPUs of an embedded cluster.
        address: The cluster to join (``host:port`` of its GCS); empty means
            MLFLEET_RAY_ADDRESS; when that is empty too, inside a Ray job the job's cluster,
            else the local head mlfleet started under MLFLEET_HOME (`cluster up`, `serve
            up`) if it answers; otherwise an embedded cluster starts and lives as long as
            this process.

    Raises:
        ClusterError: the named cluster cannot be reached.
    """
    import ray

    if ray.is_initialized():
        return
    # Ray 2.60 warns on every start that token auth is on; that is the default we want.
    logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
    address = address or settings.ray_address or _default_address(settings)
    if address:
        try:
            ray.init(
                address=address,
                namespace=NAMESPACE,
                logging_level=logging.WARNING,
                log_to_driver=False,
            )
        except (ConnectionError, RuntimeError) as exc:
            reason = str(exc).splitlines()[0][:200]
            raise ClusterError(
                f"cannot connect to the Ray cluster at {address}: {reason}"
            ) from None
    else:
        # The dashboard is only needed for Jobs and `serve deploy`, and costs ~1 GB and 2 s.
        ray.init(
            num_cpus=settings.ray_num_cpus,
            include_dashboard=False,
            namespace=NAMESPACE,
            logging_level=logging.WARNING,
            log_to_driver=False,
            configure_logging=True,
        )


def disconnect() -> None:
    """Leave Ray now, as Ray's exit handler would, without that handler's half-second pause.

    Ray's handler sleeps 0.5 s so that workers' last log lines reach the driver; mlfleet
    joins with ``log_to_driver=False``, so there is nothing to wait for. A process that
    never imported Ray is left without it.
    """
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def _default_address(settings: Settings) -> str:
    """The cluster to join when none is named, or "" to start an embedded cluster.

    Inside a Ray job that is the job's own cluster (Ray sets RAY_ADDRESS for its driver),
    joined as a named cluster: an embedded start's options (MLFLEET_RAY_NUM_CPUS, which a
    job inherits from the head's environment) are refused when joining one. Else it is
    mlfleet's own running head: joining it costs a fraction of a second where an embedded
    start costs several.
    """
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    head = answering_head(settings)
    return head.gcs_address if head is not None else ""


def ensure_ray(settings: Settings) -> None:
    """:func:`connect` for Ray Data and Tune work: MLFLEET_RAY_ADDRESS, the warm local head
    or an embedded Ray (kept when already joined), with Ray Data's own progress output off."""
    import ray

    if not ray.is_initialized():
        connect(settings)
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
