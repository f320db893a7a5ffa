"""A dedicated deployment for one model: its own replicas, autoscaling and request batching.

Concurrent single-row requests are gathered by ``@serve.batch`` and predicted together,
which pays sklearn's per-call input checks once per batch instead of once per request.
Requests name the version they want (the gateway resolves ``champion``), so a promotion
needs no redeploy: the new version loads on first use beside the old one.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

import pandas as pd
from ray import serve

from mlfleet import registry
from mlfleet.monitoring.sender import SketchSender, sender_id
from mlfleet.serving import heap
from mlfleet.serving.models import load_model, predict, split_result

KEEP_VERSIONS = 2


class DedicatedModel:
    """Serves every version of one model, batching concurrent requests."""

    def __init__(
        self, name: str, settings_json: str, max_batch_size: int, batch_wait_timeout_s: float
    ) -> None:
        from mlfleet.settings import Settings

        settings = Settings.model_validate_json(settings_json)
        registry.configure(settings)
        self.name = name
        self.sketches = SketchSender(sender_id(f"dedicated-{name}"), settings)
        heap.watch()
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._loading: dict[str, asyncio.Task[Any]] = {}
        self._batches = 0
        self._largest_batch = 0
        self.predict_batch.set_max_batch_size(max_batch_size)  # type: ignore[attr-defined]
        self.predict_batch.set_batch_wait_timeout_s(batch_wait_timeout_s)  # type: ignore[attr-defined]

    async def _model(self, version: str) -> Any:
        if version in self._models:
            self._models.move_to_end(version)
            return self._models[version]
        task = self._loading.get(version)
        if task is None:
            task = asyncio.ensure_future(asyncio.to_thread(load_model, self.name, version))
            self._loading[version] = task
        try:
            model = await task
        finally:
            self._loading.pop(version, None)
        self._models[version] = model
        while len(self._models) > KEEP_VERSIONS:
            self._models.popitem(last=False)
        return model

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def predict_batch(self, requests: list[tuple[str, pd.DataFrame]]) -> list[dict[str, Any]]:
        self._batches += 1
        self._largest_batch = max(self._largest_batch, len(requests))
        results: list[dict[str, Any] | None] = [None] * len(requests)
        by_version: dict[str, list[int]] = {}
        for i, (version, _) in enumerate(requests):
            by_version.setdefault(version, []).append(i)
        for version, idx in by_version.items():
            model = await self._model(version)
            frames = [requests[i][1] for i in idx]
            joined = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
            result = predict(model, joined)
            self.sketches.record(self.name, version, joined, result)  # one batch, one entry
            parts = split_result(result, [len(f) for f in frames])
            for i, part in zip(idx, parts, strict=True):
                results[i] = part
        return [r for r in results if r is not None]

    async def predict(self, version: str, frame: pd.DataFrame) -> dict[str, Any]:
        return await self.predict_batch((version, frame))

    async def stats(self) -> dict[str, int]:
        """How many batches ran and the largest one (for operators and tests)."""
        return {"batches": self._batches, "largest_batch": self._largest_batch}

    async def __del__(self) -> None:
        """Serve's graceful shutdown: flush what this replica still holds (bounded wait)."""
        await self.sketches.close()

    async def sender_stats(self) -> dict[str, Any]:
        """This replica's sketch sender (for operators and tests)."""
        return self.sketches.stats()

    async def ready(self, version: str) -> bool:
        """Load ``version`` (used by /readyz)."""
        await self._model(version)
        return True
