"""`mlfleet keys create`, `mlfleet serve up/status/down` and `mlfleet down` from the outside:
real processes, a real detached head on 127.0.0.1, real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from mlfleet.quickstart import EXAMPLE_ROWS
from tests.conftest import REPO
from tests.integration.test_serving import free_port
from tests.messy import diabetes_spec_copy

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "mlfleet.cli.main"]


def run(
    args: list[str], env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_keys_create_prints_a_key_whose_digest_is_the_entry() -> None:
    import hashlib

    proc = run(
        ["keys", "create", "--name", "app", "--scopes", "predict,admin", "--json"], dict(os.environ)
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["entry"]["name"] == "app" and out["entry"]["scopes"] == ["predict", "admin"]
    assert out["entry"]["sha256"] == hashlib.sha256(out["key"].encode()).hexdigest()
    bad = run(["keys", "create", "--name", "x", "--scopes", "root"], dict(os.environ))
    assert bad.returncode == 2 and "--scopes" in bad.stderr and "Traceback" not in bad.stderr


def test_serve_up_status_down_on_a_local_head(tmp_path: Path) -> None:
    home = tmp_path / "home"
    specs = tmp_path / "specs"
    spec_path = diabetes_spec_copy(REPO, specs, num_samples=2)
    env = {**os.environ, "MLFLEET_HOME": str(home), "MLFLEET_RAY_NUM_CPUS": "2"}
    env.pop("MLFLEET_API_KEYS", None)
    env.pop("MLFLEET_RAY_ADDRESS", None)
    trained = run(["train", str(spec_path), "--json"], env)
    assert trained.returncode == 0, trained.stderr[-2000:]

    assert run(["serve", "status"], env).returncode != 0  # nothing running yet
    port = free_port()
    try:
        up = run(["serve", "up", "--specs", str(specs), "--port", str(port)], env)
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        assert f"http://127.0.0.1:{port}" in up.stdout
        assert "no API keys configured" in up.stderr and "127.0.0.1 only" in up.stderr
        head = json.loads((home / "cluster" / "head.json").read_text())
        row = EXAMPLE_ROWS["diabetes-progression"]
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/models/diabetes-progression/predict",
            json={"instances": [row]},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        assert r.json()["version"] == "1" and isinstance(r.json()["predictions"][0], float)
        status = run(["serve", "status", "--json"], env)
        assert status.returncode == 0, status.stderr
        info = json.loads(status.stdout)
        assert info["application"] == "RUNNING"
        assert {"Gateway", "ModelPool"} <= set(info["deployments"])
    finally:
        down = run(["down"], env)
    assert down.returncode == 0, down.stderr
    assert "local Ray head" in down.stdout
    assert not (home / "cluster" / "head.json").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(head["pid"], 0)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    assert run(["down"], env).stdout.strip() == "nothing to stop"
