"""Commands join mlfleet's own running head (recorded under MLFLEET_HOME) instead of
starting an embedded Ray; a record whose head does not answer is never joined."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import httpx
import psutil
import pytest

from mlfleet import cluster
from tests.support.cli import run_cli, validate_args
from tests.support.messy import CONTRACT_YAML, write_sources
from tests.support.net import free_port
from tests.support.ray_head import RayHead, ray_head


@pytest.fixture(scope="module")
def head() -> Iterator[RayHead]:
    with ray_head() as h:
        yield h


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "contract.yaml").write_text(CONTRACT_YAML)
    write_sources(tmp_path / "src")
    return tmp_path


def drivers(head: RayHead) -> list[dict[str, object]]:
    """Every driver that has joined the head, from its dashboard's jobs API."""
    reply = httpx.get(f"{head.dashboard_url}/api/jobs/", headers=head.headers, timeout=30)
    reply.raise_for_status()
    return [j for j in reply.json() if j["type"] == "DRIVER"]


def test_validate_joins_the_recorded_head(head: RayHead, workspace: Path) -> None:
    """On Ray Data by name: auto would check these few rows in process, without Ray."""
    env = {**os.environ, "MLFLEET_HOME": str(head.home)}
    env.pop("MLFLEET_RAY_ADDRESS", None)
    proc = run_cli(validate_args(workspace, "web.csv", extra=("--json", "--engine", "ray")), env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rows_in"] == 8
    # The command ran as a driver of this head (its command line names our contract).
    mine = [d for d in drivers(head) if str(workspace / "contract.yaml") in str(d["entrypoint"])]
    assert len(mine) == 1, drivers(head)
    assert mine[0]["status"] == "SUCCEEDED"


def test_a_recorded_head_that_does_not_answer_is_not_joined(
    workspace: Path, tmp_path: Path
) -> None:
    """A live process that looks like the recorded head but whose GCS port is closed: the
    command starts its own Ray instead of failing on (or hanging at) a dead address."""
    port, temp = free_port(), tmp_path / "ray-temp"
    # The command line and session of a `ray start --head` (what running_head checks).
    looks_like_head = ["start", "--head", "--port", str(port), "--temp-dir", str(temp)]
    mute = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", *looks_like_head],
        start_new_session=True,
    )
    try:
        home = tmp_path / "home"
        (home / "cluster").mkdir(parents=True)
        state = cluster.HeadState(
            pid=mute.pid,
            gcs_address=f"127.0.0.1:{port}",
            dashboard_url="http://127.0.0.1:1",
            temp_dir=str(temp),
            log=str(tmp_path / "head.log"),
            started_at=psutil.Process(mute.pid).create_time(),
        )
        (home / "cluster" / cluster.STATE_FILE).write_text(json.dumps(asdict(state)))
        env = {**os.environ, "MLFLEET_HOME": str(home), "MLFLEET_RAY_NUM_CPUS": "2"}
        env.pop("MLFLEET_RAY_ADDRESS", None)
        # Joining the dead address would hang in Ray's connection retries: fail early.
        proc = run_cli(
            validate_args(workspace, "web.csv", extra=("--json", "--engine", "ray")),
            env,
            timeout=180,
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["rows_in"] == 8
        assert mute.poll() is None  # mlfleet neither joined nor touched it
    finally:
        mute.kill()
        mute.wait()
