"""A replica's start-up heap is frozen: collected once, then left out of collections."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import gc, weakref
    from mlfleet.serving.heap import freeze_startup_heap

    class Node:
        pass

    kept = [{"i": i} for i in range(50_000)]  # what a replica keeps from its start-up
    cycle = Node()
    cycle.self = cycle  # start-up garbage only a collection frees
    gone = weakref.ref(cycle)
    del cycle
    tracked = len(gc.get_objects())
    freeze_startup_heap()
    print(gone() is None, gc.get_freeze_count() >= 50_000, len(gc.get_objects()) < tracked // 10)
    """
)


def test_start_up_garbage_is_collected_and_the_rest_frozen() -> None:
    # In a process of its own: freezing this one would change every later test's heap.
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    collected, frozen, left_out = out.stdout.split()
    assert collected == "True"  # the cycle was freed before freezing
    assert frozen == "True"  # the kept objects are in the permanent generation
    assert left_out == "True"  # and no longer among the objects collections walk
