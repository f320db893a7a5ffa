"""``mlfleet keys``: create API keys for the gateway."""

from __future__ import annotations

import json
import shlex
from typing import Annotated

import typer

from mlfleet.cli.console import console, err_console
from mlfleet.errors import UsageError
from mlfleet.serving.auth import ApiKey, digest, new_key
from mlfleet.settings import SCOPES, get_settings

app = typer.Typer(help="API keys for the gateway.", no_args_is_help=True)


@app.command()
def create(
    name: Annotated[str, typer.Option(help="A name for the key (shows in logs).")],
    scopes: Annotated[
        str,
        typer.Option(
            help="Comma-separated: predict, admin (promote, roll back, dashboard), "
            "dashboard (view the dashboard only)."
        ),
    ] = "predict",
    as_json: Annotated[bool, typer.Option("--json", help="Print key and entry as JSON.")] = False,
    shell: Annotated[
        bool,
        typer.Option(
            "--shell",
            help="Print shell lines setting MLFLEET_KEY to the key and MLFLEET_API_KEYS to "
            'the keys in force plus this entry: eval "$(mlfleet keys create ... --shell)".',
        ),
    ] = False,
) -> None:
    """Print a new random key once, and the settings entry that accepts it."""
    wanted = [s.strip() for s in scopes.split(",") if s.strip()]
    bad = [s for s in wanted if s not in SCOPES]
    if bad or not wanted:
        raise UsageError(f"--scopes: use {', '.join(SCOPES)} (got {scopes!r})")
    if as_json and shell:
        raise UsageError("--json and --shell: choose one")
    key = new_key()
    entry = ApiKey.model_validate({"name": name, "sha256": digest(key), "scopes": wanted})
    if as_json:
        print(json.dumps({"key": key, "entry": entry.model_dump()}))
        return
    if shell:
        # Appended to the keys already in force, so a second key does not lock out the first.
        entries = [k.model_dump() for k in get_settings().api_keys] + [entry.model_dump()]
        print(f"export MLFLEET_KEY={shlex.quote(key)}")
        print(f"export MLFLEET_API_KEYS={shlex.quote(json.dumps(entries))}")
        return
    console.print(f"key (shown once, keep it secret): {key}")
    err_console.print("add this entry to MLFLEET_API_KEYS (a JSON list) where the gateway runs:")
    console.print(json.dumps(entry.model_dump()))
