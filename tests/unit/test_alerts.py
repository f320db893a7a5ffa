"""Alerts: a real HTTP receiver on 127.0.0.1 gets signed, retried webhook deliveries."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlfleet.errors import SettingsError
from mlfleet.monitoring.alerts import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Alert,
    AlertSinks,
    WebhookSink,
    alert_hook,
    deliver,
    sign,
    verify_request,
    verify_signature,
)
from mlfleet.monitoring.store import Alert as StoredAlert
from mlfleet.monitoring.store import MonitorStore
from mlfleet.settings import get_settings

SECRET = "s3cret-for-tests"


@dataclass
class Receiver:
    """Answers each POST with the next status of ``script`` (the last one repeats)."""

    script: list[int]
    received: list[tuple[dict[str, str], bytes, float]] = field(default_factory=list)
    url: str = ""

    def next_status(self) -> int:
        index = min(len(self.received), len(self.script)) - 1
        return self.script[index]


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    state = Receiver(script=list(getattr(request, "param", [200])))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append((dict(self.headers.items()), body, time.monotonic()))
            status = state.next_status()
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/mlfleet"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


def make_alert(**changes: object) -> Alert:
    values: dict[str, object] = {
        "model": "penguin-species",
        "version": "3",
        "previous_status": "ok",
        "status": "drift",
        "drifted_features": ("bill_length_mm", "island"),
        "reason": "2 of 6 features drifted (PSI > 0.2), and the predictions",
        "at": 1_790_000_000.0,
        "window_rows": 1200,
    }
    values.update(changes)
    return Alert(**values)  # type: ignore[arg-type]


def sink(url: str, **changes: object) -> WebhookSink:
    values: dict[str, object] = {
        "url": url,
        "secret": SECRET,
        "attempts": 4,
        "backoff": 0.05,
        "max_backoff": 0.2,
        "timeout": 2.0,
    }
    values.update(changes)
    return WebhookSink(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("receiver", [[503, 200]], indirect=True)
def test_signed_alert_is_retried_after_503_and_verifies(receiver: Receiver) -> None:
    alert = make_alert()
    settings = get_settings(
        alert_webhook_url=receiver.url,
        alert_webhook_secret=SECRET,
        alert_webhook_attempts=4,
        alert_webhook_backoff_seconds=0.05,
    )
    results = asyncio.run(deliver(alert, settings))

    assert [r.sink for r in results] == ["log", "webhook"]
    webhook = results[1]
    assert webhook.ok and webhook.attempts == 2 and webhook.status_code == 200
    assert webhook.error is None
    assert len(receiver.received) == 2
    for headers, body, _ in receiver.received:
        assert headers["Content-Type"] == "application/json"
        assert verify_signature(SECRET, body, headers[SIGNATURE_HEADER])
        assert verify_request(SECRET, body, headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER])
        assert headers[DELIVERY_HEADER] == webhook.delivery_id  # one id across retries
        document = json.loads(body)
        assert document["delivery_id"] == webhook.delivery_id
        assert str(document["sent_at"]) == headers[TIMESTAMP_HEADER]
        assert Alert.from_json(document["alert"]) == alert
    # The signature is the documented one: sha256= + hex HMAC-SHA256 of the raw body.
    import hashlib
    import hmac

    headers, body, _ = receiver.received[1]
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == f"sha256={digest}"


def test_verification_refuses_tampering_other_secrets_and_replays() -> None:
    body = json.dumps({"sent_at": 1000, "alert": {"model": "m"}}).encode()
    signature = sign(SECRET, body)
    assert verify_signature(SECRET, body, signature)
    assert not verify_signature("another secret", body, signature)
    assert not verify_signature(SECRET, body.replace(b"m", b"n"), signature)
    assert not verify_signature(SECRET, body, None)
    assert not verify_signature(SECRET, body, "sha256=" + "0" * 64)
    assert not verify_signature("", body, sign("", body))  # no secret, no trust
    assert verify_request(SECRET, body, signature, "1000", now=1100)
    assert not verify_request(SECRET, body, signature, "1000", now=1000 + 301)  # replay
    assert not verify_request(SECRET, body, signature, "2000", now=2000)  # header moved
    assert not verify_request(SECRET, b"not json", sign(SECRET, b"not json"), "1", now=1)


@pytest.mark.parametrize("receiver", [[500]], indirect=True)
def test_attempts_are_bounded(receiver: Receiver) -> None:
    result = asyncio.run(sink(receiver.url, attempts=3).send(make_alert()))
    assert not result.ok and result.attempts == 3 and result.status_code == 500
    assert result.error == "HTTP 500 after 3 attempts"
    assert len(receiver.received) == 3


@pytest.mark.parametrize("receiver", [[400]], indirect=True)
def test_a_client_error_is_not_retried(receiver: Receiver) -> None:
    result = asyncio.run(sink(receiver.url).send(make_alert()))
    assert not result.ok and result.attempts == 1 and result.status_code == 400
    assert len(receiver.received) == 1


@pytest.mark.parametrize("receiver", [[429, 429, 204]], indirect=True)
def test_429_is_retried(receiver: Receiver) -> None:
    result = asyncio.run(sink(receiver.url).send(make_alert()))
    assert result.ok and result.attempts == 3 and result.status_code == 204


def test_connection_refused_is_retried_then_reported_without_the_url() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hook?token=do-not-leak"
    result = asyncio.run(sink(url, attempts=2).send(make_alert()))
    assert not result.ok and result.attempts == 2 and result.status_code is None
    assert result.error == "ConnectError after 2 attempts"
    text = json.dumps(result.to_json())
    assert "do-not-leak" not in text and SECRET not in text


def test_backoff_doubles_under_its_cap_with_jitter() -> None:
    hook = sink("http://127.0.0.1:9", backoff=1.0, max_backoff=5.0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (8, 5.0)]:
        delays = [hook.delay(attempt) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # jittered over the range, not fixed
    assert hook.delay(1, hint=3.0) == 3.0  # Retry-After wins...
    assert hook.delay(1, hint=60.0) == 5.0  # ...within the cap


def test_the_log_line_is_one_structured_line(caplog: pytest.LogCaptureFixture) -> None:
    alert = make_alert(reason="two features\ndrifted")
    with caplog.at_level(logging.INFO, logger="mlfleet.monitoring.alerts"):
        results = asyncio.run(AlertSinks().deliver(alert))
    assert [(r.sink, r.ok) for r in results] == [("log", True)]
    [record] = caplog.records
    message = record.getMessage()
    assert "\n" not in message and record.levelno == logging.WARNING
    prefix, _, payload = message.partition(" ")
    assert prefix == "mlfleet.alert" and Alert.from_json(json.loads(payload)) == alert
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mlfleet.monitoring.alerts"):
        asyncio.run(AlertSinks().deliver(make_alert(previous_status="drift", status="ok")))
    assert caplog.records[0].levelno == logging.INFO  # back to ok is news, not a warning


def test_settings_keep_the_secret_secret() -> None:
    with pytest.raises(SettingsError, match="MLFLEET_ALERT_WEBHOOK_SECRET"):
        get_settings(alert_webhook_url="https://hooks.example/x")
    with pytest.raises(SettingsError, match="MLFLEET_ALERT_WEBHOOK_URL"):
        get_settings(alert_webhook_url="ftp://hooks.example/x", alert_webhook_secret="k")
    settings = get_settings(alert_webhook_url="https://hooks.example/x", alert_webhook_secret="k1")
    assert "k1" not in repr(settings) and "k1" not in str(settings.model_dump())
    sinks = AlertSinks.from_settings(settings)
    assert sinks.names == ["log", "webhook"] and "k1" not in repr(sinks.webhook)
    assert AlertSinks.from_settings(get_settings()).names == ["log"]


@pytest.mark.parametrize("receiver", [[502, 200]], indirect=True)
def test_the_monitor_hook_delivers_and_records_each_sink(
    receiver: Receiver, tmp_path: Path
) -> None:
    settings = get_settings(
        alert_webhook_url=receiver.url,
        alert_webhook_secret=SECRET,
        alert_webhook_backoff_seconds=0.05,
    )
    store = MonitorStore(f"sqlite:///{tmp_path / 'monitor.db'}")
    hook = alert_hook(settings, store)
    stored = StoredAlert(
        id="a1b2",
        model="penguin-species",
        version="3",
        at=1_790_000_000.0,
        previous=None,
        status="drift",
        reason="3 of 6 features drifted",
        details={"drifted_features": ["island", "bill_length_mm"], "rows": 812},
    )
    store.record_alert(stored)  # as the monitor's group commit does before calling the hook
    # The actor calls the hook on a thread of its own, outside any event loop.
    worker = threading.Thread(target=hook, args=(stored,))
    worker.start()
    worker.join(30)
    assert not worker.is_alive()

    [row] = store.alerts("penguin-species")
    store.close()
    assert (row["id"], row["status"], row["previous"]) == ("a1b2", "drift", None)
    recorded = row["deliveries"]
    assert sorted(recorded) == ["log", "webhook"]
    assert recorded["log"]["ok"] is True
    webhook = recorded["webhook"]
    assert webhook["ok"] is True and webhook["attempts"] == 2 and webhook["status_code"] == 200
    headers, body, _ = receiver.received[-1]
    assert webhook["delivery_id"] == headers[DELIVERY_HEADER]
    assert verify_request(SECRET, body, headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER])
    sent = Alert.from_json(json.loads(body)["alert"])
    assert sent == Alert(
        model="penguin-species",
        version="3",
        previous_status="ok",
        status="drift",
        drifted_features=("island", "bill_length_mm"),
        reason="3 of 6 features drifted",
        at=1_790_000_000.0,
        window_rows=812,
        id="a1b2",
    )
