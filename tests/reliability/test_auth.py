"""Suite case 6, auth: every route but /healthz and /readyz refuses a missing or wrong key,
predict keys cannot promote or roll back, the key is checked before any body is read,
keys never reach the logs, and a gateway without keys serves this machine only."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlfleet.serving.auth import ADMIN_HEADER
from mlfleet.settings import Settings, get_settings
from tests.support.fleet import DUMMY, Model, api_key, serving, train_fleet, write_loans_fleet

pytestmark = pytest.mark.ray

PREDICT_KEY = "mlf_auth_predict_Q7v2ZkX9"
ADMIN_KEY = "mlf_auth_admin_Lr84TnW3"
WRONG_KEY = "mlf_auth_wrong_Hd51PqY6"
MODEL = "loan-auth"
FLEET: dict[str, Model] = {MODEL: (*DUMMY, "pool")}
GOOD_ROW = {"income": 30000.0, "debt_ratio": 2.5, "region": "North"}
OPEN = {"/healthz", "/readyz"}
BODIES: dict[str, Any] = {
    "predict": {"instances": [GOOD_ROW]},
    "promote": {"version": "1"},
    "feedback": {"labels": [{"request_id": "r1", "label": "yes"}]},
}


@pytest.fixture(scope="module")
def fleet(
    ray_session: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Settings, Path]]:
    root = tmp_path_factory.mktemp("auth")
    write_loans_fleet(root, FLEET, rows=300, seed=13)
    keys = [api_key("app", PREDICT_KEY, "predict"), api_key("ops", ADMIN_KEY, "predict", "admin")]
    settings = get_settings(home=root / "home", api_keys=keys)
    train_fleet(settings, root / "specs", FLEET)
    with serving(settings, root / "specs") as url:
        yield url, settings, root


def _routes(url: str) -> list[tuple[str, str, Any]]:
    """Every (method, path, body) the live OpenAPI document lists, for the test model."""
    paths = httpx.get(f"{url}/openapi.json", timeout=30).json()["paths"]
    out = []
    for path, operations in paths.items():
        for method in operations:
            last = path.rsplit("/", 1)[-1]
            out.append((method.upper(), path.replace("{name}", MODEL), BODIES.get(last)))
    return out


def test_every_route_but_health_refuses_a_missing_or_wrong_key(fleet: Any) -> None:
    url = fleet[0]
    routes = _routes(url)
    keyed = [r for r in routes if r[1] not in OPEN]
    assert len(keyed) >= 8, routes
    with httpx.Client(base_url=url, timeout=60) as client:
        for method, path, body in keyed:
            for headers in (
                {},
                {"Authorization": f"Bearer {WRONG_KEY}"},
                {"X-API-Key": WRONG_KEY},
                {"Authorization": f"Basic {PREDICT_KEY}"},
                {"Authorization": "Bearer"},
            ):
                r = client.request(method, path, json=body, headers=headers)
                assert r.status_code == 401, (method, path, headers, r.text)
                assert r.json()["error"]["code"] == "unauthorized"
        assert client.get("/healthz").status_code == 200
        bare = client.get("/readyz")
        assert bare.status_code == 200 and bare.json() == {"ready": True}, bare.text
        wrong = client.get("/readyz", headers={"X-API-Key": WRONG_KEY}).json()
        assert wrong == {"ready": True}
        detailed = client.get("/readyz", headers={"X-API-Key": PREDICT_KEY}).json()
        assert detailed["models"][MODEL]["ready"] is True
    print(f"auth: {len(keyed)} keyed routes x 5 bad credentials -> 401; /readyz bare = boolean")


def test_predict_keys_cannot_promote_or_roll_back(fleet: Any) -> None:
    url = fleet[0]
    predict = {"Authorization": f"Bearer {PREDICT_KEY}"}
    admin = {"X-API-Key": ADMIN_KEY}
    with httpx.Client(base_url=url, timeout=60) as client:
        ok = client.post(f"/v1/models/{MODEL}/predict", json=BODIES["predict"], headers=predict)
        assert ok.status_code == 200, ok.text
        for path, body in (
            (f"/v1/models/{MODEL}/promote", {"version": "1"}),
            (f"/v1/models/{MODEL}/rollback", None),
        ):
            r = client.post(path, json=body, headers=predict)
            assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
        # The key is checked before the body is read: a body that cannot be parsed still
        # gets 401/403, not 400.
        junk = {"Content-Type": "application/json"}
        for headers, status in (({}, 401), (predict, 403)):
            r = client.post(
                f"/v1/models/{MODEL}/promote", content=b"{not json", headers={**junk, **headers}
            )
            assert r.status_code == status, r.text
        r = client.post(f"/v1/models/{MODEL}/predict", content=b"{not json", headers=junk)
        assert r.status_code == 401, r.text
        # The admin key can (one version only: nothing to roll back to, 409).
        assert client.post(f"/v1/models/{MODEL}/rollback", headers=admin).status_code == 409
        promoted = client.post(f"/v1/models/{MODEL}/promote", json={"version": "1"}, headers=admin)
        assert promoted.status_code == 200, promoted.text


def test_keys_never_reach_the_logs(fleet: Any) -> None:
    import ray

    url = fleet[0]
    with httpx.Client(base_url=url, timeout=60) as client:  # errors too: they log the most
        for key in (PREDICT_KEY, ADMIN_KEY, WRONG_KEY):
            for headers in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
                client.post(f"/v1/models/{MODEL}/predict", json=BODIES["predict"], headers=headers)
                client.post(f"/v1/models/{MODEL}/predict", content=b"[", headers=headers)
                client.get("/v1/models/nope", headers=headers)
    node = ray._private.worker._global_node  # this test session's embedded Ray
    assert node is not None
    session = Path(node.get_session_dir_path())
    logs = [p for p in session.rglob("*") if p.is_file() and p.stat().st_size < (256 << 20)]
    assert any("serve" in str(p) for p in logs), "no Serve logs found to search"
    pattern = re.compile(
        "|".join(
            re.escape(k.encode().decode()) for k in (PREDICT_KEY, ADMIN_KEY, WRONG_KEY)
        ).encode()
    )
    leaked = [str(p) for p in logs if pattern.search(p.read_bytes())]
    assert not leaked, f"a key appears in {leaked}"
    print(f"keys in logs: 0 of {len(logs)} files under the Ray session hold a key")


# --- keyless mode: the same fleet redeployed without keys (last: it replaces the above) ---


@pytest.fixture(scope="module")
def keyless(fleet: tuple[str, Settings, Path]) -> str:
    from ray import serve

    from mlfleet.serving.app import FleetArgs, build_fleet

    url, settings, root = fleet
    open_settings = settings.model_copy(update={"api_keys": []})
    serve.run(
        build_fleet(
            FleetArgs(specs_dir=str(root / "specs"), gateway_max_replicas=1, pool_max_replicas=1),
            open_settings,
        ),
        name="fleet",
        route_prefix="/",
    )
    return url


def test_keyless_gateway_serves_loopback_clients_only(keyless: str) -> None:
    with httpx.Client(base_url=keyless, timeout=60) as client:
        local = client.post(f"/v1/models/{MODEL}/predict", json=BODIES["predict"])
        assert local.status_code == 200, local.text
        assert set(client.get("/readyz").json()["models"]) == {MODEL}
        # A client on another machine, as Serve's HTTP server records it: it trusts
        # X-Forwarded-For from a loopback peer (a local reverse proxy), so this is what the
        # gateway sees when a proxy on this machine forwards a remote client.
        refused = 0
        for remote in ("203.0.113.9", "10.1.2.3", "::ffff:192.0.2.1", "2001:db8::1"):
            for method, path in (
                ("GET", "/healthz"),
                ("GET", "/v1/models"),
                ("POST", f"/v1/models/{MODEL}/predict"),
            ):
                r = client.request(
                    method, path, json=BODIES["predict"], headers={"X-Forwarded-For": remote}
                )
                assert r.status_code == 403, (remote, path, r.text)
                assert "loopback" in r.json()["error"]["message"]
                refused += 1
        # DNS rebinding: a page whose name now points at 127.0.0.1 still sends its name.
        r = client.get("/v1/models", headers={"Host": "attacker.example"})
        assert r.status_code == 403, r.text
        assert client.get("/v1/models", headers={"Host": "localhost:1"}).status_code == 200
    print(f"keyless: loopback served, {refused} forwarded non-loopback requests refused (403)")


def test_keyless_admin_routes_need_the_admin_header(keyless: str) -> None:
    with httpx.Client(base_url=keyless, timeout=60) as client:
        # What a cross-origin page can send without a preflight: a bodiless POST, or a
        # form post. Neither carries the header.
        for body, headers in ((None, {}), (b"version=1", {"Content-Type": "text/plain"})):
            for action in ("rollback", "promote"):
                r = client.post(
                    f"/v1/models/{MODEL}/{action}",
                    content=body,
                    headers={"Origin": "https://attacker.example", **headers},
                )
                assert r.status_code == 403, r.text
                assert ADMIN_HEADER in r.json()["error"]["message"]
                assert "access-control-allow-origin" not in r.headers
        # A preflight is never granted, so a browser never sends the header cross-origin.
        pre = client.options(
            f"/v1/models/{MODEL}/rollback",
            headers={
                "Origin": "https://attacker.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": ADMIN_HEADER,
            },
        )
        assert pre.status_code == 405 and "access-control-allow-origin" not in pre.headers
        ok = client.post(f"/v1/models/{MODEL}/rollback", headers={ADMIN_HEADER: "1"})
        assert ok.status_code == 409, ok.text  # allowed; nothing to roll back to
        ok = client.post(
            f"/v1/models/{MODEL}/promote", json={"version": "1"}, headers={ADMIN_HEADER: "1"}
        )
        assert ok.status_code == 200, ok.text
