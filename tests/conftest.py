"""Test-wide fixtures: an isolated MLFLEET_HOME, one Ray cluster per session, and the
production profile's PostgreSQL and MLflow tracking server (started once, when needed)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlfleet.ray_runtime import prepare_ray_env
from tests.support.postgres import (
    MlflowServer,
    Postgres,
    running_mlflow_server,
    running_postgres,
)

prepare_ray_env()  # as the CLI does, before anything imports ray


@pytest.fixture(scope="session", autouse=True)
def mlfleet_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test session writes under its own home, never the developer's ./.mlfleet."""
    home = tmp_path_factory.mktemp("mlfleet-home")
    old = os.environ.get("MLFLEET_HOME")
    os.environ["MLFLEET_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("MLFLEET_HOME", None)
    else:
        os.environ["MLFLEET_HOME"] = old


@pytest.fixture(scope="session")
def ray_session(mlfleet_home: Path) -> Iterator[None]:
    """One embedded Ray (2 CPUs) shared by every test that needs it."""
    import ray

    from mlfleet.ray_runtime import ensure_ray
    from mlfleet.settings import get_settings

    ensure_ray(get_settings(ray_num_cpus=2))
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One PostgreSQL (Debian's packages, installed when missing) per session, with the
    production profile's databases: ``mlflow`` (the tracking server's), ``monitor`` (the
    monitor's store) and ``scratch`` (for tests of the store's SQL alone)."""
    with running_postgres(databases=("mlflow", "monitor", "scratch")) as pg:
        yield pg


@pytest.fixture(scope="session")
def mlflow_server(
    postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowServer]:
    """An ``mlflow server`` on :func:`postgres` with its artifact root on disk."""
    root = tmp_path_factory.mktemp("mlflow-server")
    with running_mlflow_server(
        postgres.url("mlflow"), root / "artifacts", root / "server.log"
    ) as server:
        yield server
