"""A small HTTP load client for the reliability suite: paced or closed-loop, every request
with its own timeout, every outcome kept.

It runs on its own event loop in a background thread, so that a test can kill actors and
poll Serve meanwhile. A Python client saturates near 150 requests/s on a 2-core host
(GROUND.md): enough for the suite's rates and bursts, not for measuring a fast server.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass(frozen=True)
class Outcome:
    """One request: when it left, how long it took, and its status (None: no answer)."""

    sent: float  # time.monotonic() when it was sent
    elapsed: float
    status: int | None
    error: str | None = None  # the transport error or timeout when there was no answer
    retry_after: str | None = None
    code: str | None = None  # the error envelope's code, when the body had one
    detail: str | None = None  # the start of a failure's body
    served_by: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Summary:
    """What a run measured."""

    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return len(self.outcomes)

    @property
    def ok(self) -> int:
        return sum(o.ok for o in self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def statuses(self) -> Counter[int | str]:
        return Counter(o.status if o.status is not None else str(o.error) for o in self.outcomes)

    @property
    def failures(self) -> Counter[tuple[int | None, str | None]]:
        """Failed requests by status and error code (or transport error, or body start)."""
        return Counter((o.status, o.code or o.error or (o.detail or "")[:60]) for o in self.failed)

    @property
    def max_elapsed(self) -> float:
        return max((o.elapsed for o in self.outcomes), default=0.0)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0-100) of the answered requests' latency, in seconds."""
        times = sorted(o.elapsed for o in self.outcomes if o.status is not None)
        if not times:
            return 0.0
        return times[min(len(times) - 1, int(len(times) * q / 100))]

    def line(self) -> str:
        """One line for the test's printed summary."""
        return (
            f"sent={self.sent} ok={self.ok} non2xx={self.sent - self.ok} "
            f"statuses={dict(self.statuses)} p50={self.percentile(50) * 1000:.0f}ms "
            f"p99={self.percentile(99) * 1000:.0f}ms max={self.max_elapsed * 1000:.0f}ms"
        )


async def _one(client: httpx.AsyncClient, path: str, body: Any, timeout: float) -> Outcome:
    sent = time.monotonic()
    try:
        r = await client.post(path, json=body, timeout=timeout)
    except httpx.HTTPError as exc:
        return Outcome(sent, time.monotonic() - sent, None, type(exc).__name__)
    code = detail = None
    if r.status_code >= 400:
        detail = r.text[:160]
        try:
            code = r.json().get("error", {}).get("code")
        except (ValueError, AttributeError):
            code = None
    return Outcome(
        sent,
        time.monotonic() - sent,
        r.status_code,
        retry_after=r.headers.get("retry-after"),
        code=code,
        detail=detail,
        served_by=r.headers.get("x-served-by"),
    )


class Load:
    """Requests POSTed to ``base_url + path`` from a background thread until :meth:`stop`.

    Either paced (``rate`` requests/s, at most ``bound`` in flight: a tick with no room is
    skipped and counted) or closed-loop (``concurrency`` workers, each sending its next
    request as soon as the previous one is answered).
    """

    def __init__(
        self,
        base_url: str,
        path: str,
        body: Any,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 5.0,
        rate: float | None = None,
        bound: int = 64,
        concurrency: int | None = None,
    ) -> None:
        if (rate is None) == (concurrency is None):
            raise ValueError("give either rate or concurrency")
        self.base_url, self.path, self.body = base_url, path, body
        self.headers = headers or {}
        self.timeout, self.rate, self.bound, self.concurrency = timeout, rate, bound, concurrency
        self.summary = Summary()
        self.skipped = 0  # paced ticks with ``bound`` requests already in flight
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> Summary:
        """Stop sending, wait for the requests in flight (each bounded by its timeout)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.timeout + 30)
        return self.summary

    def since(self, start: float) -> list[Outcome]:
        """Outcomes of requests sent at ``start`` (monotonic) or later."""
        return [o for o in list(self.summary.outcomes) if o.sent >= start]

    async def _main(self) -> None:
        width = self.concurrency or self.bound
        limits = httpx.Limits(max_connections=width, max_keepalive_connections=width)
        async with httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, limits=limits
        ) as client:
            if self.concurrency is not None:
                await asyncio.gather(*(self._worker(client) for _ in range(self.concurrency)))
            else:
                await self._paced(client)

    async def _record(self, client: httpx.AsyncClient) -> None:
        self.summary.outcomes.append(await _one(client, self.path, self.body, self.timeout))

    async def _worker(self, client: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            await self._record(client)

    async def _paced(self, client: httpx.AsyncClient) -> None:
        assert self.rate is not None
        gap = 1.0 / self.rate
        flying: set[asyncio.Task[None]] = set()
        next_at = time.monotonic()
        while not self._stop.is_set():
            if len(flying) < self.bound:
                task = asyncio.create_task(self._record(client))
                flying.add(task)
                task.add_done_callback(flying.discard)
            else:
                self.skipped += 1
            next_at += gap
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        if flying:
            await asyncio.gather(*flying)
