"""Start a real `ray start --head` cluster on 127.0.0.1 for job-submission tests.

The head runs as our child with ``--block`` and is stopped by signalling that process,
never with ``ray stop`` (which would kill every Ray cluster on the host).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RayHead:
    gcs_address: str
    dashboard_url: str
    env: dict[str, str]


def _token_headers() -> dict[str, str]:
    token_file = Path.home() / ".ray" / "auth_token"
    if token_file.is_file():
        return {"Authorization": f"Bearer {token_file.read_text().strip()}"}
    return {}


@contextmanager
def ray_head(num_cpus: int = 2, timeout: float = 120) -> Iterator[RayHead]:
    """A head node bound to 127.0.0.1 with the dashboard (needed by the Jobs API)."""
    temp = Path(tempfile.mkdtemp(prefix="mlf-ray-", dir="/tmp"))
    port, dash = free_port(), free_port()
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_AUTH_MODE": "token",
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
    }
    env.pop("RAY_ADDRESS", None)
    cmd = [
        str(BIN / "ray"),
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
        str(dash),
        "--include-dashboard",
        "true",
        "--num-cpus",
        str(num_cpus),
        "--temp-dir",
        str(temp),
        "--min-worker-port",
        "20000",
        "--max-worker-port",
        "29999",
    ]
    log = (temp / "head.log").open("w")
    proc = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited: {(temp / 'head.log').read_text()[-2000:]}")
            try:
                r = httpx.get(f"{url}/api/version", headers=_token_headers(), timeout=2)
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the Ray head did not answer in time")
            time.sleep(0.5)
        yield RayHead(gcs_address=f"127.0.0.1:{port}", dashboard_url=url, env=env)
    finally:
        # SIGTERM to `ray start --block` tears down the processes it started; the whole
        # session group is killed afterwards in case anything lingers.
        proc.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)
