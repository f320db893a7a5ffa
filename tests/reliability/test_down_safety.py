"""`mlfleet down` stops the head it recorded, and nothing else (issue 10, hole 9).

A head record (``$MLFLEET_HOME/cluster/head.json``) outlives the head when the machine
reboots or the head dies, and its PID can then belong to any program. `down` must check that
the PID is still that head before it signals its session; here the PID belongs to a sleeping
process that leads its own session, as the head did, so a blind `down` would kill it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.cli import run_cli
from tests.support.net import free_port


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A long-running process leading its own session, like the head did."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def lookalike() -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """A process whose command line is a head's (same port and temp dir), started later."""
    port, temp = free_port(), Path(f"/tmp/mlfleet-ray-lookalike-{os.getpid()}")
    args = ["start", "--head", "--port", str(port), "--temp-dir", str(temp)]
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(300)", *args], start_new_session=True
    )
    yield proc, port, temp
    proc.kill()
    proc.wait()


def record(home: Path, pid: int, port: int, temp: Path, started_at: float | None) -> Path:
    path = home / "cluster" / "head.json"
    path.parent.mkdir(parents=True)
    state = {
        "pid": pid,
        "gcs_address": f"127.0.0.1:{port}",
        "dashboard_url": f"http://127.0.0.1:{free_port()}",
        "temp_dir": str(temp),
        "log": str(home / "cluster" / "head.log"),
        "env": {},
    }
    if started_at is not None:
        state["started_at"] = started_at
    path.write_text(json.dumps(state))
    return path


def down(home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLFLEET_HOME": str(home)}
    env.pop("MLFLEET_RAY_ADDRESS", None)
    return run_cli(["down"], env, timeout=120)


def assert_refused(
    proc: subprocess.Popen[bytes], state: Path, out: subprocess.CompletedProcess[str]
) -> None:
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "nothing to stop"
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pid {proc.pid}" in lines[0] and "stopped nothing" in lines[0]
    assert "Traceback" not in out.stderr
    assert proc.poll() is None and psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE
    assert not state.exists()  # the stale record is forgotten
    print(f"down safety: pid {proc.pid} survived; said: {lines[0]}")


def test_down_leaves_another_program_on_a_recorded_pid_alone(
    tmp_path: Path, bystander: subprocess.Popen[bytes]
) -> None:
    # A record from before mlfleet kept start times: only the command line can tell.
    state = record(tmp_path, bystander.pid, free_port(), tmp_path / "ray", started_at=None)
    assert_refused(bystander, state, down(tmp_path))


def test_down_leaves_a_lookalike_started_after_the_head_alone(
    tmp_path: Path, lookalike: tuple[subprocess.Popen[bytes], int, Path]
) -> None:
    proc, port, temp = lookalike
    started = psutil.Process(proc.pid).create_time()
    state = record(tmp_path, proc.pid, port, temp, started_at=started - 3600)
    assert_refused(proc, state, down(tmp_path))
