"""The gateway's inline model cache and the Serve flags a head is started with."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from mlfleet.serving.auth import digest
from mlfleet.serving.deploy import fast_serve_env
from mlfleet.serving.inline import (
    COST_SAMPLES,
    MIN_COST_SAMPLES,
    PROBE_EVERY,
    InlineModels,
)
from mlfleet.settings import get_settings


class Store:
    """Model versions with sizes; counts loads, and can fail one version's load."""

    def __init__(
        self, sizes: dict[tuple[str, str], int], broken: frozenset[str] = frozenset()
    ) -> None:
        self.sizes = sizes
        self.broken = broken
        self.loads: list[tuple[str, str]] = []
        self.threads: set[str] = set()

    def size_of(self, name: str, version: str) -> int:
        return self.sizes[(name, version)]

    def load(self, name: str, version: str) -> Any:
        self.threads.add(threading.current_thread().name)
        self.loads.append((name, version))
        if version in self.broken:
            raise OSError("artifact store unreachable")
        return f"model {name}/{version}"


async def settle(inline: InlineModels, name: str, version: str) -> Any:
    """Ask, await the background load that started (if any), and ask again."""
    got = inline.get(name, version)
    loading = inline._loading.get((name, version))
    if loading is not None:
        await loading
    return got if got is not None else inline.get(name, version)


def test_first_sight_starts_a_background_load_and_later_requests_get_the_model() -> None:
    store = Store({("a", "1"): 100})

    async def go() -> tuple[Any, Any]:
        inline = InlineModels(2, 1000, store.size_of, store.load)
        first = inline.get("a", "1")  # never blocks the request path
        return first, await settle(inline, "a", "1")

    first, later = asyncio.run(go())
    assert first is None and later == "model a/1"
    assert store.loads == [("a", "1")]
    assert threading.main_thread().name not in store.threads


def test_a_version_asked_for_more_often_replaces_the_least_recently_used_one() -> None:
    store = Store({("a", "1"): 1, ("a", "2"): 1, ("b", "1"): 1})

    async def go() -> list[list[tuple[str, str]]]:
        inline = InlineModels(2, 1000, store.size_of, store.load)
        await settle(inline, "a", "1")
        await settle(inline, "a", "2")
        inline.get("a", "1")  # touch: a/2 is now the least recently used (asked twice)
        seen = []
        await settle(inline, "b", "1")  # asked twice, as often as a/2: not admitted
        seen.append(inline.loaded())
        await settle(inline, "b", "1")  # now more often than a/2: it replaces a/2
        seen.append(inline.loaded())
        return seen

    assert asyncio.run(go()) == [[("a", "2"), ("a", "1")], [("a", "1"), ("b", "1")]]
    assert store.loads == [("a", "1"), ("a", "2"), ("b", "1")]


def test_skewed_traffic_over_many_models_loads_a_few_hot_ones_not_every_request() -> None:
    import random

    names = [f"m{i}" for i in range(100)]
    store = Store({(n, "1"): 1 for n in names})
    weights = [1 / (rank**1.1) for rank in range(1, 101)]  # Zipf, s = 1.1
    picks = random.Random(7).choices(names, weights, k=5000)

    async def go() -> list[tuple[str, str]]:
        inline = InlineModels(4, 1000, store.size_of, store.load)
        for name in picks:
            inline.get(name, "1")
            await asyncio.sleep(0)  # a background load finishes between some requests
            for task in list(inline._loading.values()):
                await task
        return inline.loaded()

    loaded = asyncio.run(go())
    # A plain LRU of four loads on almost every request outside the top four (~3,000 here).
    assert len(store.loads) < 100, len(store.loads)
    assert {n for n, _ in loaded} == {"m0", "m1", "m2", "m3"}


def test_large_and_unloadable_versions_are_refused_once_and_not_retried() -> None:
    store = Store({("big", "1"): 5000, ("x", "1"): 10}, broken=frozenset({"1"}))

    async def go() -> tuple[Any, Any, InlineModels]:
        inline = InlineModels(4, 1000, store.size_of, store.load)
        big = await settle(inline, "big", "1")
        broken = await settle(inline, "x", "1")
        inline.get("big", "1")
        inline.get("x", "1")  # a retry would start here, as a task
        return big, broken, inline

    big, broken, inline = asyncio.run(go())
    assert big is None and broken is None and inline.loaded() == [] and not inline._loading
    assert store.loads == [("x", "1")]  # the big one was never loaded, the broken one once


def test_under_load_a_held_version_is_answered_here_while_its_median_cost_is_in_budget() -> None:
    store = Store({("a", "1"): 1, ("b", "1"): 1})
    budget = 0.002

    async def go() -> list[Any]:
        inline = InlineModels(1, 1000, store.size_of, store.load)
        await settle(inline, "a", "1")  # asked twice
        seen: list[Any] = [inline.answer_here("a", "1", budget)]  # unmeasured: it gets measured
        inline.observe("a", "1", 0.04)  # the first one pays for set-up: not counted
        for _ in range(MIN_COST_SAMPLES - 1):  # still being measured: cheap
            inline.observe("a", "1", 0.006)
        seen.append(inline.answer_here("a", "1", budget))
        for cost in (0.001,) * MIN_COST_SAMPLES + (0.05,):  # one hit by a garbage collection
            inline.observe("a", "1", cost)
        seen.append(inline.answer_here("a", "1", budget))
        seen.append(inline.answer_here("a", "1", 0.0))  # a budget of 0 admits nothing
        for _ in range(COST_SAMPLES // 2 + 1):  # it became slower: most of its last ones
            inline.observe("a", "1", 0.005)
        asked = [inline.answer_here("a", "1", budget) for _ in range(2 * PROBE_EVERY)]
        seen.append([i + 1 for i, here in enumerate(asked) if here])  # measured now and then
        for _ in range(3):  # asked more often than a/1: b/1 replaces it
            inline.get("b", "1")
        await asyncio.gather(*inline._loading.values())
        seen.append(inline.loaded())
        inline.observe("a", "1", 0.5)  # no longer held: not recorded
        for _ in range(2):
            inline.get("a", "1")
        await asyncio.gather(*inline._loading.values())
        seen.append(inline.loaded())
        seen.append(inline.answer_here("a", "1", budget))  # held again: measured afresh
        return seen

    assert asyncio.run(go()) == [
        True,
        True,
        True,
        False,
        [PROBE_EVERY, 2 * PROBE_EVERY],
        [("b", "1")],
        [("a", "1")],
        True,
    ]
    assert store.loads == [("a", "1"), ("b", "1"), ("a", "1")]


@pytest.mark.parametrize(("models", "max_bytes"), [(0, 1000), (4, 0)])
def test_zero_turns_inline_serving_off(models: int, max_bytes: int) -> None:
    store = Store({("a", "1"): 1})

    async def go() -> Any:
        inline = InlineModels(models, max_bytes, store.size_of, store.load)
        return inline.get("a", "1"), inline._loading

    assert asyncio.run(go()) == (None, {})
    assert store.loads == []


def test_haproxy_only_with_api_keys_and_with_files_and_ports_of_its_own(tmp_path: Path) -> None:
    keys = [{"name": "k", "sha256": digest("secret"), "scopes": ["predict"]}]
    open_env = fast_serve_env(get_settings(home=tmp_path / "a"))
    assert open_env == {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}

    a = fast_serve_env(get_settings(home=tmp_path / "a", api_keys=keys))
    b = fast_serve_env(get_settings(home=tmp_path / "b", api_keys=keys))
    assert a["RAY_SERVE_ENABLE_HA_PROXY"] == "1" and a["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    for env in (a, b):
        paths = [v for k, v in env.items() if k.endswith(("_LOC", "_PATH", "_BASE", "_FILE"))]
        assert len(paths) == 6 and all(not p.startswith("/tmp/haproxy-serve") for p in paths)
        # Ray puts a 56-character node id below the folder; HAProxy's socket limit is 97.
        socket_path = Path(env["RAY_SERVE_HAPROXY_SOCKET_PATH"])
        assert len(str(socket_path.parent / ("n" * 56) / socket_path.name)) <= 97
    assert a["RAY_SERVE_HAPROXY_SOCKET_PATH"] != b["RAY_SERVE_HAPROXY_SOCKET_PATH"]
    ports = {a["RAY_SERVE_HAPROXY_METRICS_PORT"], a["RAY_SERVE_HAPROXY_STATS_PORT"]}
    assert len(ports) == 2 and not ports & {"9101", "8404"}

    off = get_settings(home=tmp_path / "a", api_keys=keys, serve_haproxy=False)
    assert "RAY_SERVE_ENABLE_HA_PROXY" not in fast_serve_env(off)
