"""The console script ends promptly once a command is done, the way Python would end it:
idle thread pools stopped, other threads joined, exit handlers run, exit code kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import REPO

# A library that leaves an idle thread pool behind (as one did in `mlfleet train`: its
# worker waits for work until the interpreter tells pools to stop), and an exit handler.
_WRAPPER = """
import atexit, runpy, sys
from concurrent.futures import ThreadPoolExecutor
pool = ThreadPoolExecutor(max_workers=1)
pool.submit(lambda: None).result()
marker = sys.argv[1]
atexit.register(lambda: open(marker, "w").write("handlers ran"))
sys.argv = ["mlfleet", *sys.argv[2:]]
runpy.run_module("mlfleet.cli.main", run_name="__main__")
"""


def run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    marker = tmp_path / "marker"
    proc = subprocess.run(
        [sys.executable, "-c", _WRAPPER, str(marker), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,  # before the fix it waited on the pool's worker for ever
        check=False,
        env={"PATH": "/usr/bin:/bin", "MLFLEET_HOME": str(tmp_path / "home")},
    )
    return proc, marker


def test_an_idle_thread_pool_does_not_hold_the_exit(tmp_path: Path) -> None:
    proc, marker = run(tmp_path, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout
    assert marker.read_text() == "handlers ran"


def test_an_error_keeps_its_exit_code_and_the_handlers_still_run(tmp_path: Path) -> None:
    proc, marker = run(tmp_path, "data", "versions", "nothing-here")
    assert proc.returncode == 2
    assert "no dataset named 'nothing-here'" in proc.stderr and "Traceback" not in proc.stderr
    assert marker.read_text() == "handlers ran"
