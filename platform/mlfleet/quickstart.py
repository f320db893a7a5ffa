"""``make quickstart``: the user's first tour, end to end on embedded defaults.

1. validates the penguins as three messy systems send them (``specs/penguins``),
2. trains every model spec in ``specs/`` on one embedded Ray (Tune search, MLflow registry,
   promotion gate),
3. prints the registry table and how to open the MLflow UI.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mlfleet.cli.main import main as cli
from mlfleet.demo import APP, DB, SQLITE_TABLE, WEB


def _run(args: list[str], *, ok: tuple[int, ...] = (0,)) -> None:
    try:
        cli(args)
    except SystemExit as exc:
        code = 0 if exc.code is None else int(exc.code)
        if code not in ok:
            sys.exit(code)


def run(specs_dir: Path = Path("specs")) -> None:
    """Run the quickstart from the repository root."""
    from mlfleet.ray_runtime import ensure_ray
    from mlfleet.registry import configure
    from mlfleet.settings import get_settings

    settings = get_settings()
    penguins = specs_dir / "penguins"
    data = penguins / "data"
    sources = [str(data / WEB), str(data / APP), f"sqlite:///{data / DB}?table={SQLITE_TABLE}"]
    print(
        "\n== 1. validate penguins from a website export, an app log and a database\n", flush=True
    )
    ensure_ray(settings)  # one embedded Ray for the whole tour
    _run(["data", "validate", "--contract", str(penguins / "contract.yaml"), *sources])

    specs = sorted(specs_dir.glob("*/model.yaml"))
    print(
        f"\n== 2. train the fleet: {len(specs)} model specs on Ray Tune, tracked in MLflow\n",
        flush=True,
    )
    for spec in specs:
        _run(["train", str(spec)])
        print(flush=True)

    print("== 3. the registry\n", flush=True)
    configure(settings)
    _run(["models", "list"])
    print(
        f"\nBrowse runs, trials and models:  .venv/bin/mlflow ui --backend-store-uri "
        f"{settings.tracking_uri}\n(then open http://127.0.0.1:5000)",
        flush=True,
    )


if __name__ == "__main__":
    run()
