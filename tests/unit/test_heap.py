"""A serving replica's heap settles: what imports left is frozen, garbage is collected first."""

from __future__ import annotations

import gc
import importlib
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlfleet.serving import heap


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # the rest of the test session collects as usual


def _import_new_module(folder: Path, name: str, items: int) -> object:
    """A module nobody imported before, holding ``items`` lists of one dict each."""
    (folder / f"{name}.py").write_text(f"OBJECTS = [[{{'i': i}}] for i in range({items})]\n")
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))


class _Node:
    me: _Node


def _in_collected_generations(obj: object) -> bool:
    return any(o is obj for o in gc.get_objects())


def test_a_settle_after_an_import_freezes_its_objects_and_collects_garbage_first(
    tmp_path: Path,
) -> None:
    heap.settle()  # whatever the session imported until now
    frozen = gc.get_freeze_count()
    node = _Node()
    node.me = node  # a reference cycle nobody holds: only a collection frees it
    gone = weakref.ref(node)
    del node

    module = _import_new_module(tmp_path, "mlfleet_heap_probe", 5000)
    objects = module.OBJECTS  # type: ignore[attr-defined]
    assert heap.settle() is True

    assert gone() is None  # collected, not frozen
    # 5,000 lists and 5,000 dicts (holding one int each: untracked dicts are not counted)
    assert gc.get_freeze_count() >= frozen + 5000
    assert not _in_collected_generations(objects[0])
    assert not _in_collected_generations(objects)


def test_without_new_imports_a_settle_does_nothing() -> None:
    heap.settle()
    frozen = gc.get_freeze_count()
    young = [[] for _ in range(100)]
    assert heap.settle() is False
    assert gc.get_freeze_count() == frozen
    assert _in_collected_generations(young)  # still scanned by the next collections


def test_full_collections_are_timed_once_watched() -> None:
    heap.watch()
    heap.watch()  # idempotent: one callback
    before = heap.stats()
    gc.collect()
    gc.collect(0)  # young collections are not full ones
    after = heap.stats()
    assert after["full_collections"] == before["full_collections"] + 1
    assert len(after["full_collection_ms"]) == min(
        len(before["full_collection_ms"]) + 1, heap.PAUSES_KEPT
    )
    assert after["full_collection_ms"][-1] >= 0
