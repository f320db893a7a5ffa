"""A real `ray start --head` cluster on 127.0.0.1 for job-submission tests.

It is mlfleet's own detached head (``mlfleet.cluster``), stopped with every process of its
session, never with Ray's own stop command (which would kill every Ray cluster on the host).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from mlfleet import cluster
from mlfleet.settings import get_settings
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
