"""The production profile's services, started for real: PostgreSQL from Debian's packages and
an MLflow tracking server on it.

PostgreSQL is installed with apt-get when its binaries are missing (``apt-get update`` first
if the install fails), initialised into a temporary folder and started on a free loopback
port with its socket in that folder. ``initdb`` and ``postgres`` refuse to run as root, so
as root they run as the ``postgres`` user the package creates (``runuser``). Whatever cannot
be done raises: the tests that need these services fail, they never skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.net import free_port
from tests.support.waiting import wait_for

ROLE = "mlfleet"  # what the services log in as: owns its databases, not a superuser
SUPERUSER = "postgres"
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"  # where Debian puts initdb, pg_ctl and postgres
BIN = Path(sys.executable).parent


def _as_root() -> bool:
    return os.geteuid() == 0


def _apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    sudo = [] if _as_root() else ["sudo", "-n"]
    return subprocess.run(
        [*sudo, "apt-get", *args],
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def _find_pg_bin() -> Path | None:
    def major(folder: Path) -> int:
        name = folder.parent.name
        return int(name) if name.isdigit() else 0

    found = sorted(Path("/").glob(PG_BIN_GLOB.lstrip("/")), key=major)
    for folder in reversed(found):  # the newest installed major version
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    return None


def pg_bin() -> Path:
    """The folder of PostgreSQL's server binaries, installing Debian's ``postgresql`` first
    when they are missing.

    Raises:
        RuntimeError: they cannot be installed (with apt-get's own words).
    """
    found = _find_pg_bin()
    if found is not None:
        return found
    install = _apt_get("install", "-y", "--no-install-recommends", "postgresql")
    if install.returncode != 0:
        _apt_get("update")
        install = _apt_get("install", "-y", "--no-install-recommends", "postgresql")
    found = _find_pg_bin()
    if found is None:
        raise RuntimeError(
            "PostgreSQL is needed by the production profile's tests and could not be "
            f"installed with apt-get (exit {install.returncode}): {install.stderr[-1500:]}"
        )
    return found


def _run_as_owner(cmd: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``cmd`` as the data folder's owner: the ``postgres`` user when we are root."""
    prefix = ["runuser", "-u", SUPERUSER, "--"] if _as_root() else []
    return subprocess.run(
        [*prefix, *cmd], capture_output=True, text=True, timeout=timeout, check=False
    )


def _check(proc: subprocess.CompletedProcess[str], what: str, log: Path | None = None) -> None:
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log and log.is_file() else ""
        raise RuntimeError(
            f"{what} failed (exit {proc.returncode}): {proc.stdout[-1000:]}"
            f"{proc.stderr[-2000:]}{tail}"
        )


@dataclass(frozen=True)
class Postgres:
    """A running PostgreSQL on 127.0.0.1."""

    port: int
    folder: Path

    def url(self, database: str, user: str = ROLE) -> str:
        """The SQLAlchemy / MLflow URL of ``database`` (trust auth: no password)."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"


def _create_databases(pg: Postgres, databases: Sequence[str]) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(pg.url("postgres", user=SUPERUSER), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"CREATE ROLE {ROLE} LOGIN")
            for name in databases:
                conn.exec_driver_sql(f"CREATE DATABASE {name} OWNER {ROLE}")
    finally:
        engine.dispose()


@contextmanager
def running_postgres(databases: Sequence[str]) -> Iterator[Postgres]:
    """A fresh PostgreSQL cluster holding ``databases`` (owned by :data:`ROLE`), stopped and
    deleted on exit.

    Raises:
        RuntimeError: it cannot be installed, initialised or started (with the reason).
    """
    binaries = pg_bin()
    # Not under pytest's tmp_path: its parents are private to root, and the server may run
    # as the postgres user, which must reach its folder.
    folder = Path(tempfile.mkdtemp(prefix="mlfleet-pg-"))
    data, log = folder / "data", folder / "server.log"
    if _as_root():
        shutil.chown(folder, SUPERUSER, SUPERUSER)
    pg = Postgres(port=free_port(), folder=folder)
    started = False
    try:
        _check(
            _run_as_owner(
                [
                    str(binaries / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    SUPERUSER,
                    "-A",
                    "trust",  # the server listens on loopback only, for this test run
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            ),
            "initdb",
        )
        options = (
            f"-p {pg.port} -k {folder} -c listen_addresses=127.0.0.1 "
            # Durability across a power cut is not what these tests check; fsync only costs.
            "-c fsync=off -c max_connections=100"
        )
        started = True
        _check(
            _run_as_owner(
                [
                    *(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log)),
                    *("-o", options, "-w", "-t", "120", "start"),
                ]
            ),
            "pg_ctl start",
            log,
        )
        _create_databases(pg, databases)
        yield pg
    finally:
        if started:
            stop = [str(binaries / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "stop"]
            if _run_as_owner([*stop, "-m", "fast"], timeout=90).returncode != 0:
                _run_as_owner([*stop, "-m", "immediate"], timeout=90)
        shutil.rmtree(folder, ignore_errors=True)


def _server_answers(url: str, proc: subprocess.Popen[bytes], log: Path) -> bool:
    if proc.poll() is not None:
        raise RuntimeError(
            f"`mlflow server` exited with {proc.returncode}: "
            f"{log.read_text(errors='replace')[-3000:]}"
        )
    try:
        return httpx.get(f"{url}/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass(frozen=True)
class MlflowServer:
    """A running tracking server: its URL, the folder its artifacts go to and its log."""

    url: str
    artifacts: Path
    log: Path


@contextmanager
def running_mlflow_server(
    backend_store_uri: str, artifacts: Path, log: Path
) -> Iterator[MlflowServer]:
    """``mlflow server`` on 127.0.0.1 with ``backend_store_uri`` and its artifacts under
    ``artifacts`` (served through it: clients on any node upload and download over HTTP);
    stopped (its whole process group) on exit.

    Raises:
        RuntimeError: the server exits before it answers (with its log).
        TimeoutError: it does not answer within three minutes.
    """
    artifacts.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        backend_store_uri,
        "--artifacts-destination",
        str(artifacts),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",  # one process: with several, uvicorn restarts workers slow to start on a busy host
    ]
    # mlfleet submits no MLflow server jobs (GenAI evaluations, trace roll-ups); their runner
    # is one more process to start, and it took ~20 s to stop here.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        wait_for(
            lambda: _server_answers(url, proc, log),
            timeout=180,  # its imports alone took 30 s on a busy 2-core host
            what=f"`mlflow server` on {url}",
            first=0.2,
        )
        yield MlflowServer(url, artifacts, log)
    finally:
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server and its workers: the process group it leads (its own session)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the leader is not reaped yet: still our group
        proc.wait(timeout=30)
