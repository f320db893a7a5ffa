"""Alerts: what the monitor sends when a model's status changes, and where it goes.

An :class:`Alert` is sent once per change of a model version's status (``ok``,
``warning``, ``drift``), never on every window. :class:`AlertSinks` delivers it to:

- the **log**: one structured line on the ``mlfleet.monitoring.alerts`` logger,
  ``mlfleet.alert {json}`` (WARNING when the status worsens, INFO otherwise);
- a **webhook** (when ``MLFLEET_ALERT_WEBHOOK_URL`` is set): an HTTP POST of the alert
  as JSON (``Content-Type: application/json``) with these headers:

  - ``X-Mlfleet-Signature: sha256=<hex>``: the HMAC-SHA256 of the raw request body,
    keyed with ``MLFLEET_ALERT_WEBHOOK_SECRET`` (as GitHub signs its webhooks);
  - ``X-Mlfleet-Timestamp``: the Unix time of the attempt (whole seconds), also in the
    signed body as ``sent_at``, so a receiver refuses stale or replayed deliveries
    (:func:`verify_request`);
  - ``X-Mlfleet-Delivery``: an id that stays the same across the retries of one
    delivery (also ``delivery_id`` in the body), for receivers that deduplicate.

  A connection error, a timeout, a 5xx or a 429 is retried with exponential backoff
  and full jitter (a ``Retry-After`` header is honoured, within the backoff cap), up to
  ``MLFLEET_ALERT_WEBHOOK_ATTEMPTS`` attempts; any other answer but 2xx fails at once.

Delivery is asynchronous (httpx, :meth:`AlertSinks.deliver`). The monitor actor takes
:func:`alert_hook`, which it runs on a hook thread, never on its event loop: each stored
alert is delivered there and the :class:`DeliveryResult` of each sink is recorded in the
store (``update_alert``), so a slow or dead receiver never holds up evaluation. Neither
the secret nor the webhook URL (which may carry a token) is ever logged or put in a result.

A receiver checks a delivery with :func:`verify_request` (signature and freshness) or
:func:`verify_signature` (signature only), both constant-time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

import httpx

from mlfleet.settings import Settings

SIGNATURE_HEADER = "X-Mlfleet-Signature"
TIMESTAMP_HEADER = "X-Mlfleet-Timestamp"
DELIVERY_HEADER = "X-Mlfleet-Delivery"
SIGNATURE_PREFIX = "sha256="
REPLAY_TOLERANCE_SECONDS = 300.0  # how old a delivery a receiver accepts by default
LOG_PREFIX = "mlfleet.alert"
ALERT_KIND = "mlfleet.status_change"

logger = logging.getLogger(__name__)

_SEVERITY = {"ok": 0, "warning": 1, "drift": 2}


class StoredAlert(Protocol):
    """An alert as the monitor's store keeps it (``mlfleet.monitoring.store.Alert``)."""

    @property
    def id(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def version(self) -> str | None: ...
    @property
    def at(self) -> float: ...
    @property
    def previous(self) -> str | None: ...
    @property
    def status(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def details(self) -> dict[str, Any]: ...


class AlertStore(Protocol):
    """Where deliveries are recorded (``mlfleet.monitoring.store.MonitorStore``)."""

    def update_alert(self, alert_id: str, sink: str, delivery: dict[str, Any]) -> None:
        """Record what ``sink`` made of an alert."""
        ...


@dataclass(frozen=True)
class Alert:
    """A model version's status changed at an evaluation.

    Attributes:
        model: The registered model's name.
        version: The version whose window was evaluated.
        previous_status: Its judged status before (``ok``, ``warning``, ``drift``); a
            model's first verdict is compared with ``ok``.
        status: Its status now.
        drifted_features: The features whose verdict is drift (``prediction`` for the
            predictions), in the monitor's order.
        reason: Why the status is what it is, in a sentence.
        at: When the evaluation ran (Unix seconds).
        window_rows: Rows in the evaluated window.
        id: The monitor's id of the alert (the same in every delivery of it), if any.
    """

    model: str
    version: str
    previous_status: str
    status: str
    drifted_features: tuple[str, ...]
    reason: str
    at: float
    window_rows: int
    id: str | None = None

    @property
    def worsened(self) -> bool:
        """Whether the status is more severe than before."""
        return _SEVERITY.get(self.status, 0) > _SEVERITY.get(self.previous_status, -1)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the webhook body's ``alert``)."""
        return {
            "model": self.model,
            "version": self.version,
            "previous_status": self.previous_status,
            "status": self.status,
            "drifted_features": list(self.drifted_features),
            "reason": self.reason,
            "at": self.at,
            "window_rows": self.window_rows,
            "id": self.id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alert:
        """Read what :meth:`to_json` wrote."""
        return cls(
            model=str(data["model"]),
            version=str(data["version"]),
            previous_status=str(data["previous_status"]),
            status=str(data["status"]),
            drifted_features=tuple(str(f) for f in data.get("drifted_features", ())),
            reason=str(data.get("reason", "")),
            at=float(data["at"]),
            window_rows=int(data.get("window_rows", 0)),
            id=None if data.get("id") is None else str(data["id"]),
        )

    @classmethod
    def of(cls, stored: StoredAlert) -> Alert:
        """The alert the monitor stored (its ``details`` are the evaluation's summary)."""
        details = stored.details or {}
        return cls(
            model=stored.model,
            version="" if stored.version is None else str(stored.version),
            previous_status=stored.previous or "ok",  # a first verdict is compared with ok
            status=stored.status,
            drifted_features=tuple(str(f) for f in details.get("drifted_features") or ()),
            reason=stored.reason,
            at=float(stored.at),
            window_rows=int(details.get("rows") or 0),
            id=stored.id,
        )


@dataclass
class DeliveryResult:
    """What became of an alert at one sink (the monitor records it with the alert)."""

    sink: Literal["log", "webhook"]
    ok: bool
    attempts: int = 1
    status_code: int | None = None  # the receiver's last HTTP status (webhook)
    error: str | None = None  # why it failed, without URL or secret
    seconds: float = 0.0
    delivery_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


# --- signing ---------------------------------------------------------------------------


def sign(secret: str | bytes, body: bytes) -> str:
    """The ``X-Mlfleet-Signature`` value of ``body``: ``sha256=`` + hex HMAC-SHA256."""
    key = secret.encode() if isinstance(secret, str) else secret
    return SIGNATURE_PREFIX + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_signature(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the signature of the raw ``body`` under ``secret``.

    Compare the bytes as received, before any JSON parsing. Constant-time.
    """
    if not header or not secret:
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())


def verify_request(
    secret: str | bytes,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    tolerance: float = REPLAY_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether a webhook delivery is authentic and fresh: what a receiver should check.

    The signature must match the raw body, the ``X-Mlfleet-Timestamp`` header must equal
    the signed body's ``sent_at``, and that time must be within ``tolerance`` seconds of
    ``now``, so a captured delivery cannot be replayed later.
    """
    if not verify_signature(secret, body, signature) or timestamp is None:
        return False
    try:
        sent_at = float(json.loads(body)["sent_at"])
        stamped = float(timestamp)
    except (ValueError, KeyError, TypeError):
        return False
    current = time.time() if now is None else now
    return sent_at == stamped and abs(current - sent_at) <= tolerance


# --- sinks -----------------------------------------------------------------------------


def log_alert(alert: Alert) -> DeliveryResult:
    """Write the alert as one structured log line."""
    line = json.dumps(alert.to_json(), sort_keys=True, separators=(",", ":"))
    logger.log(logging.WARNING if alert.worsened else logging.INFO, "%s %s", LOG_PREFIX, line)
    return DeliveryResult(sink="log", ok=True)


def webhook_body(alert: Alert, delivery_id: str, sent_at: int) -> bytes:
    """The bytes POSTed (and signed) for one attempt."""
    document = {
        "kind": ALERT_KIND,
        "delivery_id": delivery_id,
        "sent_at": sent_at,
        "alert": alert.to_json(),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return None if value is None else max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: the backoff decides


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


@dataclass
class WebhookSink:
    """POSTs alerts, signed, to one URL (see the module docstring for the wire format)."""

    url: str = field(repr=False)
    secret: str = field(repr=False)
    attempts: int = 5
    backoff: float = 0.5
    max_backoff: float = 30.0
    timeout: float = 5.0

    def delay(self, attempt: int, hint: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        Full jitter: uniform in ``[0, min(max_backoff, backoff * 2**(attempt-1))]``, so
        senders that failed together do not retry together. A receiver's ``Retry-After``
        replaces it, within ``max_backoff``.
        """
        if hint is not None:
            return min(hint, self.max_backoff)
        ceiling = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return random.uniform(0.0, ceiling)

    async def send(self, alert: Alert) -> DeliveryResult:
        """Deliver ``alert``, retrying as the module says; never raises for the receiver."""
        started = time.monotonic()
        delivery_id = uuid.uuid4().hex
        result = DeliveryResult(sink="webhook", ok=False, attempts=0, delivery_id=delivery_id)
        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as client:
            for attempt in range(1, self.attempts + 1):
                result.attempts = attempt
                sent_at = int(time.time())
                body = webhook_body(alert, delivery_id, sent_at)
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "mlfleet-alerts",
                    SIGNATURE_HEADER: sign(self.secret, body),
                    TIMESTAMP_HEADER: str(sent_at),
                    DELIVERY_HEADER: delivery_id,
                }
                hint: float | None = None
                try:
                    response = await client.post(self.url, content=body, headers=headers)
                except httpx.TransportError as exc:
                    # The exception's text can hold the URL: name its kind only.
                    result.status_code, result.error = None, type(exc).__name__
                else:
                    result.status_code = response.status_code
                    if response.is_success:
                        result.ok, result.error = True, None
                        break
                    result.error = f"HTTP {response.status_code}"
                    if not _retryable(response.status_code):
                        break
                    hint = _retry_after(response)
                if attempt < self.attempts:
                    await asyncio.sleep(self.delay(attempt, hint))
        if not result.ok and result.error is not None:
            result.error += f" after {result.attempts} attempt" + "s" * (result.attempts > 1)
        result.seconds = time.monotonic() - started
        return result


class AlertSinks:
    """Every configured sink: the log line always, the webhook when a URL is set."""

    def __init__(self, webhook: WebhookSink | None = None) -> None:
        self.webhook = webhook

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertSinks:
        """The sinks the ``MLFLEET_ALERT_*`` settings describe."""
        if not settings.alert_webhook_url:
            return cls()
        return cls(
            WebhookSink(
                url=settings.alert_webhook_url,
                secret=settings.alert_webhook_secret.get_secret_value(),
                attempts=settings.alert_webhook_attempts,
                backoff=settings.alert_webhook_backoff_seconds,
                max_backoff=settings.alert_webhook_max_backoff_seconds,
                timeout=settings.alert_webhook_timeout_seconds,
            )
        )

    @property
    def names(self) -> list[str]:
        """The sinks an alert goes to."""
        return ["log"] + (["webhook"] if self.webhook is not None else [])

    async def deliver(self, alert: Alert) -> list[DeliveryResult]:
        """Send ``alert`` to every sink; one result per sink, in :attr:`names` order.

        Never raises because a sink failed: the failure is in its result.
        """
        results = [log_alert(alert)]
        if self.webhook is not None:
            try:
                results.append(await self.webhook.send(alert))
            except Exception as exc:  # a bug must not take the monitor's loop down
                logger.exception("webhook delivery failed")
                results.append(DeliveryResult(sink="webhook", ok=False, error=type(exc).__name__))
        return results


async def deliver(alert: Alert, settings: Settings) -> list[DeliveryResult]:
    """Send ``alert`` to the sinks ``settings`` configure (see :class:`AlertSinks`)."""
    return await AlertSinks.from_settings(settings).deliver(alert)


def alert_hook(settings: Settings, store: AlertStore) -> Callable[[StoredAlert], None]:
    """The monitor actor's alert hook: deliver each stored alert, record each sink's result.

    The actor runs the hook on a thread of its own, never on its event loop, so the
    delivery (retries included) runs to its end here, in an event loop of this thread.
    """
    sinks = AlertSinks.from_settings(settings)

    def hook(stored: StoredAlert) -> None:
        for result in asyncio.run(sinks.deliver(Alert.of(stored))):
            try:
                store.update_alert(stored.id, result.sink, result.to_json())
            except KeyError:
                logger.warning(
                    "alert %s is not in the store: %s not recorded", stored.id, result.sink
                )

    return hook
