"""`jobs/*.py` submitted with `ray job submit` to a `ray start --head` cluster on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from examples.quickstart import EXAMPLE_ROWS
from tests.support import REPO
from tests.support.cli import run_cli
from tests.support.messy import CONTRACT_YAML, diabetes_spec_copy, write_sources
from tests.support.net import free_port
from tests.support.ray_head import BIN, RayHead, ray_head
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def head() -> Iterator[RayHead]:
    with ray_head() as h:
        yield h


def submit(head: RayHead, home: Path, *entrypoint: str) -> subprocess.CompletedProcess[str]:
    runtime_env = {"env_vars": {"MLFLEET_HOME": str(home), "MLFLEET_GIT_SHA": "test-sha"}}
    return subprocess.run(
        [
            str(BIN / "ray"),
            "job",
            "submit",
            "--address",
            head.dashboard_url,
            "--working-dir",
            ".",
            "--runtime-env-json",
            json.dumps(runtime_env),
            "--",
            "python",
            *entrypoint,
        ],
        cwd=REPO,
        env=head.env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )


def test_validate_job(head: RayHead, tmp_path: Path) -> None:
    contract = tmp_path / "contract.yaml"
    contract.write_text(CONTRACT_YAML)
    sources = write_sources(tmp_path / "src")
    home = tmp_path / "home"
    proc = submit(
        head,
        home,
        "jobs/validate.py",
        "--contract",
        str(contract),
        *sources,
        "--max-quarantine-fraction",
        "0.9",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "succeeded" in proc.stdout
    manifests = list((home / "datasets" / "customers").glob("*/manifest.json"))
    assert len(manifests) == 1
    manifest = json.loads(manifests[0].read_text())
    assert (manifest["rows_in"], manifest["rows_valid"], manifest["rows_quarantined"]) == (
        21,
        7,
        14,
    )
    assert manifest["status"] == "passed"


def test_train_job_then_models_cli(head: RayHead, tmp_path: Path) -> None:
    home = tmp_path / "home"
    spec = yaml.safe_load((REPO / "specs/penguins/model.yaml").read_text())
    spec["search"]["num_samples"] = 4
    spec["sources"] = [
        str((REPO / "specs/penguins" / s).resolve())
        if not s.startswith("sqlite")
        else s.replace("sqlite:///", f"sqlite:///{REPO / 'specs/penguins'}/")
        for s in spec["sources"]
    ]
    spec["contract"] = str(REPO / "specs/penguins/contract.yaml")
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = submit(head, home, "jobs/train.py", "--spec", str(path), "--json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "succeeded" in proc.stdout
    # The job's own JSON result sits in the job logs that `ray job submit` streams back.
    assert '"promoted": true' in proc.stdout and '"version": "1"' in proc.stdout

    env = {**os.environ, "MLFLEET_HOME": str(home)}
    listing = run_cli(["models", "list", "--json"], env, timeout=120)
    assert listing.returncode == 0, listing.stderr
    rows = json.loads(listing.stdout)
    assert [(r["name"], r["champion"], r["metric"]) for r in rows] == [
        ("penguin-species", "1", "f1_macro")
    ]
    assert rows[0]["score"] > 0.9
    shown = run_cli(["models", "show", "penguin-species", "--json"], env, timeout=120)
    tags = json.loads(shown.stdout)["all_versions"][0]["tags"]
    assert tags["mlfleet.git_sha"] == "test-sha"
    assert tags["mlfleet.dataset_version"] == rows[0]["dataset_version"]
    rollback = run_cli(["models", "rollback", "penguin-species"], env, timeout=120)
    assert rollback.returncode == 2
    assert "no previous champion" in rollback.stderr and "Traceback" not in rollback.stderr
    unknown = run_cli(["models", "promote", "penguin-species", "7"], env, timeout=120)
    assert unknown.returncode == 2 and "has no version '7'" in unknown.stderr


def serve_fleet_running(head: RayHead, app: str) -> bool:
    """Whether Serve's REST API reports ``app`` RUNNING behind healthy proxies.

    Raises:
        AssertionError: the deploy failed (no use waiting any longer).
    """
    r = httpx.get(f"{head.dashboard_url}/api/serve/applications/", headers=head.headers, timeout=10)
    if r.status_code != 200:  # the dashboard's Serve module is not up yet
        return False
    body = r.json()
    status = body.get("applications", {}).get(app, {})
    assert status.get("status") != "DEPLOY_FAILED", status.get("message")
    proxies = body.get("proxies") or {}
    healthy = bool(proxies) and all(p.get("status") == "HEALTHY" for p in proxies.values())
    return status.get("status") == "RUNNING" and healthy


def test_serve_deploy_yaml_on_the_head(head: RayHead, tmp_path: Path) -> None:
    """`serve deploy serve_apps/fleet.yaml` (the committed config, with this test's port,
    specs and MLFLEET_HOME) brings the fleet up on a cluster mlfleet did not start."""
    home = tmp_path / "home"
    specs = tmp_path / "specs"
    spec_path = diabetes_spec_copy(REPO, specs, num_samples=1)
    trained = submit(head, home, "jobs/train.py", "--spec", str(spec_path))
    assert trained.returncode == 0, trained.stdout[-2000:]

    config = yaml.safe_load((REPO / "serve_apps/fleet.yaml").read_text())
    port = free_port()
    config["http_options"]["port"] = port
    config["applications"][0]["args"]["specs_dir"] = str(specs)
    config["applications"][0]["runtime_env"] = {"env_vars": {"MLFLEET_HOME": str(home)}}
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(config))
    serve_cli = str(BIN / "serve")
    deploy = subprocess.run(
        [serve_cli, "deploy", str(path), "--address", head.dashboard_url],
        env=head.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    app = config["applications"][0]["name"]
    wait_for(lambda: serve_fleet_running(head, app), timeout=240, what=f"Serve running {app!r}")
    row = EXAMPLE_ROWS["diabetes-progression"]
    response = httpx.post(
        f"http://127.0.0.1:{port}/v1/models/diabetes-progression/predict",
        json={"instances": [row]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "diabetes-progression"
    subprocess.run(
        [serve_cli, "shutdown", "-y", "--address", head.dashboard_url],
        env=head.env,
        capture_output=True,
        timeout=120,
        check=False,
    )
