"""``mlfleet cluster``: the local Ray head that training jobs and the fleet share.

The work is :mod:`mlfleet.serving.deploy`'s (the head `serve up` deploys on); these
commands parse, call it and print.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape

from mlfleet import cluster
from mlfleet.cli.console import console, err_console
from mlfleet.serving import deploy
from mlfleet.settings import get_settings

app = typer.Typer(
    help="A local Ray head on 127.0.0.1 that outlives commands: up, status, down.",
    no_args_is_help=True,
)

# What the README's first job trains; any entrypoint of jobs/ is submitted the same way.
EXAMPLE_JOB = "python jobs/train.py --spec specs/penguins/model.yaml"

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _notice(message: str) -> None:
    err_console.print(escape(message))


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _amount(resource: str, value: float | None) -> str:
    if value is None:
        return "?"
    if "memory" in resource:
        return f"{value / 2**30:.2f} GiB"
    return f"{value:g}"


@app.command()
def up(as_json: JsonOption = False) -> None:
    """Start the head (token auth on, every port on 127.0.0.1) unless it runs; print its
    addresses and the `ray job submit` line to use."""
    settings = get_settings()
    local = deploy.cluster_up(settings, notify=_notice)
    head = local.head
    submit = cluster.submit_command(head, EXAMPLE_JOB)
    info: dict[str, Any] = {
        "started": local.started,
        "pid": head.pid,
        "gcs_address": head.gcs_address,
        "dashboard_url": head.dashboard_url,
        "token_file": str(cluster.token_path()),
        "submit": submit,
    }
    if as_json:
        print(json.dumps(info, indent=2))
        return
    if local.moved_dashboard:
        _notice(f"port {cluster.DEFAULT_DASHBOARD_PORT} is taken: the dashboard uses another")
    said = "started" if local.started else "already running"
    console.print(f"Ray head {said} (pid {head.pid}); every port on 127.0.0.1, token auth on")
    console.print(f"  GCS address:        {head.gcs_address}  (mlfleet commands join it)")
    console.print(f"  dashboard + Jobs:   {head.dashboard_url}")
    console.print(f"  Ray token:          {info['token_file']}")
    console.print("Submit a training job from the project's root:", markup=False)
    console.print(f"  {submit}", markup=False)
    console.print(
        "Then `mlfleet serve up` deploys the fleet on this head; `mlfleet cluster down` stops it."
    )


@app.command()
def status(as_json: JsonOption = False) -> None:
    """The head's addresses, uptime, nodes, resources and whether the fleet is up (exit 1
    when no head runs)."""
    settings = get_settings()
    if as_json and cluster.running_head(settings) is None:
        print(json.dumps({"running": False}))
        raise typer.Exit(1)
    info = deploy.cluster_status(settings)
    if as_json:
        print(json.dumps({"running": True, **info}, indent=2))
        return
    uptime = _duration(info["uptime_s"]) if info["uptime_s"] is not None else "unknown"
    console.print(f"Ray head running (pid {info['pid']}, up {uptime})")
    console.print(f"  GCS address:        {info['gcs_address']}")
    console.print(f"  dashboard + Jobs:   {info['dashboard_url']}")
    alive = [n for n in info["nodes"] if n["state"] == "ALIVE"]
    console.print(f"  nodes:              {len(alive)} alive of {len(info['nodes'])}")
    for name, amount in info["resources"].items():
        console.print(
            f"  {name + ':':<19} {_amount(name, amount['used'])} used of "
            f"{_amount(name, amount['total'])}"
        )
    fleet = info["fleet"] or "not deployed (`mlfleet serve up`)"
    console.print(f"  fleet:              {fleet}")


@app.command()
def down() -> None:
    """Stop the head mlfleet started (every process of it, the fleet with it); nothing
    else. Safe when none runs."""
    head = cluster.stop_running_head(get_settings(), notify=_notice)
    if head is None:
        console.print("no Ray head started by mlfleet is running; nothing to stop")
        return
    console.print(f"stopped the local Ray head mlfleet started (pid {head.pid}) and all it ran")
