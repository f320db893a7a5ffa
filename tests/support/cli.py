"""Running the `mlfleet` CLI as a user would: a separate process, from the repo root."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from tests.support import REPO

MLFLEET = [sys.executable, "-m", "mlfleet.cli.main"]


def run_cli(
    args: list[str], env: Mapping[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """``mlfleet ARGS`` with ``env``; output captured as text, exit code not checked."""
    return _run([*MLFLEET, *args], env, timeout)


def _run(
    cmd: list[str], env: Mapping[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        env=dict(env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# Runs the CLI in this interpreter as `python -m mlfleet.cli.main` would; at exit (the CLI
# runs the exit handlers, then ends the process at once) writes which of the named modules
# it imported to the file named second (stdout and stderr stay the CLI's).
_PROBE = """
import atexit, json, runpy, sys
modules, out = json.loads(sys.argv[1]), sys.argv[2]
sys.argv = ["mlfleet", *sys.argv[3:]]

def record():
    with open(out, "w") as f:
        json.dump(sorted(m for m in modules if m in sys.modules), f)

atexit.register(record)
runpy.run_module("mlfleet.cli.main", run_name="__main__")
"""


def cli_imports(
    args: list[str], env: Mapping[str, str], modules: list[str], timeout: float = 600
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """``mlfleet ARGS`` in a fresh process, and which of ``modules`` it had imported at exit."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "modules.json"
        proc = _run(
            [sys.executable, "-c", _PROBE, json.dumps(modules), str(out), *args], env, timeout
        )
        if not out.is_file():  # it died before its own exit handling
            raise AssertionError(f"mlfleet {' '.join(args)} crashed: {proc.stderr[-2000:]}")
        return proc, set(json.loads(out.read_text()))


def validate_args(root: Path, *sources: str, extra: tuple[str, ...] = ()) -> list[str]:
    """``data validate`` of a folder laid out like ``tests.support.messy`` writes it
    (``contract.yaml``, ``src/``): the named files under ``src/``, any quarantine accepted."""
    return [
        "data",
        "validate",
        "--contract",
        str(root / "contract.yaml"),
        *(str(root / "src" / s) for s in sources),
        "--max-quarantine-fraction",
        "1",
        *extra,
    ]
