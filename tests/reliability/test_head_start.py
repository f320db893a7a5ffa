"""A head whose `ray start` exits at once is started again on fresh ports (CI once saw
`ray start exited (code 1)` from `serve up`: every port of a head is picked free a moment
before Ray binds it, and other heads on the host bind ports of the same range meanwhile).

`ray start` is made to fail the way it does then, by a `sitecustomize` on PYTHONPATH that
makes the first ``FAILS`` runs of `ray start --head` exit 1 with a line in the log; the head
itself is Ray's, and `mlfleet cluster up` / `down` are the CLI a user runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil
import pytest

from mlfleet import cluster
from tests.support.cli import run_cli

pytestmark = pytest.mark.slow

SITECUSTOMIZE = """
import os, sys
if sys.argv[1:3] == ["start", "--head"]:
    counter = os.environ["FLAKY_HEAD_COUNTER"]
    runs = len(open(counter).read()) if os.path.exists(counter) else 0
    open(counter, "a").write("x")
    if runs < int(os.environ["FLAKY_HEAD_FAILS"]):
        print(f"Failed to bind port: address already in use (run {runs + 1})", flush=True)
        os._exit(1)
"""


def user_env(tmp_path: Path, fails: int) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {
        **os.environ,
        "MLFLEET_HOME": str(tmp_path / "home"),
        "MLFLEET_RAY_NUM_CPUS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
        "FLAKY_HEAD_COUNTER": str(tmp_path / "runs"),
        "FLAKY_HEAD_FAILS": str(fails),
    }
    env.pop("MLFLEET_RAY_ADDRESS", None)
    return env


def runs(tmp_path: Path) -> int:
    return len((tmp_path / "runs").read_text())


def test_a_head_that_exits_at_once_is_started_again(tmp_path: Path) -> None:
    env = user_env(tmp_path, fails=cluster.START_ATTEMPTS - 1)
    up = run_cli(["cluster", "up"], env, timeout=300)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert runs(tmp_path) == cluster.START_ATTEMPTS
        state = json.loads((tmp_path / "home" / "cluster" / "head.json").read_text())
        assert psutil.pid_exists(state["pid"])
        status = run_cli(["cluster", "status"], env, timeout=120)
        assert status.returncode == 0, status.stdout + status.stderr
        print(f"head up after {runs(tmp_path)} runs of ray start: {state['gcs_address']}")
    finally:
        down = run_cli(["cluster", "down"], env, timeout=180)
    assert down.returncode == 0, down.stdout + down.stderr


def test_a_head_that_never_starts_is_one_clear_error(tmp_path: Path) -> None:
    env = user_env(tmp_path, fails=cluster.START_ATTEMPTS)
    up = run_cli(["cluster", "up"], env, timeout=300)
    assert up.returncode == 1
    assert "Traceback" not in up.stderr
    errors = [line for line in up.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, up.stderr
    assert f"exited (code 1) {cluster.START_ATTEMPTS} times" in errors[0]
    assert f"address already in use (run {cluster.START_ATTEMPTS})" in errors[0]
    assert runs(tmp_path) == cluster.START_ATTEMPTS
    assert not (tmp_path / "home" / "cluster" / "head.json").exists()
    print(f"said: {errors[0]}")
