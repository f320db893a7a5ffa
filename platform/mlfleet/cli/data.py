"""``mlfleet data``: infer contracts, validate sources into dataset versions, list versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from mlfleet.cli.console import console, err_console
from mlfleet.errors import MlfleetError, UsageError
from mlfleet.settings import get_settings

app = typer.Typer(help="Data contracts, validation and dataset versions.", no_args_is_help=True)


@app.command()
def infer(
    sources: Annotated[list[str], typer.Argument(help="Files, globs or sqlite:///f.db?table=T.")],
    name: Annotated[str, typer.Option("--name", help="Dataset name for the contract.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the contract YAML.")],
    target: Annotated[str | None, typer.Option(help="Label column, if any.")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a contract inferred from the data, for a person to review and edit."""
    import re

    from mlfleet.contract.schema import NAME_PATTERN
    from mlfleet.data.infer import infer_contract
    from mlfleet.data.sources import resolve_sources

    if not re.match(NAME_PATTERN, name):
        raise UsageError(f"--name {name!r}: use lower-case letters, digits, '-' and '_'")
    if out.exists() and not force:
        raise UsageError(f"{out} exists; pass --force to overwrite it")
    contract = infer_contract(name, resolve_sources(sources), target=target)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(contract.to_yaml())
    err_console.print(
        f"wrote {escape(str(out))} ({len(contract.columns)} columns"
        f"{', keys ' + ', '.join(contract.keys) if contract.keys else ''})"
    )


def _print_summary(result: object) -> None:
    from mlfleet.data.validate import ValidationResult

    assert isinstance(result, ValidationResult)
    m = result.manifest
    colour = "green" if m.status == "passed" else "red"
    reused = " (already validated: same sources and contract)" if result.reused else ""
    console.print(f"[bold]{m.name}[/] version [bold]{m.version}[/] [{colour}]{m.status}[/]{reused}")
    console.print(
        f"  rows in {m.rows_in:,} = valid {m.rows_valid:,} + quarantined "
        f"{m.rows_quarantined:,} ({100 * m.quarantine_fraction:.2f}%, "
        f"limit {100 * m.max_quarantine_fraction:.2f}%)"
    )
    unreadable = sum(1 for s in m.sources if s.error)
    if unreadable:
        console.print(f"  [red]{unreadable} source(s) could not be read[/] (errors on stderr)")
    if m.reasons:
        table = Table(title="quarantine reasons", title_justify="left", show_edge=False)
        table.add_column("reason")
        table.add_column("rows", justify="right")
        for code, count in sorted(m.reasons.items(), key=lambda kv: -kv[1]):
            table.add_row(code, f"{count:,}")
        console.print(table)
    console.print(f"  data:       {escape(str(result.path / 'data'))}")
    console.print(f"  quarantine: {escape(str(result.path / 'quarantine'))}")
    console.print(f"  report:     {escape(str(result.path / 'report.html'))}")


@app.command()
def validate(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="Files, globs or sqlite:///f.db?table=T, in priority order for duplicates."
        ),
    ],
    contract: Annotated[Path, typer.Option("--contract", help="Data contract YAML.")],
    max_quarantine_fraction: Annotated[
        float,
        typer.Option(help="Fail (exit 1) when more than this fraction of rows is quarantined."),
    ] = 0.05,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print the manifest, and this run's timings, as JSON."),
    ] = False,
    engine: Annotated[
        str,
        typer.Option(
            help="auto | local (in this process, no Ray) | ray (Ray Data). auto: local for "
            "small sources (MLFLEET_VALIDATE_LOCAL_MAX_BYTES) unless MLFLEET_RAY_ADDRESS is "
            "set; MLFLEET_VALIDATE_ENGINE sets the default."
        ),
    ] = "auto",
) -> None:
    """Validate sources against a contract and write a dataset version.

    Exit 0 when the quarantined fraction is within the limit, 1 when over it (the version is
    still written, marked failed), 2 for usage errors.
    """
    # Here, not at the top: `mlfleet --help` should not pay for pyarrow's compute kernels.
    from mlfleet.contract.schema import load_contract
    from mlfleet.data.sources import count_rows, resolve_sources
    from mlfleet.data.validate import validate as run_validate

    spec = load_contract(contract)
    settings = get_settings()
    resolved = resolve_sources(sources)
    known = [count_rows(s) for s in resolved]
    total = sum(k for k in known if k is not None) if all(k is not None for k in known) else None
    with Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=as_json,
    ) as progress:
        task = progress.add_task(f"validating {spec.name}", total=total)
        result = run_validate(
            spec,
            sources,
            settings,
            max_quarantine_fraction=max_quarantine_fraction,
            progress=lambda n: progress.update(task, completed=n),
            engine=engine,
        )
    for source in result.manifest.sources:
        if source.error:  # one line each; the other sources' rows are in the version
            err_console.print(f"error: {escape(source.uri)}: {escape(source.error)}")
    if as_json:
        # The manifest's fields, plus where this run's time went (which manifest.json, a
        # record of the data, leaves out: it differs from one identical run to the next).
        doc = {**result.manifest.model_dump(mode="json"), "timings": result.timings.to_dict()}
        print(json.dumps(doc, indent=2))
    else:
        _print_summary(result)
    raise typer.Exit(0 if result.manifest.status == "passed" else 1)


@app.command()
def versions(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print manifests as JSON.")] = False,
) -> None:
    """List a dataset's versions, newest first."""
    from mlfleet.data.versions import list_versions

    manifests = list_versions(get_settings().datasets_dir, name)
    if as_json:
        print(json.dumps([m.model_dump(mode="json") for m in manifests], indent=2))
        return
    table = Table(title=f"dataset {name}", title_justify="left")
    for column in ("version", "status", "rows in", "valid", "quarantined", "created"):
        table.add_column(
            column, justify="right" if column in ("rows in", "valid", "quarantined") else "left"
        )
    for m in manifests:
        colour = "green" if m.status == "passed" else "red"
        table.add_row(
            m.version,
            f"[{colour}]{m.status}[/]",
            f"{m.rows_in:,}",
            f"{m.rows_valid:,}",
            f"{m.rows_quarantined:,}",
            m.created_at,
        )
    console.print(table)


__all__ = ["MlfleetError", "app"]
