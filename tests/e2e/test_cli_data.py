"""The `mlfleet data` commands from the outside: real processes, exit codes, output."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.messy import CONTRACT_YAML, write_sources


def run(args: list[str], home: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLFLEET_HOME": str(home), "MLFLEET_RAY_NUM_CPUS": "2"}
    return run_cli(args, env, timeout)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    (root / "contract.yaml").write_text(CONTRACT_YAML)
    write_sources(root / "src")
    return root


def sources(root: Path) -> list[str]:
    return [
        str(root / "src" / "web.csv"),
        str(root / "src" / "app.jsonl"),
        f"sqlite:///{root / 'src' / 'crm.db'}?table=customers",
    ]


def test_usage_errors_exit_2_with_one_line_and_no_traceback(workspace: Path) -> None:
    home = workspace / "home-usage"
    cases = [
        ["data", "validate", "--contract", str(workspace / "missing.yaml"), *sources(workspace)],
        [
            "data",
            "validate",
            "--contract",
            str(workspace / "contract.yaml"),
            str(workspace / "nope.csv"),
        ],
        [
            "data",
            "validate",
            "--contract",
            str(workspace / "contract.yaml"),
            f"sqlite:///{workspace / 'src' / 'crm.db'}?table=nope",
        ],
        [
            "data",
            "validate",
            "--contract",
            str(workspace / "contract.yaml"),
            str(workspace / "src" / "*.xlsx"),
        ],
        ["data", "versions", "never-validated"],
    ]
    expected = [
        "contract file not found",
        "file not found",
        "table 'nope' not found",
        "matches no file",
        "no dataset named 'never-validated'",
    ]
    for args, message in zip(cases, expected, strict=True):
        proc = run(args, home)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_bad_contract_names_the_key(workspace: Path) -> None:
    bad = workspace / "bad.yaml"
    bad.write_text(CONTRACT_YAML.replace("min: 18,", "minimum: 18,"))
    proc = run(
        ["data", "validate", "--contract", str(bad), *sources(workspace)], workspace / "home-bad"
    )
    assert proc.returncode == 2
    assert "unknown key 'columns[age].minimum'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_validate_exit_codes_json_manifest_and_versions(workspace: Path) -> None:
    home = workspace / "home"
    failed = run(
        [
            "data",
            "validate",
            "--contract",
            str(workspace / "contract.yaml"),
            *sources(workspace),
            "--json",
        ],
        home,
    )
    assert failed.returncode == 1, failed.stderr
    manifest = json.loads(failed.stdout)
    assert manifest["status"] == "failed"
    assert (manifest["rows_in"], manifest["rows_valid"], manifest["rows_quarantined"]) == (
        21,
        7,
        14,
    )
    assert manifest["timings"]["batches"] >= 3 and manifest["timings"]["wall_s"]["total"] > 0
    version_dir = home / "datasets" / "customers" / manifest["version"]
    stored = json.loads((version_dir / "manifest.json").read_text())  # written though it failed
    assert "timings" not in stored  # a record of the data, the same for every identical run
    assert stored == {k: v for k, v in manifest.items() if k != "timings"}

    # The same data with a generous limit passes: same version, exit 0, nothing recomputed.
    passed = run(
        [
            "data",
            "validate",
            "--contract",
            str(workspace / "contract.yaml"),
            *sources(workspace),
            "--max-quarantine-fraction",
            "0.9",
        ],
        home,
    )
    assert passed.returncode == 0, passed.stderr
    assert manifest["version"] in passed.stdout and "passed" in passed.stdout
    assert "report.html" in passed.stdout

    listing = run(["data", "versions", "customers", "--json"], home)
    assert listing.returncode == 0
    assert [m["version"] for m in json.loads(listing.stdout)] == [manifest["version"]]
    table = run(["data", "versions", "customers"], home)
    assert manifest["version"] in table.stdout


def test_bad_threshold_is_a_usage_error(workspace: Path) -> None:
    proc = run(
        [
            "data",
            "validate",
            "--contract",
            str(workspace / "contract.yaml"),
            *sources(workspace),
            "--max-quarantine-fraction",
            "2",
        ],
        workspace / "h2",
    )
    assert proc.returncode == 2
    assert "between 0 and 1" in proc.stderr


def test_infer_writes_a_contract_that_validates(workspace: Path, tmp_path: Path) -> None:
    out = tmp_path / "inferred.yaml"
    proc = run(
        ["data", "infer", str(workspace / "src" / "web.csv"), "--name", "web", "--out", str(out)],
        tmp_path / "home",
    )
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "name: web" in text and "type: category" in text
    again = run(
        ["data", "infer", str(workspace / "src" / "web.csv"), "--name", "web", "--out", str(out)],
        tmp_path / "home",
    )
    assert again.returncode == 2 and "--force" in again.stderr
