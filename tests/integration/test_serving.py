"""The fleet on Ray Serve over real HTTP on 127.0.0.1: routes, status codes, auth,
multiplexing, batching, and promotion/rollback under load."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mlfleet import registry
from mlfleet.settings import Settings, get_settings
from mlfleet.spec import load_spec
from mlfleet.training.run import train
from tests.support.fleet import (
    DUMMY,
    LOGREG,
    Model,
    api_key,
    loans_spec,
    serving,
    train_fleet,
    write_loans_fleet,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.ray

PREDICT_KEY, ADMIN_KEY = "mlf_test_predict_key", "mlf_test_admin_key"
GOOD_ROW = {"income": 30000.0, "debt_ratio": 2.5, "region": "North"}


FLEET: dict[str, Model] = {
    "loan-a": (*LOGREG, "pool"),
    "loan-b": (*DUMMY, "pool"),
    "loan-c": ("sklearn.tree.DecisionTreeClassifier", {"max_depth": 3}, "pool"),
    "loan-fast": (*LOGREG, "dedicated"),
}


@pytest.fixture(scope="module")
def fleet_settings(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    root = tmp_path_factory.mktemp("fleet")
    write_loans_fleet(root, FLEET, rows=600, seed=3)
    keys = [api_key("app", PREDICT_KEY, "predict"), api_key("ops", ADMIN_KEY, "predict", "admin")]
    # Under load the gateway answers a model it holds whose predictions there stay under the
    # budget: a loans pipeline on this busy test machine takes ~5 ms, the default budget.
    settings = get_settings(
        home=root / "home",
        api_keys=keys,
        max_request_bytes=4096,
        alias_refresh_seconds=0.5,
        gateway_inline_under_load_ms=50,
    )
    return settings, root


@pytest.fixture(scope="module")
def gateway(ray_session: None, fleet_settings: tuple[Settings, Path]) -> Iterator[str]:
    settings, root = fleet_settings
    train_fleet(settings, root / "specs", FLEET)
    # A second loan-fast version that does not beat the champion: promoted by hand later.
    weak = root / "weak.yaml"
    weak.write_text(
        yaml.safe_dump(
            {
                **loans_spec("loan-fast", *DUMMY, "dedicated"),
                "contract": "specs/contract.yaml",
                "sources": ["specs/loans.csv"],
            }
        )
    )
    assert not train(load_spec(weak), settings).promoted

    with serving(settings, root / "specs") as url:
        yield url


def auth(key: str = PREDICT_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def predict(client: httpx.Client, name: str, body: Any, **headers: str) -> httpx.Response:
    return client.post(f"/v1/models/{name}/predict", json=body, headers={**auth(), **headers})


@pytest.fixture()
def client(gateway: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway, timeout=60) as c:
        yield c


def test_health_readiness_and_docs(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz", headers=auth())
    assert ready.status_code == 200, ready.text
    assert set(ready.json()["models"]) == set(FLEET)
    assert client.get("/readyz").json() == {"ready": True}  # no key: no model list
    openapi = client.get("/openapi.json").json()
    assert "/v1/models/{name}/predict" in openapi["paths"]
    assert client.get("/docs").status_code == 200


def test_every_model_predicts_through_one_endpoint(client: httpx.Client) -> None:
    for name in FLEET:
        r = predict(client, name, {"instances": [GOOD_ROW, {**GOOD_ROW, "debt_ratio": 0.1}]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == name and body["version"] == "1"
        assert len(body["predictions"]) == 2 and set(body["predictions"]) <= {"yes", "no"}
        assert len(body["probabilities"]) == 2 and body["request_id"]
        assert sorted(body["classes"]) == ["no", "yes"]


def test_mlflow_payload_shapes_and_pinned_version(client: httpx.Client) -> None:
    records = predict(client, "loan-a", {"dataframe_records": [GOOD_ROW]})
    split = predict(
        client,
        "loan-a",
        {"dataframe_split": {"columns": list(GOOD_ROW), "data": [list(GOOD_ROW.values())]}},
    )
    assert records.status_code == split.status_code == 200
    assert records.json()["predictions"] == split.json()["predictions"]
    pinned = predict(client, "loan-fast", {"instances": [GOOD_ROW]}, **{"X-Model-Version": "2"})
    assert pinned.status_code == 200 and pinned.json()["version"] == "2"
    missing = predict(client, "loan-fast", {"instances": [GOOD_ROW]}, **{"X-Model-Version": "9"})
    assert missing.status_code == 404


def test_model_listing_and_description(client: httpx.Client) -> None:
    models = {m["name"]: m for m in client.get("/v1/models", headers=auth()).json()["models"]}
    assert set(models) == set(FLEET)
    assert models["loan-fast"]["serving_mode"] == "dedicated"
    assert models["loan-a"]["serving_mode"] == "pool"
    assert models["loan-a"]["replicas"] >= 1
    assert [c["name"] for c in models["loan-a"]["columns"]] == ["income", "debt_ratio", "region"]
    assert models["loan-a"]["dataset_version"]
    one = client.get("/v1/models/loan-a", headers=auth()).json()
    assert one["contract"]["name"] == "loans"
    assert "accuracy" in one["metrics"]
    assert one["lineage"]["dataset_version"] == models["loan-a"]["dataset_version"]


def raw(
    client: httpx.Client, name: str, content: bytes, content_type: str = "application/json"
) -> httpx.Response:
    return client.post(
        f"/v1/models/{name}/predict",
        content=content,
        headers={**auth(), "Content-Type": content_type},
    )


@pytest.mark.parametrize(
    ("name", "body", "content_type", "status", "needle"),
    [
        ("no-such-model", b'{"instances": [{}]}', "application/json", 404, "unknown model"),
        ("Bad..Name", b'{"instances": [{}]}', "application/json", 404, "unknown model"),
        ("loan-a", b'{"instances": [', "application/json", 400, "not valid JSON"),
        ("loan-a", b'{"instances": []}', "text/plain", 415, "Content-Type"),
        (
            "loan-a",
            b'{"instances": [' + b'{"income": 1.0},' * 400 + b"{}]}",
            "application/json",
            413,
            "over 4096 bytes",
        ),
        (
            "loan-a",
            b'{"instances": [{"income": 1.0, "region": "north"}]}',
            "application/json",
            422,
            "row 0, field 'debt_ratio': a value is required",
        ),
        (
            "loan-a",
            b'{"instances": [{"income": "lots", "debt_ratio": 1, "region": "north"}]}',
            "application/json",
            422,
            "row 0, field 'income': expected a finite number",
        ),
        (
            "loan-a",
            b'{"instances": [{"income": Infinity, "debt_ratio": 1, "region": "north"}]}',
            "application/json",
            422,
            "row 0, field 'income': expected a finite number",
        ),
        (  # a NaN number is a missing value, as in a training file: debt_ratio needs one
            "loan-a",
            b'{"instances": [{"income": 1, "debt_ratio": NaN, "region": "north"}]}',
            "application/json",
            422,
            "row 0, field 'debt_ratio': a value is required",
        ),
        (
            "loan-a",
            b'{"instances": [{"income": 1, "debt_ratio": null, "region": "north"}]}',
            "application/json",
            422,
            "row 0, field 'debt_ratio'",
        ),
        (
            "loan-a",
            b'{"instances": [{"income": 1, "debt_ratio": 1, "region": "mars"}]}',
            "application/json",
            422,
            "not one of the allowed values",
        ),
        (
            "loan-a",
            b'{"instances": [{"income": 1, "debt_ratio": 1, "region": "west", "x": 1}]}',
            "application/json",
            422,
            "row 0: unknown field 'x'",
        ),
        ("loan-a", b'{"rows": []}', "application/json", 422, "rows"),
        ("loan-a", b"[1, 2]", "application/json", 422, "JSON object"),
    ],
)
def test_bad_requests_get_a_clear_envelope(
    client: httpx.Client, name: str, body: bytes, content_type: str, status: int, needle: str
) -> None:
    r = raw(client, name, body, content_type)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert needle in error["message"] and error["code"]
    assert "Traceback" not in r.text and "lots" not in error["message"]


def test_service_survives_bad_requests(client: httpx.Client) -> None:
    for junk in (b"\xff\xfe", b"{" * 2000, b'{"instances": [[1, 2]]}', b'{"instances": {}}'):
        assert 400 <= raw(client, "loan-b", junk).status_code < 500
    assert client.get("/healthz").status_code == 200
    assert predict(client, "loan-b", {"instances": [GOOD_ROW]}).status_code == 200


def test_auth_scopes(client: httpx.Client) -> None:
    url = "/v1/models/loan-a/predict"
    assert client.post(url, json={"instances": [GOOD_ROW]}).status_code == 401
    assert (
        client.post(url, json={"instances": [GOOD_ROW]}, headers=auth("mlf_wrong")).status_code
        == 401
    )
    assert (
        client.post(
            url, json={"instances": [GOOD_ROW]}, headers={"X-API-Key": PREDICT_KEY}
        ).status_code
        == 200
    )
    assert client.get("/v1/models").status_code == 401
    forbidden = client.post("/v1/models/loan-a/rollback", headers=auth())
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden"
    conflict = client.post("/v1/models/loan-a/rollback", headers=auth(ADMIN_KEY))
    assert conflict.status_code == 409  # only one champion so far
    assert (
        client.post(
            "/v1/models/loan-a/promote", json={"version": "7"}, headers=auth(ADMIN_KEY)
        ).status_code
        == 404
    )


def test_dedicated_model_batches_concurrent_requests(gateway: str) -> None:
    from ray import serve

    async def burst() -> list[tuple[int, str]]:
        async with httpx.AsyncClient(base_url=gateway, timeout=60) as c:
            rs = await asyncio.gather(
                *[
                    c.post(
                        "/v1/models/loan-fast/predict",
                        json={"instances": [GOOD_ROW]},
                        headers=auth(),
                    )
                    for _ in range(48)
                ]
            )
            return [(r.status_code, r.headers.get("x-served-by", "")) for r in rs]

    statuses, served_by = zip(*asyncio.run(burst()), strict=True)
    assert statuses == (200,) * 48
    # Under load the gateway forwards rather than predicting in its own event loop.
    assert served_by.count("dedicated") >= 40, served_by
    handle = serve.get_deployment_handle("Dedicated-loan-fast", app_name="fleet")
    stats = handle.stats.remote().result()
    assert stats["largest_batch"] > 1


def test_the_gateway_answers_a_small_pool_model_itself_even_under_load_with_the_same_result(
    client: httpx.Client, gateway: str
) -> None:
    rows = {"instances": [GOOD_ROW, {**GOOD_ROW, "region": "west", "debt_ratio": 0.2}]}
    answers: list[tuple[str, dict[str, Any]]] = []

    def answered_by_the_gateway() -> bool:
        r = predict(client, "loan-c", rows)
        assert r.status_code == 200, r.text
        answers.append((r.headers["x-served-by"], r.json()))
        return answers[-1][0] == "gateway"

    # No other test asks for loan-c. The gateway loads its copy in the background, off the
    # request path, the first time the version is asked for, and says nothing when it is
    # done: meanwhile the pool answers.
    wait_for(answered_by_the_gateway, timeout=30, what="the gateway answering itself")
    assert answers[0][0] == "pool", answers[0]
    pooled, inline = answers[0][1], answers[-1][1]
    assert pooled["version"] == inline["version"] == "1"
    assert pooled["predictions"] == inline["predictions"]
    assert pooled["probabilities"] == inline["probabilities"]

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gateway, timeout=60) as c:
            return await asyncio.gather(
                *[c.post("/v1/models/loan-c/predict", json=rows, headers=auth()) for _ in range(32)]
            )

    # 32 at once: the model's predictions stay under the budget (the fixture's
    # gateway_inline_under_load_ms), so the gateway answers them all itself. (With a second
    # gateway replica, which holds no copy yet, some would go to the pool.)
    from ray import serve

    gateways = serve.status().applications["fleet"].deployments["Gateway"].replica_states
    assert gateways == {"RUNNING": 1}, gateways
    burst_answers = asyncio.run(burst())
    assert [r.status_code for r in burst_answers] == [200] * 32
    served = [r.headers["x-served-by"] for r in burst_answers]
    held = serve.get_deployment_handle("Gateway", app_name="fleet").inline_stats.remote().result()
    assert served == ["gateway"] * 32, held
    # Every one it answered was measured: the set-up-paying first one aside, up to 9 kept.
    assert [(h["model"], h["samples"]) for h in held if h["model"] == "loan-c"] == [("loan-c", 9)]
    assert all(r.json()["predictions"] == inline["predictions"] for r in burst_answers)


class Responses:
    """What a load thread was answered, with a condition to wait on instead of sleeping."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.versions: list[str] = []
        self.changed = threading.Condition()

    def add(self, response: httpx.Response) -> None:
        with self.changed:
            self.statuses.append(response.status_code)
            if response.status_code == 200:
                self.versions.append(response.json()["version"])
            self.changed.notify_all()

    def count(self) -> int:
        with self.changed:
            return len(self.versions)

    def wait(self, predicate: Callable[[list[str]], bool], what: str) -> None:
        """Block until ``predicate(versions)`` holds (at most 30 s)."""
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(self.versions), timeout=30), what


def test_promotion_and_rollback_under_load(client: httpx.Client, gateway: str) -> None:
    seen = Responses()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=gateway, timeout=60) as c:
            while not stop.is_set():
                seen.add(
                    c.post(
                        "/v1/models/loan-fast/predict",
                        json={"instances": [GOOD_ROW]},
                        headers=auth(),
                    )
                )

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        seen.wait(lambda v: v.count("1") >= 5, "the load never got answers from v1")
        promoted = client.post(
            "/v1/models/loan-fast/promote", json={"version": "2"}, headers=auth(ADMIN_KEY)
        )
        assert promoted.status_code == 200, promoted.text
        assert promoted.json() == {"model": "loan-fast", "champion": "2"}
        seen.wait(lambda v: "2" in v, "no answer from v2 after the promotion")
        rolled = client.post("/v1/models/loan-fast/rollback", headers=auth(ADMIN_KEY))
        assert rolled.status_code == 200 and rolled.json()["champion"] == "1"
        mark = seen.count()
        # Rolled back for good: the last few answers, all after the rollback, come from v1.
        seen.wait(
            lambda v: len(v) >= mark + 5 and set(v[-5:]) == {"1"},
            "v1 did not take over again after the rollback",
        )
    finally:
        stop.set()
        thread.join(timeout=30)
    assert seen.statuses and all(s == 200 for s in seen.statuses), sorted(set(seen.statuses))
    assert "2" in seen.versions and seen.versions[-1] == "1"
    assert registry.alias_version("loan-fast", "champion").version == "1"


def listed_champions(client: httpx.Client) -> dict[str, str | None]:
    r = client.get("/v1/models", headers=auth())
    assert r.status_code == 200, r.text
    return {m["name"]: m["champion"] for m in r.json()["models"]}


def wait_for_listed_champion(client: httpx.Client, name: str, version: str) -> None:
    # The gateway refreshes its listing on a timer and signals nothing: ask until it shows.
    wait_for(
        lambda: listed_champions(client)[name] == version,
        timeout=30,
        what=f"/v1/models listing {name} v{version}",
    )


def test_model_listing_is_cached_yet_follows_the_registry(client: httpx.Client) -> None:
    before = listed_champions(client)["loan-fast"]
    assert before == "1"  # version 2 exists and was never promoted by training
    admin = auth(ADMIN_KEY)
    promoted = client.post("/v1/models/loan-fast/promote", json={"version": "2"}, headers=admin)
    assert promoted.status_code == 200, promoted.text
    # The replica that promoted lists the new champion at once (one gateway replica here).
    assert listed_champions(client)["loan-fast"] == "2"
    ready = client.get("/readyz", headers=auth())  # a moved champion is checked at once
    assert ready.status_code == 200 and ready.json()["models"]["loan-fast"]["version"] == "2"
    rolled = client.post("/v1/models/loan-fast/rollback", headers=admin)
    assert rolled.status_code == 200 and rolled.json()["champion"] == before
    assert listed_champions(client)["loan-fast"] == before
    # A promotion made beside the gateway reaches its listing with the alias refresh.
    registry.promote("loan-fast", "2")
    try:
        wait_for_listed_champion(client, "loan-fast", "2")
    finally:
        registry.rollback("loan-fast")
    wait_for_listed_champion(client, "loan-fast", before)
