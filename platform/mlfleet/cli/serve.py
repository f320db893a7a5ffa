"""``mlfleet serve``: run the fleet behind one HTTP gateway on a Ray cluster."""

from __future__ import annotations

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
# Ray Serve's fast path, on by default for heads mlfleet starts (see README, Serving):
# gRPC between deployments and direct ingress, no per-request access logs, no user-code
# thread hop.
FAST_SERVE_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}


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
            head = cluster.start_head(settings, FAST_SERVE_ENV)
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
    url = up_fleet(settings, specs, port or settings.serve_port)
    console.print(f"fleet is up: {url}  (docs: {url}/docs)")


def _status(settings: Settings) -> dict[str, Any]:
    from ray import serve

    status = serve.status()
    app_status = status.applications.get(APP_NAME)
    out: dict[str, Any] = {"application": None, "deployments": {}}
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
    console.print(f"fleet: {info['application']}")
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
