"""Waiting for a condition with a deadline, never for a fixed time.

Use it only where nothing can be awaited: a file's content, a route that starts answering,
a status to poll. Where a thread or task can signal, wait on that (``threading.Condition``,
an ``asyncio.Task``) instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T], *, timeout: float, what: str, first: float = 0.01, most: float = 0.5
) -> T:
    """The first truthy value of ``condition()``, checked with growing gaps until ``timeout``.

    Args:
        condition: Returns something truthy once the wait is over; may raise to give up early.
        timeout: Seconds before giving up.
        what: What was awaited, for the error message.
        first: The first gap between two checks; it doubles up to ``most``.

    Raises:
        TimeoutError: ``condition()`` was still falsy at the deadline.
    """
    deadline = time.monotonic() + timeout
    gap = first
    while True:
        value = condition()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(min(gap, left))
        gap = min(gap * 2, most)
