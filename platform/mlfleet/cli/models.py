"""``mlfleet models``: the registry's champions and challengers, promotion and rollback."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mlfleet.cli.console import console
from mlfleet.settings import get_settings

app = typer.Typer(help="Registered models: list, show, promote, rollback.", no_args_is_help=True)


def _setup() -> None:
    from mlfleet import registry

    settings = get_settings()
    registry.configure(settings)
    registry.check_reachable(settings)


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _metric(tags: dict[str, str]) -> tuple[str, str]:
    for key, value in tags.items():
        if key.startswith("mlfleet.metric."):
            return key.removeprefix("mlfleet.metric."), f"{float(value):.4f}"
    return "", ""


def _summary(info: Any) -> dict[str, Any]:
    champ, chall = info.champion, info.challenger
    metric, value = _metric(champ.tags) if champ else ("", "")
    return {
        "name": info.name,
        "champion": champ.version if champ else None,
        "challenger": chall.version if chall else None,
        "metric": metric or None,
        "score": float(value) if value else None,
        "dataset_version": champ.tags.get("mlfleet.dataset_version") if champ else None,
        "created": _when(champ.created) if champ else None,
        "versions": info.versions,
    }


@app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every model: champion, challenger, metric, dataset version, created."""
    from mlfleet import registry

    _setup()
    rows = [_summary(m) for m in registry.list_models()]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="model registry", title_justify="left")
    for col in (
        "model",
        "champion",
        "challenger",
        "metric",
        "score",
        "dataset version",
        "created",
        "versions",
    ):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["name"],
            str(r["champion"] or "-"),
            str(r["challenger"] or "-"),
            r["metric"] or "",
            "" if r["score"] is None else f"{r['score']:.4f}",
            r["dataset_version"] or "",
            r["created"] or "",
            str(r["versions"]),
        )
    console.print(table)


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="Model name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A model's versions with their lineage tags and metrics."""
    from mlfleet import registry

    _setup()
    info = registry.describe(name)
    versions = registry.model_versions(name)
    data = {
        **_summary(info),
        "history": info.history,
        "all_versions": [
            {
                "version": v.version,
                "aliases": v.aliases,
                "run_id": v.run_id,
                "created": _when(v.created),
                "tags": v.tags,
            }
            for v in versions
        ],
    }
    if as_json:
        print(json.dumps(data, indent=2))
        return
    console.print(
        f"[bold]{escape(name)}[/]: champion {data['champion'] or '-'}, "
        f"challenger {data['challenger'] or '-'}, champion history {info.history}"
    )
    for v in versions:
        tags = v.tags
        metric, value = _metric(tags)
        console.print(
            f"  v{v.version} {','.join(v.aliases)}  {metric} {value}  "
            f"dataset {tags.get('mlfleet.dataset_version', '?')}  "
            f"created {_when(v.created)}"
        )
        if tags.get("mlfleet.decision"):
            console.print(f"      {escape(tags['mlfleet.decision'])}")


@app.command()
def promote(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version to make champion.")],
) -> None:
    """Make VERSION the champion once it loads (the previous one is kept for rollback).

    The version's contract and model are loaded first; if either fails, the champion does
    not change and the reason is printed.
    """
    from mlfleet import registry

    _setup()
    info = registry.promote(name, version)
    console.print(f"{escape(name)}: champion is now version {info.version}")


@app.command()
def rollback(name: Annotated[str, typer.Argument(help="Model name.")]) -> None:
    """Point the champion back at the previous champion, once it loads."""
    from mlfleet import registry

    _setup()
    info = registry.rollback(name)
    console.print(f"{escape(name)}: champion rolled back to version {info.version}")
