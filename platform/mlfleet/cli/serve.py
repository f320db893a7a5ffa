"""``mlfleet serve``: run the fleet behind one HTTP gateway on a Ray cluster.

The work is :mod:`mlfleet.serving.deploy`'s; these commands parse, call it and print.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from mlfleet.cli.console import console, err_console
from mlfleet.errors import MlfleetError
from mlfleet.serving import deploy
from mlfleet.settings import get_settings

app = typer.Typer(help="Serve the fleet: up, status, down.", no_args_is_help=True)


def _notice(message: str) -> None:
    err_console.print(escape(message))


def _quiet_serve_logs() -> None:
    import logging

    logging.getLogger("ray.serve").setLevel(logging.WARNING)


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
    fleet = deploy.up(settings, specs, port, notify=_notice)
    console.print(f"fleet is up: {fleet.url}  (docs: {fleet.url}/docs; ingress: {fleet.ingress})")


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The fleet's application and deployments with their replicas."""
    info = deploy.status(get_settings())
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
    if info["scaling_moves"]:
        console.print("recent scaling moves (newest first):")
    for move in info["scaling_moves"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(move["at"]))
        console.print(
            f"  {when} {move['action']} {move['model']} ({move['outcome']}): {move['reason']}",
            markup=False,
        )


@app.command()
def down() -> None:
    """Remove the fleet and stop whatever mlfleet started."""
    stopped = deploy.down(get_settings(), notify=_notice)
    console.print("stopped " + " and ".join(stopped) if stopped else "nothing to stop")
