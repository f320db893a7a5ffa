"""A real `ray start --head` cluster on 127.0.0.1 for job-submission tests.

It is mlfleet's own detached head (``mlfleet.cluster``), stopped with every process of its
session, never with Ray's own stop command (which would kill every Ray cluster on the host).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from mlfleet import cluster
from mlfleet.settings import get_settings

BIN = Path(sys.executable).parent


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
    """A head with the dashboard (the Jobs API needs it), torn down on exit."""
    settings = get_settings(home=Path(tempfile.mkdtemp(prefix="mlf-head-")), ray_num_cpus=num_cpus)
    state = cluster.start_head(settings)
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_AUTH_MODE": "token",
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
    }
    env.pop("RAY_ADDRESS", None)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                r = httpx.get(
                    f"{state.dashboard_url}/api/version", headers=_token_headers(), timeout=2
                )
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the Ray dashboard did not answer in time")
            time.sleep(0.5)
        yield RayHead(gcs_address=state.gcs_address, dashboard_url=state.dashboard_url, env=env)
    finally:
        cluster.stop_head(state)
        cluster.forget_head(settings)
