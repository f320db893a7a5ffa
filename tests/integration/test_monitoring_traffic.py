"""Monitoring through the real gateway on the session's Ray: every prediction site records,
the feedback and monitoring routes (bodies, status codes, auth), a shifted stream turning
its model to ``drift`` while an unshifted one stays ``ok``, and labels joining predictions
whichever path answered them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from mlfleet.settings import Settings, get_settings
from tests.support.fleet import (
    LOGREG,
    Model,
    api_key,
    predict_all,
    rows_of,
    serving,
    stop_monitor,
    train_fleet,
    write_loans_fleet,
)
from tests.support.messy import loans_frame
from tests.support.waiting import wait_for

pytestmark = pytest.mark.ray

KEY, OTHER_KEY = "mlf_monitor_predict_key", "mlf_monitor_admin_only"
FLEET: dict[str, Model] = {
    "mon-shift": (*LOGREG, "pool"),
    "mon-steady": (*LOGREG, "pool"),
    "mon-dedicated": (*LOGREG, "dedicated"),
}
GATEWAY, POOL = "Gateway", "ModelPool"


@pytest.fixture(scope="module")
def fleet_settings(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    root = tmp_path_factory.mktemp("monitored-fleet")
    write_loans_fleet(root, FLEET, rows=1600, seed=11)
    keys = [api_key("app", KEY, "predict"), api_key("ops", OTHER_KEY, "admin")]
    settings = get_settings(
        home=root / "home",
        api_keys=keys,
        max_request_bytes=8192,
        alias_refresh_seconds=0.5,
        monitor_flush_seconds=0.3,
        monitor_evaluate_seconds=2.0,
    )
    return settings, root


@pytest.fixture(scope="module")
def gateway(ray_session: None, fleet_settings: tuple[Settings, Path]) -> Iterator[str]:
    settings, root = fleet_settings
    train_fleet(settings, root / "specs", FLEET)
    stop_monitor()
    with serving(settings, root / "specs") as url:
        yield url
    stop_monitor()


@pytest.fixture(scope="module")
def monitor(gateway: str, fleet_settings: tuple[Settings, Path]) -> Iterator[None]:
    """The monitor actor, started for this fleet's settings (needs monitoring.actor)."""
    actor = pytest.importorskip("mlfleet.monitoring.actor")
    settings, root = fleet_settings
    stop_monitor()
    actor.ensure_monitor(settings, specs_dir=root / "specs")
    yield
    stop_monitor()


@pytest.fixture()
def client(gateway: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=gateway, timeout=60, headers={"Authorization": f"Bearer {KEY}"}
    ) as c:
        yield c


def sender_stats(deployment: str) -> dict[str, Any]:
    from ray import serve

    return serve.get_deployment_handle(deployment, app_name="fleet").sender_stats.remote().result()


def test_the_monitoring_routes_are_documented(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    paths = document["paths"]
    feedback = paths["/v1/models/{name}/feedback"]["post"]
    body = feedback["requestBody"]["content"]["application/json"]["schema"]
    schema = document["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    assert "labels" in schema["properties"] and {"404", "503"} <= set(feedback["responses"])
    assert "get" in paths["/v1/monitoring"] and "get" in paths["/v1/monitoring/{name}"]
    assert "/v1/models/{name}/predict" in paths  # every earlier route stays


@pytest.mark.parametrize(
    ("body", "content_type", "status", "needle"),
    [
        (b'{"labels": []}', "application/json", 422, "labels"),
        (b'{"labels": [{"label": "yes"}]}', "application/json", 422, "request_id"),
        (b'{"labels": [{"request_id": "r", "label": {"a": 1}}]}', "application/json", 422, "label"),
        (
            b'{"labels": [{"request_id": "r", "label": "yes", "row": -1}]}',
            "application/json",
            422,
            "row",
        ),
        (
            b'{"labels": [{"request_id": "r", "label": "yes", "x": 1}]}',
            "application/json",
            422,
            "x",
        ),
        (b'{"rows": []}', "application/json", 422, "labels"),
        (b"[1]", "application/json", 422, "JSON object"),
        (b'{"labels": [', "application/json", 400, "not valid JSON"),
        (b'{"labels": []}', "text/plain", 415, "Content-Type"),
        (
            b'{"labels": [' + b'{"request_id": "r", "label": "yes"},' * 300 + b"{}]}",
            "application/json",
            413,
            "over 8192 bytes",
        ),
    ],
)
def test_feedback_bodies_are_checked_before_anything_else(
    client: httpx.Client, body: bytes, content_type: str, status: int, needle: str
) -> None:
    r = client.post(
        "/v1/models/mon-steady/feedback", content=body, headers={"Content-Type": content_type}
    )
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"] and "Traceback" not in r.text


def test_monitoring_routes_need_a_predict_key_and_a_known_model(gateway: str) -> None:
    good = {"labels": [{"request_id": "r1", "label": "yes"}]}
    with httpx.Client(base_url=gateway, timeout=60) as anonymous:
        assert anonymous.get("/v1/monitoring").status_code == 401
        assert anonymous.get("/v1/monitoring/mon-steady").status_code == 401
        assert anonymous.post("/v1/models/mon-steady/feedback", json=good).status_code == 401
        admin_only = {"Authorization": f"Bearer {OTHER_KEY}"}
        r = anonymous.get("/v1/monitoring", headers=admin_only)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        predict_key = {"Authorization": f"Bearer {KEY}"}
        for url in (
            "/v1/monitoring/no-such-model",
            "/v1/monitoring/Bad..Name",
            "/v1/monitoring/mon-steady?version=latest",
        ):
            assert anonymous.get(url, headers=predict_key).status_code == 404
        r = anonymous.post("/v1/models/no-such-model/feedback", json=good, headers=predict_key)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_without_a_monitor_the_routes_answer_503_and_predictions_go_on(
    client: httpx.Client,
) -> None:
    stop_monitor()
    for r in (
        client.get("/v1/monitoring"),
        client.get("/v1/monitoring/mon-steady"),
        client.post(
            "/v1/models/mon-steady/feedback",
            json={"labels": [{"request_id": "r1", "label": "yes"}]},
        ),
    ):
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "monitor_unavailable"
    rows = rows_of(loans_frame(30, seed=2))
    assert len(predict_all(client, "mon-steady", rows)) == 3  # serving does not notice


def test_every_prediction_site_counts_what_it_predicted_and_the_gateway_logs_all(
    client: httpx.Client,
) -> None:
    sites = (GATEWAY, POOL, "Dedicated-mon-dedicated")
    wait_for(
        lambda: all(sender_stats(d)["buffered_rows"] == 0 for d in sites),
        timeout=30,
        what="earlier predictions to be binned",
    )
    before = {d: sender_stats(d) for d in sites}
    rows = rows_of(loans_frame(40, seed=3))
    answers = predict_all(client, "mon-steady", rows, per_request=4)
    answers += predict_all(client, "mon-dedicated", rows, per_request=4)
    served = {a["served_by"] for a in answers}
    assert served <= {"gateway", "pool", "dedicated"}

    def grown(deployment: str, key: str) -> int:
        return int(sender_stats(deployment)[key] - before[deployment][key])

    # Each row counted exactly once, where it was predicted; every row logged by the gateway.
    def counted() -> dict[str, int]:
        return {d: grown(d, "counted_rows") for d in sites}

    wait_for(
        lambda: sum(counted().values()) == 2 * len(rows),
        timeout=30,
        what=f"every predicted row to be counted ({2 * len(rows)} rows)",
    )
    assert sum(counted().values()) == 2 * len(rows), counted()
    wait_for(
        lambda: grown(GATEWAY, "logged_rows") == 2 * len(rows), timeout=30, what="every row logged"
    )
    ids = [s["sender"] for s in (sender_stats(GATEWAY), sender_stats(POOL))]
    assert len(set(ids)) == 2 and ids[0].startswith("gateway-") and ids[1].startswith("pool-")


def test_replicas_freeze_what_their_model_loads_imported(
    client: httpx.Client, monitor: None
) -> None:
    """After serving, the gateway and the pool froze the modules their first loads imported
    (serving.heap), so their full collections no longer walk them."""
    from ray import serve

    rows = rows_of(loans_frame(4, seed=5))
    predict_all(client, "mon-steady", rows, per_request=1)
    gateway = serve.get_deployment_handle(GATEWAY, app_name="fleet").heap_stats.remote().result()
    pool = serve.get_deployment_handle(POOL, app_name="fleet").load_stats.remote().result()
    for site, heap in (("gateway", gateway), ("pool", pool["heap"])):
        assert heap["settles"] >= 1, (site, heap)
        # Ray froze each replica's start-up heap; the settles froze the loads' imports too.
        assert heap["frozen_objects"] > 50_000, (site, heap)
        assert len(heap["full_collection_ms"]) >= heap["settles"], (site, heap)  # timed


def status_of(client: httpx.Client, name: str) -> dict[str, Any] | None:
    r = client.get("/v1/monitoring")
    if r.status_code != 200:
        return None
    for entry in r.json()["models"]:
        if entry.get("model", entry.get("name")) == name:
            return dict(entry)
    return None


def test_a_shifted_stream_drifts_while_an_unshifted_one_stays_ok(
    monitor: None, client: httpx.Client
) -> None:
    live = loans_frame(1200, seed=12)
    steady = rows_of(live)
    shifted = rows_of(live.assign(debt_ratio=np.clip(live["debt_ratio"] + 1.8, 0, 5)))
    predict_all(client, "mon-shift", shifted, per_request=20)
    predict_all(client, "mon-steady", steady, per_request=20)

    def settled() -> tuple[dict[str, Any], dict[str, Any]] | None:
        a, b = status_of(client, "mon-shift"), status_of(client, "mon-steady")
        if a and b and a.get("status") == "drift" and b.get("status") == "ok":
            return a, b
        return None

    drifted, ok = wait_for(
        settled, timeout=150, what="mon-shift to drift and mon-steady to stay ok"
    )
    assert "debt_ratio" in drifted["drifted_features"]
    assert ok["drifted_features"] == []
    detail = client.get("/v1/monitoring/mon-shift")
    assert detail.status_code == 200, detail.text
    assert "debt_ratio" in detail.text and "reference" in detail.text


def realised_accuracy(entry: dict[str, Any] | None) -> float | None:
    realised = ((entry or {}).get("performance") or {}).get("realised") or {}
    value = realised.get("accuracy")
    return None if value is None else float(value)


def test_labels_join_predictions_whichever_path_answered_them(
    monitor: None, client: httpx.Client, gateway: str
) -> None:
    frame = loans_frame(200, seed=21)
    truth = frame["defaulted"].tolist()
    # The rows carry their key too (a contract column that is not a feature): the gateway
    # checks it and keeps it beside the features, so labelled rows are whole training rows.
    rows = [{**row, "loan_id": 10_000 + i} for i, row in enumerate(rows_of(frame))]
    per = 5
    # One request at a time, until the idle gateway answers one itself (it loads its copy
    # of the model in the background); then the rest at once, which it forwards.
    answers: list[dict[str, Any]] = []
    while len(answers) < 20 and not any(a["served_by"] == "gateway" for a in answers):
        start = per * len(answers)
        answers += predict_all(client, "mon-dedicated", rows[start : start + per], per)
        time.sleep(0.05)
    answers += asyncio.run(burst(gateway, "mon-dedicated", rows[per * len(answers) :], per))
    assert {a["served_by"] for a in answers} == {"gateway", "dedicated"}

    labels, right = [], 0
    for i, answer in enumerate(answers):
        for row, predicted in enumerate(answer["predictions"]):
            label = truth[per * i + row]
            labels.append({"request_id": answer["request_id"], "label": label, "row": row})
            right += predicted == label
    assert len(labels) == len(rows)
    labels.append({"request_id": "never-answered", "label": "yes"})

    matched, unknown, written = 0, [], []
    for start in range(0, len(labels), 50):  # within the gateway's request size limit
        r = client.post(
            "/v1/models/mon-dedicated/feedback", json={"labels": labels[start : start + 50]}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"matched", "unknown", "written"}
        matched += body["matched"]
        unknown += body["unknown"]
        written.append(body["written"])
    assert matched == len(rows) and unknown == ["never-answered"]
    labelled = pd.concat([pd.read_parquet(path) for path in written if path])
    assert sorted(labelled["loan_id"]) == [10_000 + i for i in range(len(rows))]
    by_id = dict(zip(labelled["loan_id"], labelled["defaulted"], strict=True))
    assert [by_id[10_000 + i] for i in range(len(rows))] == truth

    # The status is the last evaluation's: wait for one that has seen every label.
    def realised_over_every_label() -> float | None:
        entry = status_of(client, "mon-dedicated")
        realised = ((entry or {}).get("performance") or {}).get("realised") or {}
        return realised_accuracy(entry) if realised.get("rows") == len(rows) else None

    accuracy = wait_for(
        realised_over_every_label, timeout=120, what="realised accuracy over every label"
    )
    assert accuracy == pytest.approx(right / len(rows), abs=1e-9)


async def burst(
    gateway: str, name: str, rows: list[dict[str, Any]], per_request: int
) -> list[dict[str, Any]]:
    """All of ``rows`` at once, ``per_request`` rows a request; answers in request order."""
    async with httpx.AsyncClient(
        base_url=gateway, timeout=60, headers={"Authorization": f"Bearer {KEY}"}
    ) as c:
        responses = await asyncio.gather(
            *[
                c.post(
                    f"/v1/models/{name}/predict",
                    json={"instances": rows[start : start + per_request]},
                )
                for start in range(0, len(rows), per_request)
            ]
        )
    out = []
    for r in responses:
        assert r.status_code == 200, r.text
        out.append({**r.json(), "served_by": r.headers["x-served-by"]})
    return out


def test_an_admin_pauses_and_resumes_recording_across_the_fleet(
    monitor: None, client: httpx.Client
) -> None:
    sites = (GATEWAY, POOL, "Dedicated-mon-dedicated")
    admin = {"Authorization": f"Bearer {OTHER_KEY}"}
    url = "/v1/monitoring/recording"
    # Admin scope only, and a strict body.
    assert client.put(url, json={"recording": False}).status_code == 403
    for body, status in (({"recording": "no"}, 422), ({}, 422), ({"recording": 0}, 422)):
        r = client.put(url, json=body, headers=admin)
        assert r.status_code == status and "recording" in r.json()["error"]["message"], r.text
    assert client.get("/v1/monitoring").json()["recording"] is True

    r = client.put(url, json={"recording": False}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["recording"] is False and r.json()["changed"]["by"] == "ops"
    assert client.get("/v1/monitoring").json()["recording"] is False
    rows = rows_of(loans_frame(40, seed=5))
    try:
        # Each site learns of the pause from the acknowledgement of its next flush.
        def all_paused() -> bool:
            predict_all(client, "mon-steady", rows[:8], per_request=4)
            predict_all(client, "mon-dedicated", rows[:8], per_request=4)
            return all(sender_stats(d)["paused"] for d in sites)

        wait_for(all_paused, timeout=30, what="every prediction site to pause")
        page = client.get("/", headers=admin)
        assert page.status_code == 200 and "recording is paused" in page.text, page.text[:500]
        assert "by ops" in page.text
        # What they recorded before they knew is binned and counted at their next flush.
        wait_for(
            lambda: all(sender_stats(d)["buffered_rows"] == 0 for d in sites),
            timeout=30,
            what="rows recorded before the pause to be binned",
        )
        before = {d: sender_stats(d) for d in sites}
        answers = predict_all(client, "mon-steady", rows, per_request=4)
        answers += predict_all(client, "mon-dedicated", rows, per_request=4)
        assert len(answers) == 20  # serving goes on
        time.sleep(1.0)  # > three flush intervals: anything recorded would be binned
        after = {d: sender_stats(d) for d in sites}
        for d in sites:
            assert after[d]["counted_rows"] == before[d]["counted_rows"], d
            assert after[d]["logged_rows"] == before[d]["logged_rows"], d
    finally:
        r = client.put(url, json={"recording": True}, headers=admin)
        assert r.status_code == 200 and r.json()["recording"] is True, r.text

    # Paused senders ask every flush interval: all record again without any traffic first.
    wait_for(
        lambda: not any(sender_stats(d)["paused"] for d in sites),
        timeout=30,
        what="every prediction site to resume",
    )
    before = {d: sender_stats(d) for d in sites}
    predict_all(client, "mon-steady", rows, per_request=4)
    wait_for(
        lambda: sender_stats(GATEWAY)["logged_rows"] - before[GATEWAY]["logged_rows"] == len(rows),
        timeout=30,
        what="the resumed gateway to log every row",
    )
