"""A local Ray head that outlives the command which started it (for `mlfleet serve up`).

`ray start --head --block` runs as a detached child; its PID and addresses are kept in
``$MLFLEET_HOME/cluster/head.json`` so `mlfleet down` stops exactly what mlfleet started
(never with Ray's own stop command, which would stop every Ray cluster on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from mlfleet.errors import MlfleetError
from mlfleet.settings import Settings

STATE_FILE = "head.json"
START_TIMEOUT_S = 120.0


class ClusterError(MlfleetError):
    """A Ray cluster (mlfleet's local head or the one named) could not be started or reached."""

    code = "cluster_unavailable"
    exit_code = 1


@dataclass
class HeadState:
    """What `serve up` recorded about the head it started."""

    pid: int
    gcs_address: str
    dashboard_url: str
    temp_dir: str
    log: str
    env: dict[str, str] = field(default_factory=dict)  # the overrides it was started with

    @property
    def haproxy(self) -> bool:
        """Whether Serve on this head fronts HTTP with HAProxy."""
        return self.env.get("RAY_SERVE_ENABLE_HA_PROXY") == "1"


def _state_path(settings: Settings) -> Path:
    return settings.home / "cluster" / STATE_FILE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def running_head(settings: Settings) -> HeadState | None:
    """The head mlfleet started earlier, if it is still running."""
    path = _state_path(settings)
    if not path.is_file():
        return None
    state = HeadState(**json.loads(path.read_text()))
    if not _alive(state.pid):
        path.unlink(missing_ok=True)
        return None
    return state


def _gcs_up(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def start_head(settings: Settings, env_overrides: dict[str, str] | None = None) -> HeadState:
    """Start a head bound to 127.0.0.1, detached from this process.

    Raises:
        ClusterError: when it does not come up in time.
    """
    bin_dir = Path(sys.executable).parent
    port, dashboard, agent = free_port(), free_port(), free_port()
    temp = Path(f"/tmp/mlfleet-ray-{os.getpid()}-{port}")
    log_dir = settings.home / "cluster"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / "head.log"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
        # On SIGTERM a head first "drains" (waits for its workers to go idle) for up to 30 s;
        # a lone local head has nowhere to drain to, and Serve replicas never go idle.
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
        **(env_overrides or {}),
    }
    env.pop("RAY_ADDRESS", None)
    cmd = [
        str(bin_dir / "ray"),
        "start",
        "--head",
        "--block",
        "--node-ip-address",
        "127.0.0.1",
        "--port",
        str(port),
        "--dashboard-host",
        "127.0.0.1",
        "--dashboard-port",
        str(dashboard),
        # Ray's default agent port (52365) is one per host: on a host that already runs a
        # head, this head's job agent could not bind it, and no job could ever be submitted.
        "--dashboard-agent-listen-port",
        str(agent),
        "--include-dashboard",
        "true",
        "--temp-dir",
        str(temp),
    ]
    if settings.ray_num_cpus:
        cmd += ["--num-cpus", str(settings.ray_num_cpus)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    state = HeadState(
        pid=proc.pid,
        gcs_address=f"127.0.0.1:{port}",
        dashboard_url=f"http://127.0.0.1:{dashboard}",
        temp_dir=str(temp),
        log=str(log),
        env=dict(env_overrides or {}),
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _gcs_up(state.gcs_address):
        if proc.poll() is not None:
            raise ClusterError(f"ray start exited (code {proc.returncode}); see {log}")
        if time.monotonic() > deadline:
            stop_head(state)
            raise ClusterError(
                f"the Ray head did not start within {START_TIMEOUT_S:.0f}s; see {log}"
            )
        time.sleep(0.5)
    _state_path(settings).write_text(json.dumps(asdict(state), indent=2))
    return state


def _session(sid: int) -> list[int]:
    """Every process of the session ``sid`` (the head runs as the leader of its own)."""
    members = []
    for pid in psutil.pids():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getsid(pid) == sid:
                members.append(pid)
    return members


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def stop_head(state: HeadState, timeout: float = 60.0) -> None:
    """Stop a head started by :func:`start_head`: every process of its session.

    The session, not the process group: Serve's HAProxy re-execs itself on every
    reload into a process group of its own, and would outlive a group kill.
    """
    members = _session(state.pid)
    _signal_all(members, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in members) and time.monotonic() < deadline:
        time.sleep(0.3)
    _signal_all(_session(state.pid), signal.SIGKILL)
    _reap(state.pid)
    # HAProxy's config and sockets are worthless once it is gone (Ray's logs are kept).
    haproxy_files = state.env.get("RAY_SERVE_HAPROXY_SERVER_STATE_BASE")
    if haproxy_files:
        shutil.rmtree(haproxy_files, ignore_errors=True)


def _reap(pid: int, timeout: float = 5.0) -> None:
    """Wait until ``pid`` is gone, not just dead: reap it if it is our child (as in tests),
    or give init a moment to."""
    deadline = time.monotonic() + timeout
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)


def forget_head(settings: Settings) -> None:
    """Remove the record of a head."""
    _state_path(settings).unlink(missing_ok=True)
