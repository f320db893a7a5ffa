"""``make quickstart``: the user's first tour, end to end on embedded defaults.

Validates the example fleet's data in ``specs/`` (real penguins shipped in a package, made
messy the way real systems make them: see ``mlfleet.demo``) and prints the result.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mlfleet.cli.main import main as cli
from mlfleet.demo import APP, DB, SQLITE_TABLE, WEB


def run(specs_dir: Path = Path("specs")) -> None:
    """Run the quickstart from the repository root."""
    penguins = specs_dir / "penguins"
    data = penguins / "data"
    sources = [str(data / WEB), str(data / APP), f"sqlite:///{data / DB}?table={SQLITE_TABLE}"]
    print("== 1. validate penguins from a website export, an app log and a database", flush=True)
    try:
        cli(["data", "validate", "--contract", str(penguins / "contract.yaml"), *sources])
    except SystemExit as exc:
        if exc.code not in (0, None):
            sys.exit(exc.code)


if __name__ == "__main__":
    run()
