"""``mlfleet monitor``: what the drift monitor says about the fleet's models.

The monitor is the fleet's ``mlfleet-monitor`` actor (:mod:`mlfleet.monitoring.actor`);
these commands join the fleet's cluster, ask it and print.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mlfleet.cli.console import console
from mlfleet.settings import get_settings

app = typer.Typer(
    help="Drift monitoring: every model's status, one model's columns.", no_args_is_help=True
)

STYLE = {"ok": "green", "warning": "yellow", "drift": "bold red", "insufficient": "dim"}


def _monitor() -> Any:
    from mlfleet.monitoring.actor import require_monitor
    from mlfleet.serving.deploy import connect_fleet

    connect_fleet(get_settings(), start=False)
    return require_monitor()


def _status(status: str | None) -> str:
    status = status or "-"
    return f"[{STYLE.get(status, '')}]{status}[/]" if status in STYLE else status


def _when(at: float | None) -> str:
    if at is None:
        return ""
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _number(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}g}"


def _realised(performance: dict[str, Any] | None) -> str:
    realised = (performance or {}).get("realised")
    if not realised:
        return ""
    if "mae" in realised:
        return f"mae {_number(realised['mae'])} (n={realised['rows']})"
    return (
        f"acc {_number(realised['accuracy'])} f1 {_number(realised['macro_f1'])} "
        f"(n={realised['rows']})"
    )


def _event(event: dict[str, Any] | None, what: str) -> str:
    if not event:
        return ""
    return f"{event[what]} {_when(event['at'])}"


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every model: status, drifted features, rows, performance, last alert and retrain."""
    from mlfleet.monitoring.actor import call

    handle = _monitor()
    models = call(handle.fleet.remote())
    health = call(handle.health.remote())
    if as_json:
        print(json.dumps({"models": models, "monitor": health}, indent=2, default=str))
        return
    table = Table(title="drift monitor", title_justify="left")
    for col in (
        "model",
        "status",
        "version",
        "rows",
        "drifted features",
        "estimated acc",
        "realised",
        "last alert",
        "last retrain",
    ):
        table.add_column(col)
    for m in models:
        performance = m.get("performance") or {}
        table.add_row(
            escape(m["model"]),
            _status(m["status"]),
            str(m.get("version") or "-"),
            f"{m.get('rows') or 0:,}",
            escape(", ".join(m.get("drifted_features") or [])),
            _number(performance.get("estimated_accuracy")),
            _realised(performance),
            _event(m.get("last_alert"), "status"),
            _event(m.get("last_retrain"), "status"),
        )
    console.print(table)
    console.print(
        f"{health['active_senders']} active senders; dropped rows: {health['dropped_rows']:,}; "
        f"store: {escape(health['store'])}"
    )
    if not health.get("recording", True):
        console.print(f"[bold yellow]recording paused[/] {_changed(health)}")


def _changed(health: dict[str, Any]) -> str:
    change = health.get("recording_changed") or {}
    if not change:
        return ""
    return f"at {_when(change.get('at'))} by {escape(change.get('by') or '-')}"


def _set_recording(on: bool) -> None:
    import getpass

    from mlfleet.monitoring.actor import call

    handle = _monitor()
    state = call(handle.set_recording.remote(on, f"cli:{getpass.getuser()}"))
    word = "recording" if state["recording"] else "recording paused"
    console.print(f"{word} {_changed({'recording_changed': state['changed']})}".rstrip())


@app.command()
def pause() -> None:
    """Pause recording across the fleet (a load test, a backfill): no replica counts or logs
    predictions until `mlfleet monitor resume` (or a restart of the monitor)."""
    _set_recording(False)


@app.command()
def resume() -> None:
    """Resume recording across the fleet after `mlfleet monitor pause`."""
    _set_recording(True)


def _column_rows(table: Table, columns: list[dict[str, Any]]) -> None:
    for c in columns:
        values = c.get("statistics") or {}
        table.add_row(
            escape(c["name"]),
            c["kind"],
            c["method"],
            _number(c.get("value")),
            _status(c["verdict"]),
            *(_number(values.get(name)) for name in ("psi", "jensenshannon", "chisquare", "ks")),
            f"{c.get('rows') or 0:,}",
            f"{c.get('nulls') or 0:,}",
        )


def _histogram(column: dict[str, Any]) -> Table:
    table = Table(title=escape(column["name"]), title_justify="left")
    for col in ("slot", "reference", "current"):
        table.add_column(col)
    reference, current = column["reference"], column.get("current") or []
    ref_total, cur_total = sum(reference) or 1, sum(current) or 1
    for i, label in enumerate(column["labels"]):
        cur = f"{current[i] / cur_total:.1%}" if current else ""
        table.add_row(escape(label), f"{reference[i] / ref_total:.1%}", cur)
    return table


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[
        str | None, typer.Option(help="Version (default: the one the status is about).")
    ] = None,
    histograms: Annotated[
        bool, typer.Option("--histograms", help="Reference and current shares per slot.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One model: every column's statistics and verdict, histograms, status changes."""
    from mlfleet.monitoring.actor import call

    data = call(_monitor().model.remote(name, version))
    if as_json:
        print(json.dumps(data, indent=2, default=str))
        return
    window = data.get("window") or {}
    console.print(
        f"[bold]{escape(name)}[/] v{data.get('version') or '-'}: {_status(data['status'])} "
        f"({escape(data.get('reason') or '')}); {data.get('rows') or 0:,} rows in "
        f"{len(window.get('buckets') or [])} minute(s) (window {window.get('minutes')} min / "
        f"{window.get('max_rows') or 0:,} rows)"
    )
    detail = data.get("detail")
    if detail:
        table = Table(title_justify="left")
        for col in (
            "column",
            "kind",
            "method",
            "value",
            "verdict",
            "psi",
            "js",
            "chi2 p",
            "ks",
            "rows",
            "nulls",
        ):
            table.add_column(col)
        prediction = [detail["prediction"]] if detail.get("prediction") else []
        _column_rows(table, [*detail["features"], *prediction])
        console.print(table)
        if histograms:
            for column in [*detail["features"], *prediction]:
                console.print(_histogram(column))
    performance = data.get("performance") or {}
    if performance.get("estimated_accuracy") is not None or performance.get("realised"):
        console.print(
            f"estimated accuracy {_number(performance.get('estimated_accuracy'))}; "
            f"realised {_realised(performance) or '-'}"
        )
    for change in data.get("history") or []:
        console.print(
            f"  {_when(change['at'])}  {change['previous'] or '-'} -> {_status(change['status'])}"
            f"  v{change['version'] or '-'}  {escape(change['reason'])}"
        )
