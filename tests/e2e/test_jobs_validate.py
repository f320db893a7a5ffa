"""`jobs/validate.py` submitted with `ray job submit` to a `ray start --head` cluster."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.messy import CONTRACT_YAML, write_sources
from tests.ray_head import BIN, ray_head

pytestmark = pytest.mark.slow


def test_validate_job_on_a_ray_head(tmp_path: Path) -> None:
    contract = tmp_path / "contract.yaml"
    contract.write_text(CONTRACT_YAML)
    sources = write_sources(tmp_path / "src")
    home = tmp_path / "home"
    with ray_head() as head:
        proc = subprocess.run(
            [
                str(BIN / "ray"),
                "job",
                "submit",
                "--address",
                head.dashboard_url,
                "--working-dir",
                ".",
                "--runtime-env-json",
                json.dumps({"env_vars": {"MLFLEET_HOME": str(home)}}),
                "--",
                "python",
                "jobs/validate.py",
                "--contract",
                str(contract),
                *sources,
                "--max-quarantine-fraction",
                "0.9",
            ],
            cwd=REPO,
            env=head.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
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
