"""Commands that need no cluster do not pay for one: which heavy modules each CLI path imports.

Measured from the outside: a fresh `mlfleet` process, and the modules it holds at exit.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.cli import cli_imports, run_cli, validate_args
from tests.support.messy import CONTRACT_YAML, write_sources

HEAVY = ["ray", "ray.tune", "ray.data", "mlflow"]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("imports")
    (root / "contract.yaml").write_text(CONTRACT_YAML)
    write_sources(root / "src")
    env = {**os.environ, "MLFLEET_HOME": str(root / "home"), "MLFLEET_RAY_NUM_CPUS": "2"}
    # A real version to list, so `data versions` walks its whole path (reading manifests).
    proc = run_cli(validate_args(root, "web.csv"), env)
    assert proc.returncode == 0, proc.stderr
    return env


def test_help_imports_neither_ray_nor_mlflow(env: dict[str, str]) -> None:
    proc, loaded = cli_imports(["--help"], env, HEAVY)
    assert proc.returncode == 0, proc.stderr
    assert "data" in proc.stdout
    assert loaded == set(), loaded


def test_cluster_help_imports_neither_ray_nor_mlflow(env: dict[str, str]) -> None:
    proc, loaded = cli_imports(["cluster", "--help"], env, HEAVY)
    assert proc.returncode == 0, proc.stderr
    assert "up" in proc.stdout and "status" in proc.stdout and "down" in proc.stdout
    assert loaded == set(), loaded


def test_data_versions_imports_neither_ray_nor_mlflow(env: dict[str, str]) -> None:
    proc, loaded = cli_imports(["data", "versions", "customers", "--json"], env, HEAVY)
    assert proc.returncode == 0, proc.stderr
    assert '"name": "customers"' in proc.stdout
    assert loaded == set(), loaded


def test_models_list_imports_mlflow_but_not_ray(env: dict[str, str]) -> None:
    proc, loaded = cli_imports(["models", "list", "--json"], env, HEAVY)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    # MLflow is its floor (the registry lives there); that it shows up here also proves the
    # probe sees what a command imports.
    assert loaded == {"mlflow"}, loaded


def test_small_validation_imports_neither_ray_nor_mlflow(env: dict[str, str]) -> None:
    """Auto engine, a few rows: checked in the command's own process."""
    root = Path(env["MLFLEET_HOME"]).parent
    proc, loaded = cli_imports(validate_args(root, "app.jsonl", extra=("--json",)), env, HEAVY)
    assert proc.returncode == 0, proc.stderr
    assert '"engine": "local"' in proc.stdout
    assert loaded == set(), loaded


def test_data_validate_on_ray_imports_ray(env: dict[str, str]) -> None:
    """The probe's other side: a command that does use Ray is seen importing it."""
    root = Path(env["MLFLEET_HOME"]).parent
    # Sources no other test validated: a version already made would be reused without Ray.
    args = validate_args(root, "web.csv", "app.jsonl", extra=("--engine", "ray", "--json"))
    proc, loaded = cli_imports(args, env, HEAVY)
    assert proc.returncode == 0, proc.stderr
    assert '"engine": "ray"' in proc.stdout
    assert {"ray", "ray.data"} <= loaded, loaded
