"""The Ray environment mlfleet sets before Ray is imported, seen from a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# What a driver of mlfleet sees once the CLI prepared the environment (Ray not imported).
PROBE = (
    "import os; from mlfleet.ray_runtime import prepare_ray_env; prepare_ray_env(); "
    "print(os.environ.get('RAY_AUTH_MODE', 'unset'))"
)


def auth_mode(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env={**base, **env}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_token_mode_is_the_default_outside_ray_jobs() -> None:
    assert auth_mode() == "token"
    assert auth_mode(RAY_AUTH_MODE="disabled") == "disabled"  # the user's choice stands


@pytest.mark.parametrize("cluster_mode", ["token", None])
def test_a_ray_job_keeps_the_mode_of_the_cluster_that_runs_it(cluster_mode: str | None) -> None:
    """A job on a cluster without token auth joins it (issue 12: jobs/train.py failed
    there, asking for a token no one had); on a token cluster it keeps token mode."""
    env = {"RAY_JOB_CONFIG_JSON_ENV_VAR": "{}", "RAY_ADDRESS": "127.0.0.1:6379"}
    if cluster_mode:
        env["RAY_AUTH_MODE"] = cluster_mode
    assert auth_mode(**env) == (cluster_mode or "unset")
