"""``mlfleet serve``: run the fleet behind one HTTP gateway on a Ray cluster."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from mlfleet.cli.console import console, err_console
from mlfleet.errors import MlfleetError
from mlfleet.settings import Settings, get_settings

app = typer.Typer(help="Serve the fleet: up, status, down.", no_args_is_help=True)
APP_NAME = "fleet"
READY_TIMEOUT_S = 300.0


def fast_serve_env(settings: Settings) -> dict[str, str]:
    """Ray Serve's fast path, on by default for heads mlfleet starts (see README, Serving).

    ``RAY_SERVE_THROUGHPUT_OPTIMIZED``: gRPC between deployments, direct ingress into the
    gateway replica, no per-request access logs, no user-code thread hop.
    ``RAY_SERVE_ENABLE_HA_PROXY``: HAProxy forwards HTTP straight to the gateway replica's
    own port instead of through Serve's Python proxy actor. It binds replica ports on every
    interface, so it is used only when API keys protect the gateway. Its files and ports are
    the head's own (Ray's defaults, /tmp/haproxy-serve and ports 9101/8404, are shared by
    every cluster on the host).
    """
    from mlfleet.cluster import free_port

    env = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
    if settings.serve_haproxy and settings.api_keys:
        # Ray adds the node id (56 characters) below this folder, and HAProxy takes admin
        # socket paths of at most 97 bytes: keep the base short.
        digest = hashlib.sha256(str(settings.home).encode()).hexdigest()[:10]
        base = Path("/tmp") / f"mlfh-{digest}"
        env.update(
            {
                "RAY_SERVE_ENABLE_HA_PROXY": "1",
                "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(base / "haproxy.cfg"),
                "RAY_SERVE_HAPROXY_SOCKET_PATH": str(base / "admin.sock"),
                "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(base / "metrics.sock"),
                "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(base),
                "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(base / "server-state"),
                # Ray's fixed defaults (9101, 8404) would collide between two clusters.
                "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
                "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
            }
        )
    return env


class ServeError(MlfleetError):
    """The fleet could not be deployed or reached."""

    code = "serve_failed"
    exit_code = 1


def _connect(settings: Settings, *, start: bool) -> tuple[str, bool]:
    """Connect to MLFLEET_RAY_ADDRESS, mlfleet's own head, or (with ``start``) a new one."""
    import ray

    from mlfleet import cluster

    started = False
    if settings.ray_address:
        address = settings.ray_address
    else:
        head = cluster.running_head(settings)
        if head is None:
            if not start:
                raise ServeError(
                    "no fleet is running (no MLFLEET_RAY_ADDRESS and no head "
                    "started by `mlfleet serve up`)"
                )
            err_console.print(
                "starting a local Ray head on 127.0.0.1 (it outlives this "
                "command; `mlfleet down` stops it)"
            )
            head = cluster.start_head(settings, fast_serve_env(settings))
            started = True
        address = head.gcs_address
    if not ray.is_initialized():
        connect_ray(address)
    return address, started


def connect_ray(address: str) -> None:
    """Join a running cluster (the CLI has set RAY_AUTH_MODE=token for its token auth)."""
    import logging

    import ray

    from mlfleet.ray_runtime import NAMESPACE

    try:
        ray.init(
            address=address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.ERROR
        )
    except (ConnectionError, RuntimeError) as exc:
        raise ServeError(
            f"cannot connect to the Ray cluster at {address}: {str(exc).splitlines()[0][:200]}"
        ) from None


def _quiet_serve_logs() -> None:
    import logging

    logging.getLogger("ray.serve").setLevel(logging.WARNING)


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


def up_fleet(settings: Settings, specs: Path, port: int) -> str:
    """Deploy (or update) the fleet and return the gateway URL once it answers."""
    from ray import serve

    from mlfleet.serving.app import FleetArgs, build_fleet

    host = settings.serve_host
    if not settings.api_keys and host not in ("127.0.0.1", "localhost"):
        err_console.print(f"no API keys configured: binding 127.0.0.1, not {escape(host)}")
        host = "127.0.0.1"
    elif not settings.api_keys:
        err_console.print(
            "no API keys configured (MLFLEET_API_KEYS): authentication is off "
            "and the gateway listens on 127.0.0.1 only"
        )
    serve.start(http_options={"host": host, "port": port}, proxy_location="HeadOnly")
    application = build_fleet(FleetArgs(specs_dir=str(specs)), settings)
    serve.run(application, name=APP_NAME, route_prefix="/", blocking=False)
    url = f"http://{host}:{port}"
    _wait_healthy(url, READY_TIMEOUT_S)
    return url


@app.command()
def up(
    specs: Annotated[Path, typer.Option(help="Folder of model specs (*/model.yaml).")] = Path(
        "specs"
    ),
    port: Annotated[
        int | None, typer.Option(help="HTTP port (default MLFLEET_SERVE_PORT).")
    ] = None,
) -> None:
    """Deploy the fleet and return once the gateway answers."""
    settings = get_settings()
    _quiet_serve_logs()
    if not specs.is_dir():
        raise MlfleetError(f"--specs {specs}: not a folder")
    _connect(settings, start=True)
    ingress = _ingress(settings)
    if ingress == "haproxy" and not settings.api_keys:
        raise ServeError(
            "this head fronts Serve with HAProxy, which opens replica ports on every "
            "interface: set MLFLEET_API_KEYS, or `mlfleet down` and serve up again without keys"
        )
    url = up_fleet(settings, specs, port or settings.serve_port)
    console.print(f"fleet is up: {url}  (docs: {url}/docs; ingress: {ingress})")


def _ingress(settings: Settings) -> str:
    """``haproxy`` or ``serve-proxy`` on mlfleet's own head; ``unknown`` on another cluster."""
    from mlfleet import cluster

    head = cluster.running_head(settings)
    if head is None:
        return "unknown"
    return "haproxy" if head.haproxy else "serve-proxy"


def _status(settings: Settings) -> dict[str, Any]:
    from ray import serve

    status = serve.status()
    app_status = status.applications.get(APP_NAME)
    out: dict[str, Any] = {
        "application": None,
        "ingress": _ingress(settings),
        "deployments": {},
    }
    if app_status is not None:
        out["application"] = str(getattr(app_status.status, "value", app_status.status))
        for name, dep in app_status.deployments.items():
            out["deployments"][name] = {
                "status": str(getattr(dep.status, "value", dep.status)),
                "replicas": {str(getattr(k, "value", k)): v for k, v in dep.replica_states.items()},
            }
    return out


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The fleet's application and deployments with their replicas."""
    settings = get_settings()
    _connect(settings, start=False)
    info = _status(settings)
    if as_json:
        print(json.dumps(info, indent=2))
        return
    if info["application"] is None:
        console.print("no fleet application is deployed")
        raise typer.Exit(1)
    console.print(f"fleet: {info['application']} (ingress: {info['ingress']})")
    for name, dep in info["deployments"].items():
        replicas = ", ".join(f"{n} {s.lower()}" for s, n in dep["replicas"].items())
        console.print(f"  {name}: {dep['status'].lower()} ({replicas})")


def down_fleet(settings: Settings) -> list[str]:
    """Remove the fleet and stop the head mlfleet started; returns what was stopped."""
    import ray
    from ray import serve

    from mlfleet import cluster

    head = cluster.running_head(settings)
    if head is not None:
        # Stopping the head stops Serve with it; no need to wait for a graceful shutdown.
        cluster.stop_head(head)
        cluster.forget_head(settings)
        return [f"the fleet and the local Ray head mlfleet started (pid {head.pid})"]
    if settings.ray_address:
        _connect(settings, start=False)
        try:
            serve.delete(APP_NAME)
        finally:
            ray.shutdown()
        return [f"the fleet application on {settings.ray_address}"]
    return []


@app.command()
def down() -> None:
    """Remove the fleet and stop whatever mlfleet started."""
    stopped = down_fleet(get_settings())
    console.print("stopped " + " and ".join(stopped) if stopped else "nothing to stop")
