"""The reliability suite: faults, load and hostile input against a real fleet.

Every case has a hard pass criterion and prints what it measured (run with ``-s`` or read
the captured output of a failure). Run it alone with ``make test-reliability``; ``make test``
includes it.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/reliability/" in str(item.fspath):
            item.add_marker(pytest.mark.reliability)
