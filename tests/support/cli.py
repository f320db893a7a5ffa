"""Running the `mlfleet` CLI as a user would: a separate process, from the repo root."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping

from tests.support import REPO

MLFLEET = [sys.executable, "-m", "mlfleet.cli.main"]


def run_cli(
    args: list[str], env: Mapping[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """``mlfleet ARGS`` with ``env``; output captured as text, exit code not checked."""
    return subprocess.run(
        [*MLFLEET, *args],
        env=dict(env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
