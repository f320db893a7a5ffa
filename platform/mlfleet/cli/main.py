"""Entry point of the ``mlfleet`` console script: one Typer app, a module per group.

User errors (``MlfleetError``) end as one line on stderr and their exit code, never as a
traceback.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading

import typer
from rich.markup import escape

from mlfleet.cli import cluster as cluster_cli
from mlfleet.cli import data as data_cli
from mlfleet.cli import keys as keys_cli
from mlfleet.cli import models as models_cli
from mlfleet.cli import monitor as monitor_cli
from mlfleet.cli import serve as serve_cli
from mlfleet.cli import train as train_cli
from mlfleet.cli.console import err_console
from mlfleet.errors import MlfleetError
from mlfleet.ray_runtime import disconnect, prepare_ray_env

app = typer.Typer(
    name="mlfleet",
    help="mlfleet: validated data, tracked training, one serving fleet — on Ray.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_cli.app, name="data")
app.command("train")(train_cli.train)
app.add_typer(models_cli.app, name="models")
app.add_typer(serve_cli.app, name="serve")
app.add_typer(keys_cli.app, name="keys")
app.add_typer(monitor_cli.app, name="monitor")
app.add_typer(cluster_cli.app, name="cluster")
app.command("down", help="Stop whatever mlfleet started (the fleet and its local head).")(
    serve_cli.down
)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI, mapping mlfleet errors to a message and an exit code."""
    prepare_ray_env()
    try:
        app(args=argv, standalone_mode=True)
    except MlfleetError as exc:
        # The message may hold "[...]" (column names, paths): never read it as rich markup.
        err_console.print(f"[bold red]error:[/] {escape(exc.message)}", soft_wrap=True)
        sys.exit(exc.exit_code)


def run() -> None:
    """The ``mlfleet`` console script: :func:`main`, then a prompt exit.

    Once a command is done, tearing the interpreter down (freeing every object of Ray,
    MLflow, scikit-learn, pandas...) took 1.5-3.8 s of a 10 s `mlfleet train` here, a wait
    for nothing. The exit handlers still run (Ray's disconnect, MLflow ending a run,
    logging), other threads are joined and the output flushed; only that teardown is
    skipped. :func:`main` itself exits normally, for callers in the same process.
    """
    code: int | str | None = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    # What the interpreter does first when it exits, in its order: stop idle thread pools
    # (their workers wait for work until told) and join the other non-daemon threads...
    threading._shutdown()  # type: ignore[attr-defined]
    # ...then run the exit handlers, Ray's own left without its pause (ray_runtime.disconnect).
    disconnect()
    atexit._run_exitfuncs()
    if isinstance(code, str):  # what sys.exit("message") does
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    run()
