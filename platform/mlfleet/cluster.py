"""A local Ray head that outlives the command which started it (`mlfleet cluster up`,
`mlfleet serve up`).

`ray start --head --block` runs as a detached child; its PID, start time and addresses are
kept in ``$MLFLEET_HOME/cluster/head.json`` so `mlfleet down` stops exactly what mlfleet
started (never with Ray's own stop command, which would stop every Ray cluster on the
machine), and nothing else: a record whose PID now belongs to another process is forgotten,
not acted on.

Every server of the head listens on 127.0.0.1 and Ray's token auth is always on (see
docs/security.md, Ports).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from mlfleet.errors import MlfleetError
from mlfleet.settings import Settings

STATE_FILE = "head.json"
START_TIMEOUT_S = 120.0
START_ATTEMPTS = 3
KILL_WAIT_S = 10.0
HEAD_IP = "127.0.0.1"
"""The address of every head mlfleet starts: all of its servers listen there only."""
AUTH_MODE = "RAY_AUTH_MODE"
# Ray's switch for a cluster that is this machine alone (see start_head).
LOCAL_CLUSTER = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# Ray's usual dashboard (and Jobs API) port: `mlfleet cluster up` takes it when it is free, so
# the README's `ray job submit --address http://127.0.0.1:8265` works as written.
DEFAULT_DASHBOARD_PORT = 8265
# psutil derives start times from boot time and clock ticks: equal for one process, read twice.
START_TIME_TOLERANCE_S = 0.5


class ClusterError(MlfleetError):
    """A Ray cluster (mlfleet's local head or the one named) could not be started or reached."""

    code = "cluster_unavailable"
    exit_code = 1


@dataclass
class HeadState:
    """What `serve up` recorded about the head it started."""

    pid: int
    gcs_address: str
    dashboard_url: str
    temp_dir: str
    log: str
    env: dict[str, str] = field(default_factory=dict)  # the overrides it was started with
    # When the process started (seconds since the epoch), to tell it from a later process
    # given the same PID; 0 in records written before mlfleet kept it.
    started_at: float = 0.0

    @property
    def haproxy(self) -> bool:
        """Whether Serve on this head fronts HTTP with HAProxy."""
        return self.env.get("RAY_SERVE_ENABLE_HA_PROXY") == "1"


def _state_path(settings: Settings) -> Path:
    return settings.home / "cluster" / STATE_FILE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _flag(cmdline: list[str], name: str) -> str | None:
    """The value following ``name`` on a command line, if it is there."""
    for i, arg in enumerate(cmdline[:-1]):
        if arg == name:
            return cmdline[i + 1]
    return None


def impostor(state: HeadState) -> str | None:
    """Why the process recorded in ``state`` is not (or no longer) that head; None when it is.

    The head is `ray start --head` with the GCS port and temp dir mlfleet gave it, leading
    its own session, started when the record says. A PID reused by any other process fails
    one of these, and killing its session would kill an unrelated program.
    """
    try:
        proc = psutil.Process(state.pid)
        with proc.oneshot():
            if proc.status() == psutil.STATUS_ZOMBIE:
                return "has exited"
            cmdline = proc.cmdline()
            started = proc.create_time()
    except psutil.NoSuchProcess:
        return "has exited"
    except psutil.AccessDenied:
        return "belongs to another user"
    port = state.gcs_address.rpartition(":")[2]
    if not (
        "start" in cmdline
        and "--head" in cmdline
        and _flag(cmdline, "--port") == port
        and _flag(cmdline, "--temp-dir") == state.temp_dir
    ):
        return "now runs another program"
    if state.started_at and abs(started - state.started_at) > START_TIME_TOLERANCE_S:
        return "now belongs to a process started after that head"
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getsid(state.pid) != state.pid:
            return "no longer leads its own session"
    return None


def running_head(
    settings: Settings, notify: Callable[[str], None] | None = None
) -> HeadState | None:
    """The head mlfleet started earlier, if it is still running.

    A record of a head that has exited, or whose PID now belongs to another process, is
    forgotten (nothing is signalled); ``notify`` hears about the second kind.
    """
    path = _state_path(settings)
    if not path.is_file():
        return None
    try:
        state = HeadState(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        path.unlink(missing_ok=True)
        if notify:
            notify(f"forgot an unreadable Ray head record ({path}); stopped nothing")
        return None
    why = impostor(state)
    if why is not None:
        path.unlink(missing_ok=True)
        if notify and why != "has exited":
            notify(
                f"the Ray head recorded in {path} is gone: pid {state.pid} {why}; "
                "forgot the record and stopped nothing"
            )
        return None
    return state


def answering_head(settings: Settings) -> HeadState | None:
    """:func:`running_head`, only if its GCS still accepts connections (a TCP connect on
    loopback: milliseconds, no Ray import), so commands can join it instead of starting Ray."""
    state = running_head(settings)
    return state if state is not None and _gcs_up(state.gcs_address) else None


def _gcs_up(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def token_path(env: dict[str, str] | None = None) -> Path:
    """Where Ray clients with ``env`` (default: this process's) look for the token file:
    ``RAY_AUTH_TOKEN_PATH``, else Ray's default ``~/.ray/auth_token``."""
    env = dict(os.environ) if env is None else env
    if env.get("RAY_AUTH_TOKEN_PATH"):
        return Path(env["RAY_AUTH_TOKEN_PATH"]).expanduser()
    return Path(env.get("HOME") or Path.home()) / ".ray" / "auth_token"


def read_token(env: dict[str, str] | None = None) -> str | None:
    """The Ray token clients with ``env`` send (``RAY_AUTH_TOKEN``, else the token file)."""
    env = dict(os.environ) if env is None else env
    if env.get("RAY_AUTH_TOKEN"):
        return env["RAY_AUTH_TOKEN"].strip()
    try:
        return token_path(env).read_text().strip() or None
    except OSError:
        return None


def ensure_token(env: dict[str, str]) -> None:
    """Make sure a head started with ``env`` has Ray's token: generate one when none exists.

    ``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH`` in ``env`` name the token; otherwise it is
    Ray's default file, ``~/.ray/auth_token``, which every Ray client of this user reads.
    `ray start --head` refuses to start with token auth on and no token; `ray get-auth-token
    --generate` would write one readable by every local user, so mlfleet writes it itself,
    for this user alone, with the same 256 random bits.
    """
    if env.get("RAY_AUTH_TOKEN") or env.get("RAY_AUTH_TOKEN_PATH"):
        return
    path = token_path(env)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # the user's own token, whatever its mode: theirs to decide
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32))


def port_if_free(port: int) -> int | None:
    """``port`` when nothing listens on it on 127.0.0.1 right now, else None."""
    with socket.socket() as s:
        try:
            s.bind((HEAD_IP, port))
        except OSError:
            return None
    return port


def start_head(
    settings: Settings,
    env_overrides: dict[str, str] | None = None,
    dashboard_port: int | None = None,
) -> HeadState:
    """Start a head bound to 127.0.0.1 with Ray's token auth on, detached from this process.

    Args:
        settings: MLFLEET_HOME (the record, the log, and the home of the head's jobs) and
            the head's CPUs.
        env_overrides: Environment of the head on top of this process's (recorded).
        dashboard_port: The dashboard's (and Jobs API's) port; default a free one.

    Raises:
        ClusterError: RAY_AUTH_MODE asks for no token auth, or the head does not come up
            in time.
    """
    log_dir = settings.home / "cluster"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / "head.log"
    env = _head_env(settings, env_overrides)
    # Every port is picked free a moment before Ray binds it, and Ray's own processes (and
    # any other head on the host) bind ports of the same ephemeral range meanwhile: a head
    # that exits at once is started again on fresh ports.
    for attempt in range(1, START_ATTEMPTS + 1):
        offset = log.stat().st_size if log.exists() else 0
        try:
            return _start_head_once(settings, env, env_overrides, dashboard_port, log)
        except _HeadExited as exited:
            if attempt == START_ATTEMPTS:
                raise ClusterError(
                    f"ray start exited (code {exited.code}) {attempt} times; last said: "
                    f"{_last_line(log, offset)!r}; see {log}"
                ) from None
    raise AssertionError("unreachable")


class _HeadExited(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def _last_line(log: Path, offset: int) -> str:
    """The last non-blank line ``log`` got after ``offset`` (what a failed start said)."""
    try:
        with log.open("rb") as f:
            f.seek(offset)
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _head_env(settings: Settings, env_overrides: dict[str, str] | None) -> dict[str, str]:
    """The environment of a head: this process's, the overrides, and token auth on."""
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
        # On SIGTERM a head first "drains" (waits for its workers to go idle) for up to 30 s;
        # a lone local head has nowhere to drain to, and Serve replicas never go idle.
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
        # A job's working directory is a copy Ray unpacks into its session folder: the
        # default home (./.mlfleet) would put its models there, lost to every other command.
        "MLFLEET_HOME": str(settings.home),
        **(env_overrides or {}),
    }
    env.pop("RAY_ADDRESS", None)
    # Anyone who reaches a Ray server without the token can run code on the cluster.
    if env.get(AUTH_MODE, "token").lower() != "token":
        raise ClusterError(
            f"{AUTH_MODE}={env[AUTH_MODE]}: heads mlfleet starts keep Ray's token auth on; "
            f"unset {AUTH_MODE} (or set it to token)"
        )
    env[AUTH_MODE] = "token"
    ensure_token(env)
    # `ray start` turns --node-ip-address 127.0.0.1 into the host's routable address, and
    # then GCS, raylet and agents listen on every interface. Ray's own switch for a
    # single-machine cluster keeps the node on 127.0.0.1, so they listen there only (a
    # second node could not join, and none should: this head is the whole cluster).
    # Clients need the switch too (mlfleet.ray_runtime.prepare_ray_env).
    env[LOCAL_CLUSTER] = "0"
    return env


def _start_head_once(
    settings: Settings,
    env: dict[str, str],
    env_overrides: dict[str, str] | None,
    dashboard_port: int | None,
    log: Path,
) -> HeadState:
    """One `ray start --head` on fresh ports; its state once its GCS answers.

    Raises:
        _HeadExited: `ray start` exited before its GCS answered.
        ClusterError: the head did not come up in time (it is stopped).
    """
    bin_dir = Path(sys.executable).parent
    port, agent, client = free_port(), free_port(), free_port()
    dashboard = dashboard_port or free_port()
    temp = Path(f"/tmp/mlfleet-ray-{os.getpid()}-{port}")
    cmd = [
        str(bin_dir / "ray"),
        "start",
        "--head",
        "--block",
        "--node-ip-address",
        HEAD_IP,
        "--port",
        str(port),
        "--dashboard-host",
        HEAD_IP,
        "--dashboard-port",
        str(dashboard),
        # Ray's default agent port (52365) is one per host: on a host that already runs a
        # head, this head's job agent could not bind it, and no job could ever be submitted.
        "--dashboard-agent-listen-port",
        str(agent),
        "--include-dashboard",
        "true",
        # Ray Client's default port (10001) is one per host too.
        "--ray-client-server-port",
        str(client),
        "--temp-dir",
        str(temp),
    ]
    if settings.ray_num_cpus:
        cmd += ["--num-cpus", str(settings.ray_num_cpus)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        started_at = psutil.Process(proc.pid).create_time()
    except psutil.NoSuchProcess:
        started_at = 0.0  # it exited at once; the loop below reports it
    state = HeadState(
        pid=proc.pid,
        gcs_address=f"{HEAD_IP}:{port}",
        dashboard_url=f"http://{HEAD_IP}:{dashboard}",
        temp_dir=str(temp),
        log=str(log),
        env=dict(env_overrides or {}),
        started_at=started_at,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _gcs_up(state.gcs_address):
        if proc.poll() is not None:
            # Whatever it had started (a GCS server, say) goes with it.
            _signal_all(session_processes(proc.pid), signal.SIGKILL)
            raise _HeadExited(proc.returncode)
        if time.monotonic() > deadline:
            stop_head(state)
            raise ClusterError(
                f"the Ray head did not start within {START_TIMEOUT_S:.0f}s; see {log}"
            )
        time.sleep(0.5)
    _state_path(settings).write_text(json.dumps(asdict(state), indent=2))
    return state


def session_processes(sid: int) -> list[int]:
    """Every process of the session ``sid`` (the head runs as the leader of its own)."""
    members = []
    for pid in psutil.pids():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getsid(pid) == sid:
                members.append(pid)
    return members


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def stop_head(state: HeadState, timeout: float = 60.0) -> None:
    """Stop a head started by :func:`start_head`: every process of its session.

    The session, not the process group: Serve's HAProxy re-execs itself on every
    reload into a process group of its own, and would outlive a group kill.
    """
    members = session_processes(state.pid)
    _signal_all(members, signal.SIGTERM)
    _wait_gone(members, timeout)
    survivors = session_processes(state.pid)
    _signal_all(survivors, signal.SIGKILL)
    # A killed process takes a moment to go (a large one frees its memory first): return
    # once it has, so that nothing of the head outlives `down`.
    _wait_gone(survivors, KILL_WAIT_S)
    _reap(state.pid)
    # HAProxy's config and sockets are worthless once it is gone (Ray's logs are kept).
    haproxy_files = state.env.get("RAY_SERVE_HAPROXY_SERVER_STATE_BASE")
    if haproxy_files:
        shutil.rmtree(haproxy_files, ignore_errors=True)


def _wait_gone(pids: list[int], timeout: float) -> None:
    """Wait until none of ``pids`` runs, for up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)


def _reap(pid: int, timeout: float = 5.0) -> None:
    """Wait until ``pid`` is gone, not just dead: reap it if it is our child (as in tests),
    or give init a moment to."""
    deadline = time.monotonic() + timeout
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)


def forget_head(settings: Settings) -> None:
    """Remove the record of a head."""
    _state_path(settings).unlink(missing_ok=True)


def stop_running_head(
    settings: Settings, notify: Callable[[str], None] | None = None
) -> HeadState | None:
    """Stop the head mlfleet started under MLFLEET_HOME and forget it; the head stopped, or
    None when none runs (a stale record is forgotten, see :func:`running_head`)."""
    head = running_head(settings, notify)
    if head is not None:
        stop_head(head)
        forget_head(settings)
    return head


def dashboard_get(state: HeadState, path: str, timeout: float = 10.0) -> Any:
    """GET ``path`` from the head's dashboard with this user's Ray token; its JSON body.

    Raises:
        ClusterError: the dashboard does not answer, refuses the token, or fails.
    """
    import httpx

    url = f"{state.dashboard_url}{path}"
    try:
        response = httpx.get(url, headers=_auth_header(), timeout=timeout)
    except httpx.HTTPError as exc:
        raise ClusterError(f"the head's dashboard ({url}) does not answer: {exc}") from None
    if response.status_code == 401:
        raise ClusterError(
            f"the head's dashboard refused this user's Ray token ({token_path()}): "
            "the head was started with another one",
            code="ray_token_refused",
        )
    if response.status_code != 200:
        raise ClusterError(f"the head's dashboard answered {path} with {response.status_code}")
    return response.json()


def _auth_header() -> dict[str, str]:
    token = read_token()
    return {"Authorization": f"Bearer {token}"} if token else {}


def wait_ready(state: HeadState, timeout: float = START_TIMEOUT_S) -> None:
    """Return once the head's dashboard (and so its Jobs API) answers and its node is alive.

    The GCS answers first (:func:`start_head` returns then); a job submitted before the
    dashboard is up would be refused.

    Raises:
        ClusterError: the head exited, refuses this user's token, or is not ready in time.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            nodes = dashboard_get(state, "/api/v0/nodes", timeout=5)["data"]["result"]["result"]
            if any(node.get("state") == "ALIVE" for node in nodes):
                return
        except ClusterError as exc:
            if exc.code == "ray_token_refused":
                raise
        if not _alive(state.pid):
            raise ClusterError(f"the Ray head exited; see {state.log}")
        if time.monotonic() > deadline:
            raise ClusterError(f"the Ray head was not ready within {timeout:.0f}s; see {state.log}")
        time.sleep(0.5)


def submit_command(state: HeadState, entrypoint: str) -> str:
    """The `ray job submit` line, as a shell runs it from the project's root, that sends
    ``entrypoint`` to this head with the token (Ray clients send it only in token mode)."""
    ray = shlex.quote(str(Path(sys.executable).parent / "ray"))
    return (
        f"{AUTH_MODE}=token {ray} job submit --address {state.dashboard_url} "
        f"--working-dir . -- {entrypoint}"
    )
