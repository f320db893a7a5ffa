"""The README's cluster path, run as a new user runs it on a fresh machine (issue 12).

`mlfleet cluster up`, the `ray job submit` line it prints (training), `mlfleet serve up` on
that head and a prediction over HTTP, `mlfleet cluster status`, `mlfleet cluster down`: each
a separate process, from a HOME with no Ray token in it and no RAY_AUTH_MODE, as the README
gives them. One head for the module; the last test stops it.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from examples.quickstart import EXAMPLE_ROWS
from mlfleet import cluster
from tests.support import REPO
from tests.support.cli import run_cli
from tests.support.messy import example_spec_copy
from tests.support.net import free_port, listeners

pytestmark = pytest.mark.slow

README_JOB = "python jobs/train.py --spec specs/penguins/model.yaml"


@dataclass
class User:
    """What the user has after `mlfleet cluster up`."""

    env: dict[str, str]  # the user's shell: empty HOME, own MLFLEET_HOME
    home: Path  # that HOME
    root: Path
    up: subprocess.CompletedProcess[str]
    state: dict[str, str]  # the head's record, as mlfleet wrote it

    @property
    def pid(self) -> int:
        return int(self.state["pid"])


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> Iterator[User]:
    root = tmp_path_factory.mktemp("cluster-path")
    home = root / "user"  # no ~/.ray/auth_token: `cluster up` must make one
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "MLFLEET_HOME": str(root / "mlfleet"),
        "MLFLEET_RAY_NUM_CPUS": "2",
    }
    for name in ("MLFLEET_RAY_ADDRESS", "RAY_ADDRESS", "RAY_AUTH_MODE", "MLFLEET_API_KEYS"):
        env.pop(name, None)
    up = run_cli(["cluster", "up"], env, timeout=300)
    record = root / "mlfleet" / "cluster" / "head.json"
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
        yield User(env=env, home=home, root=root, up=up, state=json.loads(record.read_text()))
    finally:
        if record.is_file():  # a test failed before `cluster down`
            run_cli(["cluster", "down"], env, timeout=120)


def submit_line(out: str) -> str:
    """The `ray job submit` line `cluster up` printed."""
    lines = [line.strip() for line in out.splitlines() if " job submit " in line]
    assert len(lines) == 1, out
    return lines[0]


def test_up_makes_a_private_token_prints_the_addresses_and_listens_on_loopback(
    user: User,
) -> None:
    token = user.home / ".ray" / "auth_token"
    mode = stat.S_IMODE(token.stat().st_mode)
    assert mode == 0o600, oct(mode)
    assert len(token.read_text().strip()) == 64

    out = user.up.stdout
    assert user.state["gcs_address"] in out and user.state["dashboard_url"] in out
    line = submit_line(out)
    assert line.startswith("RAY_AUTH_MODE=token ") and README_JOB in line

    found = listeners(set(cluster.session_processes(user.pid)))
    wide = [item for item in found if not item.loopback]
    print(
        f"\ncluster up: head pid {user.pid}, {len(found)} listening TCP sockets, "
        f"{len(wide)} beyond loopback"
    )
    ports = {item.port for item in found}
    for address in (user.state["gcs_address"], user.state["dashboard_url"]):
        assert int(address.rpartition(":")[2]) in ports, (address, found)
    assert {"gcs_server", "raylet"} <= {item.process for item in found}, found
    assert not wide, wide

    again = run_cli(["cluster", "up", "--json"], user.env, timeout=120)
    assert again.returncode == 0, again.stderr
    info = json.loads(again.stdout)
    assert (info["started"], info["pid"]) == (False, user.pid)


def test_printed_job_line_trains_and_serve_up_joins_the_head(user: User) -> None:
    specs = user.root / "specs"
    spec = example_spec_copy(REPO, specs, "penguins", num_samples=1)
    # The line exactly as printed, with a one-trial copy of the same spec.
    line = submit_line(user.up.stdout).replace("specs/penguins/model.yaml", str(spec))
    job = subprocess.run(
        line, shell=True, cwd=REPO, env=user.env, capture_output=True, text=True, timeout=400
    )
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "succeeded" in job.stdout and "promoted to champion" in job.stdout, job.stdout[-2000:]
    # The job wrote where the user's commands read: their MLFLEET_HOME, not the job's copy.
    assert (user.root / "mlfleet" / "mlflow.db").is_file()

    port = free_port()
    up = run_cli(["serve", "up", "--specs", str(specs), "--port", str(port)], user.env)
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
    assert "starting a local Ray head" not in up.stderr  # it joined the one cluster up started
    response = httpx.post(
        f"http://127.0.0.1:{port}/v1/models/penguin-species/predict",
        json={"instances": [EXAMPLE_ROWS["penguin-species"]]},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["version"]) == ("penguin-species", "1")
    assert body["predictions"][0] in {"adelie", "chinstrap", "gentoo"}
    print(f"\ncluster path: job trained v1, serve up on the head, predicted {body['predictions']}")


def test_status_reports_the_head_and_the_fleet(user: User) -> None:
    proc = run_cli(["cluster", "status", "--json"], user.env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["running"] is True and info["pid"] == user.pid
    assert info["gcs_address"] == user.state["gcs_address"]
    assert [(n["ip"], n["head"], n["state"]) for n in info["nodes"]] == [
        ("127.0.0.1", True, "ALIVE")
    ]
    assert info["resources"]["CPU"]["total"] == 2
    assert info["fleet"] == "RUNNING"
    assert info["uptime_s"] > 0
    # With the fleet on it, only the inter-deployment gRPC servers of Serve replicas listen
    # beyond loopback (Serve has no setting for it; Ray's token guards them, as
    # tests/reliability/test_exposure.py checks and docs/security.md, Ports, says).
    found = listeners(set(cluster.session_processes(user.pid)))
    wide = [item for item in found if not item.loopback]
    print(f"\nwith the fleet: {len(found)} listening TCP sockets, {len(wide)} beyond loopback")
    assert all(item.process.startswith("ray::ServeReplica") for item in wide), wide

    text = run_cli(["cluster", "status"], user.env, timeout=120)
    assert text.returncode == 0 and "fleet:" in text.stdout and "RUNNING" in text.stdout
    print(f"\ncluster status: {info['resources']['CPU']} CPU, up {info['uptime_s']} s")


def test_down_stops_every_process_of_the_head_and_is_safe_to_repeat(user: User) -> None:
    members = cluster.session_processes(user.pid)
    assert user.pid in members
    down = run_cli(["cluster", "down"], user.env, timeout=180)
    assert down.returncode == 0, down.stderr
    assert f"pid {user.pid}" in down.stdout
    left = [pid for pid in members if _running(pid)]
    print(f"\ncluster down: {len(members)} processes of the head, {len(left)} left")
    assert not left, left

    status = run_cli(["cluster", "status"], user.env, timeout=60)
    assert status.returncode == 1
    assert status.stderr.startswith("error: no Ray head") and "Traceback" not in status.stderr
    again = run_cli(["cluster", "down"], user.env, timeout=60)
    assert again.returncode == 0 and "nothing to stop" in again.stdout


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ({"RAY_AUTH_MODE": "disabled"}, "keep Ray's token auth on"),
        ({"MLFLEET_RAY_ADDRESS": "127.0.0.1:6379"}, "names another cluster"),
    ],
)
def test_up_refuses_an_open_head_or_a_named_cluster_in_one_line(
    tmp_path: Path, setting: dict[str, str], said: str
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")},
        "HOME": str(tmp_path),
        "MLFLEET_HOME": str(tmp_path / "mlfleet"),
        **setting,
    }
    proc = run_cli(["cluster", "up"], env, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: ") and said in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "mlfleet" / "cluster" / "head.json").exists()
