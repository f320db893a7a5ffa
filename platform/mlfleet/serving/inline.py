"""Small models kept inside the gateway replica, for requests that arrive when it is idle.

A request that goes gateway → model replica pays a second hop through a Serve handle
(3–6 ms on a small machine, more than the prediction itself for a small sklearn model). When
the gateway has nothing else to do, predicting in its own process is the fastest answer;
under load the same request is better forwarded, where ``@serve.batch`` and the model's own
replicas spread the work. :class:`InlineModels` holds the first half of that bargain: an LRU
of small model versions, loaded in the background on first sight, never on the request path.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

log = logging.getLogger("mlfleet.gateway")

# Predict in the gateway only when this request is the only one it is handling.
INLINE_WHEN_ONGOING_AT_MOST = 1
# Requests between two halvings of the request counts: admission follows recent popularity.
AGING_EVERY = 1000

Key = tuple[str, str]


class InlineModels:
    """An LRU of model versions small enough to predict with inside the gateway.

    ``size_of(name, version)`` returns the model's stored size in bytes and ``load(name,
    version)`` the model; both block, and run in a worker thread. Versions larger than
    ``max_bytes``, or whose loading failed, are remembered and not tried again (a version is
    immutable).

    Admission: with room to spare any version is loaded; when full, a version is loaded only
    if it was asked for more often (recently: counts halve every ``AGING_EVERY`` requests)
    than the least recently used one it would replace, and one load runs at a time. With a
    hundred models under skewed traffic, a plain LRU of four would load a model in the
    background on nearly every request, spending the gateway's CPU on loads it then evicts.
    """

    def __init__(
        self,
        max_models: int,
        max_bytes: int,
        size_of: Callable[[str, str], int],
        load: Callable[[str, str], Any],
    ) -> None:
        self.max_models = max_models
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._load = load
        self._models: OrderedDict[Key, Any] = OrderedDict()
        self._loading: dict[Key, asyncio.Task[None]] = {}
        self._refused: set[Key] = set()
        self._hits: Counter[Key] = Counter()
        self._asked = 0

    @property
    def enabled(self) -> bool:
        return self.max_models > 0 and self.max_bytes > 0

    def get(self, name: str, version: str) -> Any | None:
        """The loaded model, or None (and a background load starts if it is eligible)."""
        key = (name, version)
        if not self.enabled:
            return None
        self._count(key)
        model = self._models.get(key)
        if model is not None:
            self._models.move_to_end(key)
            return model
        if not self._loading and key not in self._refused and self._admits(key):
            self._loading[key] = asyncio.get_running_loop().create_task(self._fetch(key))
        return None

    def _count(self, key: Key) -> None:
        self._hits[key] += 1
        self._asked += 1
        if self._asked >= AGING_EVERY:
            self._asked = 0
            self._hits = Counter({k: n // 2 for k, n in self._hits.items() if n > 1})

    def _admits(self, key: Key) -> bool:
        if len(self._models) < self.max_models:
            return True
        least_recent = next(iter(self._models))
        return self._hits[key] > self._hits[least_recent]

    async def _fetch(self, key: Key) -> None:
        try:
            size = await asyncio.to_thread(self._size_of, *key)
            if size > self.max_bytes:
                self._refused.add(key)
                return
            model = await asyncio.to_thread(self._load, *key)
        except Exception:
            # The model replicas still serve it; the gateway just will not hold a copy.
            log.warning("gateway will not hold %s/%s", *key, exc_info=True)
            self._refused.add(key)
            return
        finally:
            self._loading.pop(key, None)
        self._models[key] = model
        while len(self._models) > self.max_models:
            self._models.popitem(last=False)

    def loaded(self) -> list[Key]:
        """The versions held now (for status and tests)."""
        return list(self._models)
