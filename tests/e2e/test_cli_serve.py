"""`mlfleet keys create`, `mlfleet serve up/status/down` and `mlfleet down` from the outside:
real processes, a real detached head on 127.0.0.1, real HTTP."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from examples.quickstart import EXAMPLE_ROWS
from tests.support import REPO
from tests.support.cli import run_cli
from tests.support.messy import diabetes_spec_copy
from tests.support.net import free_port

pytestmark = pytest.mark.slow
run = run_cli


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


def test_keys_create_shell_sets_the_key_and_appends_its_entry() -> None:
    import hashlib
    import subprocess

    first = {"name": "o'brien", "sha256": "a" * 64, "scopes": ["admin"]}
    env = {**os.environ, "MLFLEET_API_KEYS": json.dumps([first])}
    proc = run(["keys", "create", "--name", "app", "--scopes", "predict", "--shell"], env)
    assert proc.returncode == 0, proc.stderr
    # What `eval "$(mlfleet keys create ... --shell)"` leaves in a shell, quotes included.
    shell = subprocess.run(
        ["bash", "-c", f'{proc.stdout}\nprintf "%s\\n%s" "$MLFLEET_KEY" "$MLFLEET_API_KEYS"'],
        capture_output=True,
        text=True,
        check=True,
    )
    key, keys = shell.stdout.split("\n")
    assert json.loads(keys) == [
        first,
        {"name": "app", "sha256": hashlib.sha256(key.encode()).hexdigest(), "scopes": ["predict"]},
    ]
    both = run(["keys", "create", "--name", "x", "--json", "--shell"], env)
    assert both.returncode == 2 and "--shell" in both.stderr and "Traceback" not in both.stderr


def trained_fleet(
    tmp_path: Path, api_keys: list[dict[str, Any]]
) -> tuple[Path, Path, dict[str, str]]:
    """A home with the diabetes model trained; its specs folder; the CLI's environment."""
    home = tmp_path / "home"
    specs = tmp_path / "specs"
    spec_path = diabetes_spec_copy(REPO, specs, num_samples=2)
    env = {**os.environ, "MLFLEET_HOME": str(home), "MLFLEET_RAY_NUM_CPUS": "2"}
    env.pop("MLFLEET_RAY_ADDRESS", None)
    env.pop("MLFLEET_API_KEYS", None)
    if api_keys:
        env["MLFLEET_API_KEYS"] = json.dumps(api_keys)
    trained = run(["train", str(spec_path), "--json"], env)
    assert trained.returncode == 0, trained.stderr[-2000:]
    return home, specs, env


def test_serve_up_status_down_on_a_local_head(tmp_path: Path) -> None:
    home, specs, env = trained_fleet(tmp_path, [])

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


def listener(port: int) -> psutil.Process | None:
    """The process accepting TCP connections on 127.0.0.1:``port``."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return psutil.Process(conn.pid)
    return None


def test_with_api_keys_haproxy_fronts_the_gateway_and_down_stops_it(tmp_path: Path) -> None:
    created = run(
        ["keys", "create", "--name", "ci", "--scopes", "predict", "--json"], dict(os.environ)
    )
    key = json.loads(created.stdout)
    home, specs, env = trained_fleet(tmp_path, [key["entry"]])

    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/models/diabetes-progression/predict"
    body = {"instances": [EXAMPLE_ROWS["diabetes-progression"]]}
    try:
        up = run(["serve", "up", "--specs", str(specs), "--port", str(port)], env)
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        assert "ingress: haproxy" in up.stdout
        proxy = listener(port)
        assert proxy is not None and proxy.name() == "haproxy"
        assert httpx.post(url, json=body, timeout=60).status_code == 401
        ok = httpx.post(url, json=body, headers={"X-API-Key": key["key"]}, timeout=60)
        assert ok.status_code == 200, ok.text
        assert ok.headers["x-served-by"] in {"gateway", "pool"}
        status = run(["serve", "status", "--json"], env)
        assert json.loads(status.stdout)["ingress"] == "haproxy"
        head = json.loads((home / "cluster" / "head.json").read_text())
        haproxy_files = Path(head["env"]["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"])
        assert haproxy_files.is_dir()

        # HAProxy opens replica ports on every interface: no serving without keys on it.
        open_env = {k: v for k, v in env.items() if k != "MLFLEET_API_KEYS"}
        refused = run(["serve", "up", "--specs", str(specs), "--port", str(port)], open_env)
        assert refused.returncode != 0 and "MLFLEET_API_KEYS" in refused.stderr
        assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    finally:
        down = run(["down"], env)
    assert down.returncode == 0, down.stderr
    assert not proxy.is_running() or proxy.status() == psutil.STATUS_ZOMBIE
    assert listener(port) is None
    assert not haproxy_files.exists()  # its config and sockets went with it
