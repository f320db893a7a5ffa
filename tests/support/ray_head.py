"""A real `ray start --head` cluster on 127.0.0.1 for job-submission tests, and a second
node joined to it for multi-node tests.

The head is mlfleet's own detached head (``mlfleet.cluster``); head and node are each
stopped with every process of their session, never with Ray's own stop command (which
would kill every Ray cluster on the host).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from mlfleet import cluster
from mlfleet.settings import get_settings
from tests.support import REPO
from tests.support.waiting import wait_for

BIN = Path(sys.executable).parent
# What `ray start` prints once the head is up, its dashboard (and so the Jobs API) included:
# Ray waits for the dashboard's HTTP server to register its address before saying so.
STARTED = "Ray runtime started."


@dataclass
class RayHead:
    gcs_address: str
    dashboard_url: str
    env: dict[str, str]
    home: Path  # the MLFLEET_HOME that records it: commands run with it join this head

    @property
    def headers(self) -> dict[str, str]:
        """What an HTTP client of the dashboard sends: the cluster's token, when there is one."""
        token_file = Path.home() / ".ray" / "auth_token"
        if token_file.is_file():
            return {"Authorization": f"Bearer {token_file.read_text().strip()}"}
        return {}


def _has_started(state: cluster.HeadState) -> bool:
    if STARTED in Path(state.log).read_text(errors="replace"):
        return True
    try:
        gone = psutil.Process(state.pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        gone = True
    if gone:
        raise RuntimeError(f"`ray start` exited before the head was up; see {state.log}")
    return False


@contextmanager
def ray_head(num_cpus: int = 2, timeout: float = 120, serve_env: bool = False) -> Iterator[RayHead]:
    """A head with the dashboard (the Jobs API needs it), torn down on exit.

    ``serve_env``: started as `mlfleet serve up` starts one (Serve's fast path on).
    """
    from mlfleet.serving.deploy import start_local_head

    settings = get_settings(home=Path(tempfile.mkdtemp(prefix="mlf-head-")), ray_num_cpus=num_cpus)
    state = start_local_head(settings) if serve_env else cluster.start_head(settings)
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_AUTH_MODE": "token",
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
    }
    env.pop("RAY_ADDRESS", None)
    try:
        wait_for(lambda: _has_started(state), timeout=timeout, what="the Ray head's start-up line")
        yield RayHead(
            gcs_address=state.gcs_address,
            dashboard_url=state.dashboard_url,
            env=env,
            home=settings.home,
        )
    finally:
        cluster.stop_head(state)
        cluster.forget_head(settings)


@dataclass
class WorkerNode:
    """A second Ray node on this machine (``tests.support.ray_worker``), joined to a head."""

    node_id: str
    pid: int  # the leader of its session: every process of the node belongs to it
    log: Path

    def kill(self) -> None:
        """SIGKILL every process of the node at once, as when a machine dies: nothing drains
        and nothing flushes. Processes its raylet starts meanwhile are killed too."""
        while members := [pid for pid in cluster.session_processes(self.pid) if _running(pid)]:
            for pid in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@contextmanager
def worker_node(head: RayHead, num_cpus: int = 2, timeout: float = 120) -> Iterator[WorkerNode]:
    """A node with ``num_cpus`` CPUs of its own joined to ``head``; killed on exit."""
    log = head.home / "worker-node.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.ray_worker", head.gcs_address, str(num_cpus)],
            env=head.env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    node = WorkerNode(node_id="", pid=proc.pid, log=log)
    try:

        def joined() -> str:
            if proc.poll() is not None:
                raise RuntimeError(f"the worker node exited ({proc.returncode}); see {log}")
            lines = [
                ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("NODE ")
            ]
            return lines[0].split()[1] if lines else ""

        node.node_id = wait_for(joined, timeout=timeout, what="the worker node joining")
        yield node
    finally:
        node.kill()
        proc.wait(timeout=30)
