"""Suite case 5, hostile payloads: every hostile value gets its own 4xx (never a 5xx),
names and versions that try to walk out of the registry never reach it, and a valid
request right after each one succeeds. The schemathesis run is in test_openapi.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlfleet import registry
from mlfleet.settings import get_settings
from tests.support.fleet import DUMMY, Model, api_key, serving, train_fleet, write_loans_fleet

pytestmark = pytest.mark.ray

KEY = "mlf_hostile_key"
MODEL = "loan-h"
FLEET: dict[str, Model] = {MODEL: (*DUMMY, "pool")}
GOOD_ROW = {"income": 30000.0, "debt_ratio": 2.5, "region": "North"}
LIMIT = 64 << 10  # MLFLEET_MAX_REQUEST_BYTES of this fleet
MAX_ROWS = 50  # MLFLEET_MAX_INSTANCES of this fleet


@pytest.fixture(scope="module")
def fleet(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("hostile")
    write_loans_fleet(root, FLEET, rows=300, seed=11)
    settings = get_settings(
        home=root / "home",
        api_keys=[api_key("app", KEY, "predict", "admin")],
        max_request_bytes=LIMIT,
        max_instances=MAX_ROWS,
    )
    train_fleet(settings, root / "specs", FLEET)
    # Outside the registry: a traversal that reached the filesystem would find it here.
    sentinel = root / "sentinel"
    sentinel.mkdir()
    (sentinel / "1").write_text("not a model")
    with serving(settings, root / "specs") as url, httpx.Client(base_url=url, timeout=60) as c:
        c.headers["Authorization"] = f"Bearer {KEY}"
        yield c, settings, root


def _send(client: httpx.Client, path: str, body: bytes, **headers: str) -> httpx.Response:
    return client.post(path, content=body, headers={"Content-Type": "application/json", **headers})


def _assert_4xx(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text[:300]
    error: dict[str, Any] = r.json()["error"]
    assert error["code"] and error["message"]
    if code is not None:
        assert error["code"] == code, error
    assert "Traceback" not in r.text and "/tmp" not in r.text
    return error


def _still_serves(client: httpx.Client) -> None:
    ok = client.post(f"/v1/models/{MODEL}/predict", json={"instances": [GOOD_ROW]})
    assert ok.status_code == 200, ok.text


PREDICT = f"/v1/models/{MODEL}/predict"


def income(value: str) -> bytes:
    """A one-row predict body whose income is the raw JSON ``value``."""
    return (
        '{"instances": [{"income": ' + value + ', "debt_ratio": 1, "region": "north"}]}'
    ).encode()


# (what, body, status, error code, words the message must hold)
BODIES: list[tuple[str, bytes, int, str, str]] = [
    ("bad JSON", b'{"instances": [', 400, "bad_json", "not valid JSON"),
    ("not UTF-8", b'{"instances": ["\xff\xfe"]}', 400, "bad_json", "not valid JSON"),
    ("deep arrays", b"[" * 30_000 + b"]" * 30_000, 400, "bad_json", "deeper than 32"),
    ("deep objects", b'{"a":' * 40 + b"1" + b"}" * 40, 400, "bad_json", "deeper than 32"),
    ("lone surrogate", b'{"instances": [{"region": "\\ud800"}]}', 400, "bad_json", "surrogate"),
    (
        "5000-digit integer",
        income("9" * 5000),
        400,
        "bad_json",
        "not valid JSON",
    ),
    (
        "integer beyond float range",
        income("9" * 400),
        422,
        "invalid_input",
        "expected a finite number",
    ),
    (  # NaN is a missing value, and debt_ratio needs one
        "NaN",
        b'{"instances": [{"income": 1, "debt_ratio": NaN, "region": "north"}]}',
        422,
        "invalid_input",
        "debt_ratio': a value is required",
    ),
    (
        "Infinity",
        income("-Infinity"),
        422,
        "invalid_input",
        "expected a finite number",
    ),
    (
        "1e999",
        income("1e999"),
        422,
        "invalid_input",
        "expected a finite number",
    ),
    (
        "nested value",
        income('[[{"a": 1}]]'),
        422,
        "invalid_input",
        "income",
    ),
    ("no form", b'{"rows": []}', 422, "invalid_input", "exactly one of"),
    (
        "two forms",
        b'{"instances": [{}], "dataframe_records": [{}]}',
        422,
        "invalid_input",
        "exactly one of",
    ),
    ("null form", b'{"instances": null}', 422, "invalid_input", "must not be null"),
    ("no rows", b'{"instances": []}', 422, "invalid_input", "at least 1"),
    ("rows not objects", b'{"instances": [[1, 2]]}', 422, "invalid_input", "instances.0"),
    (
        "split: number columns",
        b'{"dataframe_split": {"columns": [1, 2], "data": [[1, 2]]}}',
        422,
        "invalid_input",
        "columns.0",
    ),
    (
        "split: list columns",
        b'{"dataframe_split": {"columns": [[1]], "data": [[1]]}}',
        422,
        "invalid_input",
        "columns.0",
    ),
    (
        "split: repeated columns",
        b'{"dataframe_split": {"columns": ["income", "income"], "data": [[1, 2]]}}',
        422,
        "invalid_input",
        "unique",
    ),
    (
        "split: ragged rows",
        b'{"dataframe_split": {"columns": ["income", "debt_ratio", "region"], '
        b'"data": [[1, 2, "north"], [1]]}}',
        422,
        "invalid_input",
        "row 1: expected 3 values",
    ),
    (
        "split: data not rows",
        b'{"dataframe_split": {"columns": ["income"], "data": [1]}}',
        422,
        "invalid_input",
        "data.0",
    ),
    ("split: not an object", b'{"dataframe_split": [1]}', 422, "invalid_input", "dataframe_split"),
    (
        "too many rows",
        json.dumps({"instances": [GOOD_ROW] * (MAX_ROWS + 1)}).encode(),
        422,
        "too_many_instances",
        "at most 50",
    ),
    (
        "Unicode field",
        '{"instances": [{"inçome": 1, "debt_ratio": 1, "region": "north"}]}'.encode(),
        422,
        "invalid_input",
        "unknown field",
    ),
]


@pytest.mark.parametrize(
    ("what", "body", "status", "code", "needle"), BODIES, ids=[b[0] for b in BODIES]
)
def test_hostile_bodies_get_their_4xx(
    fleet: Any, what: str, body: bytes, status: int, code: str, needle: str
) -> None:
    client = fleet[0]
    error = _assert_4xx(_send(client, PREDICT, body), status, code)
    assert needle in error["message"], error
    _still_serves(client)
    print(f"hostile body {what!r}: {status} {code}")


def test_large_bodies_are_refused_before_they_are_read(fleet: Any) -> None:
    client = fleet[0]
    ten_mb = b'{"instances": [' + b'{"income": 1.0},' * (10 * 2**20 // 16) + b"{}]}"
    declared = _send(client, PREDICT, ten_mb)
    _assert_4xx(declared, 413, "payload_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the gateway must count
        for start in range(0, len(ten_mb), 1 << 16):
            yield ten_mb[start : start + (1 << 16)]

    streamed = client.post(PREDICT, content=chunks(), headers={"Content-Type": "application/json"})
    _assert_4xx(streamed, 413, "payload_too_large")
    # The same limit on every route, including those that read no body.
    for method, path in (("GET", "/v1/models"), ("POST", f"/v1/models/{MODEL}/rollback")):
        r = client.request(method, path, content=b"x" * (LIMIT + 1))
        _assert_4xx(r, 413, "payload_too_large")
    _still_serves(client)
    print(f"10 MB body: {declared.status_code} declared, {streamed.status_code} chunked")


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` but the fleet's home, with its size and mtime."""
    home = root / "home"
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and home not in p.parents
    }


# Names that try to leave the registry: each must be refused as a name (404) before
# anything looks it up.
NAMES = [
    "..%2F..%2Fsentinel",
    "%2e%2e%2f%2e%2e%2fsentinel",
    "..%252f..%252fsentinel",
    "..",
    "%2e%2e",
    f"{MODEL}%0A",
    f"{MODEL}%00",
    f"{MODEL}%00..%2Fsentinel",
    "l%D0%BEan-h",  # a Cyrillic o
    "LOAN-H",
    "%2Ftmp%2Fsentinel",
    "C:%5Cwindows",
    "a" * 64,
]
VERSIONS = [
    "../1",
    "..%2F1",
    "%2e%2e%2f1",
    "/tmp/sentinel/1",
    "1/../1",
    "-1",
    "1.0",
    "01a",
    "1" * 10,
    "１",
]  # the last: a full-width digit


def test_traversal_in_names_and_versions_never_leaves_the_registry(fleet: Any) -> None:
    client, _, root = fleet
    before = _tree(root)
    models_before = sorted(m.name for m in registry.list_models())
    statuses = []
    for name in NAMES:
        for method, path, body in (
            ("POST", f"/v1/models/{name}/predict", {"instances": [GOOD_ROW]}),
            ("GET", f"/v1/models/{name}", None),
            ("POST", f"/v1/models/{name}/promote", {"version": "1"}),
            ("POST", f"/v1/models/{name}/rollback", None),
            ("GET", f"/v1/monitoring/{name}", None),
        ):
            r = client.request(method, path, json=body)
            assert 400 <= r.status_code < 500 and r.status_code in (404, 405), (path, r.text)
            statuses.append(r.status_code)
    for version in VERSIONS:
        r = client.post(
            PREDICT,
            json={"instances": [GOOD_ROW]},
            headers={"X-Model-Version": version.encode()},
        )
        _assert_4xx(r, 404, "not_found")
        r = client.get(f"/v1/monitoring/{MODEL}", params={"version": version})
        _assert_4xx(r, 404)
        r = client.post(f"/v1/models/{MODEL}/promote", json={"version": version})
        _assert_4xx(r, 422, "invalid_input")
        statuses += [404, 404, 422]
    # A trailing newline passes a $-anchored check: it must not pass these.
    _assert_4xx(client.get(f"/v1/monitoring/{MODEL}", params={"version": "1\n"}), 404)
    _assert_4xx(client.post(f"/v1/models/{MODEL}/promote", json={"version": "1\n"}), 422)
    _assert_4xx(
        client.post(
            PREDICT, json={"instances": [GOOD_ROW]}, headers={"X-Request-Id": "../" + "x" * 200}
        ),
        400,
        "bad_request_id",
    )
    assert _tree(root) == before, "a file outside the registry was created or changed"
    assert sorted(m.name for m in registry.list_models()) == models_before
    _still_serves(client)
    print(
        f"traversal: {len(statuses)} requests, statuses {sorted(set(statuses))}, no 5xx, "
        f"{len(before)} files outside the registry untouched"
    )


def test_feedback_and_promote_bodies(fleet: Any) -> None:
    client = fleet[0]
    feedback = f"/v1/models/{MODEL}/feedback"
    for label in ("9" * 400, "NaN", "Infinity", '"' + "x" * 2000 + '"', "[1]", "null"):
        body = ('{"labels": [{"request_id": "r1", "label": ' + label + "}]}").encode()
        _assert_4xx(_send(client, feedback, body), 422, "invalid_input")
    _assert_4xx(_send(client, feedback, b'{"labels": []}'), 422, "invalid_input")
    promote = f"/v1/models/{MODEL}/promote"
    _assert_4xx(_send(client, promote, b'{"version": 1}'), 422, "invalid_input")
    _assert_4xx(_send(client, promote, b'{"version": "1", "x": 1}'), 422, "invalid_input")
    _assert_4xx(_send(client, promote, b"[" * 10_000), 400, "bad_json")
    _assert_4xx(
        _send(client, promote, b'{"version": "1"}', **{"Content-Type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    _still_serves(client)


def test_wrong_method_answers_405_with_allow(fleet: Any) -> None:
    client = fleet[0]
    r = client.get(PREDICT)
    error = _assert_4xx(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "POST", (r.headers, error)
    r = client.delete("/v1/models")
    _assert_4xx(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "GET"
