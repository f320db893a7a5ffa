"""A local Ray head that outlives the command which started it (for `mlfleet serve up`).

`ray start --head --block` runs as a detached child; its PID and addresses are kept in
``$MLFLEET_HOME/cluster/head.json`` so `mlfleet down` stops exactly what mlfleet started
(never with Ray's own stop command, which would stop every Ray cluster on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mlfleet.errors import MlfleetError
from mlfleet.settings import Settings

STATE_FILE = "head.json"
START_TIMEOUT_S = 120.0


class ClusterError(MlfleetError):
    """The local head could not be started or reached."""

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


def _state_path(settings: Settings) -> Path:
    return settings.home / "cluster" / STATE_FILE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
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
    port, dashboard = _free_port(), _free_port()
    temp = Path(f"/tmp/mlfleet-ray-{os.getpid()}-{port}")
    log_dir = settings.home / "cluster"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / "head.log"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
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


def stop_head(state: HeadState, timeout: float = 60.0) -> None:
    """Stop a head started by :func:`start_head` (its whole process group)."""
    try:
        os.killpg(state.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while _alive(state.pid) and time.monotonic() < deadline:
        time.sleep(0.3)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(state.pid, signal.SIGKILL)


def forget_head(settings: Settings) -> None:
    """Remove the record of a head."""
    _state_path(settings).unlink(missing_ok=True)
