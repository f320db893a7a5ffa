"""Suite case 9, exposure: what a head started by mlfleet listens on, and who may use it.

One head, started as a user starts it (`mlfleet serve up` with API keys, so HAProxy fronts
the gateway), from a HOME with no Ray token in it: every TCP port its processes listen on
(as `ss -ltnp` lists them) must be on 127.0.0.1, Ray's token auth must be on, and the Jobs
API must refuse a job without the token. docs/security.md (Ports) is the table this checks.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlfleet import cluster
from tests.support.cli import run_cli
from tests.support.fleet import DUMMY, api_key, write_loans_fleet
from tests.support.net import Listener, free_port, listeners


@dataclass
class Head:
    """The head `serve up` started, read back from its record."""

    state: dict[str, Any]
    env: dict[str, str]  # the CLI's environment
    home: Path  # HOME of every process of the head
    gateway_port: int
    key: str

    @property
    def token(self) -> str:
        return (self.home / ".ray" / "auth_token").read_text().strip()


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Head]:
    root = tmp_path_factory.mktemp("exposure")
    specs = write_loans_fleet(root, {"loans": (*DUMMY, "pool")}, rows=200, seed=9)
    key = secrets.token_urlsafe(24)
    user_home = root / "user"  # no ~/.ray/auth_token: the head must turn token auth on
    user_home.mkdir()
    env = {
        **os.environ,
        "HOME": str(user_home),
        "MLFLEET_HOME": str(root / "mlfleet"),
        "MLFLEET_RAY_NUM_CPUS": "2",
        "MLFLEET_API_KEYS": json.dumps([api_key("ops", key, "predict", "admin")]),
    }
    for name in ("MLFLEET_RAY_ADDRESS", "RAY_ADDRESS", "RAY_AUTH_MODE", "MLFLEET_SERVE_HOST"):
        env.pop(name, None)
    port = free_port()
    try:
        up = run_cli(["serve", "up", "--specs", str(specs), "--port", str(port)], env)
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
        assert "ingress: haproxy" in up.stdout
        state = json.loads((root / "mlfleet" / "cluster" / "head.json").read_text())
        yield Head(state=state, env=env, home=user_home, gateway_port=port, key=key)
    finally:
        down = run_cli(["down"], env)
        assert down.returncode == 0, down.stderr
        assert "local Ray head" in down.stdout


def grpc_code(port: int, token: str | None) -> str:
    """What a Serve replica's inter-deployment gRPC server answers a call, with or without
    Ray's token (its authentication interceptor runs before the handler)."""
    import grpc

    metadata = [("authorization", f"Bearer {token}")] if token else None
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/ray.serve.ASGIService/HandleRequest")
        try:
            call(b"", timeout=20, metadata=metadata)
        except grpc.RpcError as exc:
            return str(exc.code().name)
    return "OK"


def protection(item: Listener, token: str) -> str:
    """How a listener is protected: ``loopback``, ``ray-token`` (checked), else ``NONE``."""
    if item.loopback:
        return "loopback"
    # Serve 2.60 binds each replica's inter-deployment gRPC server on [::] with no setting
    # for it; Ray's token guards it.
    if item.process.startswith("ray::ServeReplica"):
        without, with_token = grpc_code(item.port, None), grpc_code(item.port, token)
        if without == "UNAUTHENTICATED" and with_token != "UNAUTHENTICATED":
            return "ray-token"
        return f"NONE (gRPC without token: {without}, with: {with_token})"
    return "NONE"


def test_every_port_is_on_loopback_or_refuses_callers_without_the_token(head: Head) -> None:
    found = listeners(set(cluster.session_processes(head.state["pid"])))
    print(f"\n{'port':<6} {'address':<21} {'process':<36} protection")
    verdicts = {}
    for item in found:
        verdicts[item.port] = protection(item, head.token)
        print(f"{item.port:<6} {item.host:<21} {item.process:<36} {verdicts[item.port]}")
    wide = [item.port for item in found if not item.loopback]
    open_ports = [port for port, verdict in verdicts.items() if verdict.startswith("NONE")]
    print(
        f"exposure: {len(found)} listening TCP sockets, {len(found) - len(wide)} on loopback, "
        f"{len(wide) - len(open_ports)} beyond it behind Ray's token, {len(open_ports)} open"
    )

    ports = {item.port for item in found}
    haproxy = head.state["env"]
    expected = {
        int(head.state["gcs_address"].rpartition(":")[2]),
        int(head.state["dashboard_url"].rpartition(":")[2]),
        head.gateway_port,
        int(haproxy["RAY_SERVE_HAPROXY_STATS_PORT"]),
        int(haproxy["RAY_SERVE_HAPROXY_METRICS_PORT"]),
    }
    assert expected <= ports, f"not listed by ss: {sorted(expected - ports)}"
    assert all(verdicts[port] == "loopback" for port in expected)
    assert not open_ports, [item for item in found if item.port in open_ports]


def test_gateway_ports_refuse_requests_without_a_key(head: Head) -> None:
    body = {"instances": [{"income": 52000.0, "debt_ratio": 0.3, "region": "north"}]}
    path = "/v1/models/loans/predict"
    # HAProxy's port, and the gateway replica's own (direct ingress) HTTP port behind it;
    # the replica's other ports speak gRPC, not HTTP.
    gateway = [
        item.port
        for item in listeners(set(cluster.session_processes(head.state["pid"])))
        if "Gateway" in item.process
    ]
    answered = {}
    for port in [head.gateway_port, *gateway]:
        try:
            r = httpx.post(f"http://127.0.0.1:{port}{path}", json=body, timeout=30)
        except httpx.TransportError:
            continue
        answered[port] = r.status_code
    print(f"exposure: HTTP ports of the gateway without a key -> {answered}")
    assert head.gateway_port in answered and len(answered) >= 2
    assert set(answered.values()) == {401}


def test_ray_token_auth_is_on_and_a_job_without_the_token_is_refused(
    head: Head, tmp_path: Path
) -> None:
    jobs = f"{head.state['dashboard_url']}/api/jobs/"
    entrypoint = f"echo exposure-{secrets.token_hex(4)}"
    refused = httpx.post(jobs, json={"entrypoint": entrypoint}, timeout=30)
    wrong = httpx.post(
        jobs,
        json={"entrypoint": entrypoint},
        headers={"Authorization": "Bearer not-the-token"},
        timeout=30,
    )
    listed = httpx.get(jobs, headers={"Authorization": f"Bearer {head.token}"}, timeout=30)
    print(
        f"exposure: job without token -> {refused.status_code}, wrong token -> "
        f"{wrong.status_code}, job list with the token -> {listed.status_code}"
    )
    assert refused.status_code in (401, 403) and wrong.status_code in (401, 403)
    assert listed.status_code == 200, listed.text[:300]
    assert entrypoint not in listed.text  # nothing was queued

    # A user who turns token auth off gets a clear refusal, not an open head.
    open_env = {**head.env, "RAY_AUTH_MODE": "disabled", "MLFLEET_HOME": str(tmp_path / "h")}
    no = run_cli(["serve", "up", "--specs", str(tmp_path), "--port", str(free_port())], open_env)
    assert no.returncode != 0, no.stderr[-2000:]
    last = no.stderr.strip().splitlines()[-1]
    assert last.startswith("error: RAY_AUTH_MODE=disabled") and "Traceback" not in no.stderr
    assert not (tmp_path / "h" / "cluster" / "head.json").exists()
