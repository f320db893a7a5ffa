"""ModelPool: one multiplexed Serve deployment for the long tail of models.

The multiplexed id is ``NAME/VERSION``: a promotion sends traffic to a new id, which loads
on first use, while the old version ages out of the replica's LRU. Serve routes requests
for an id to replicas that already hold it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pandas as pd
from ray import serve

from mlfleet import registry
from mlfleet.monitoring.sender import SketchSender, sender_id
from mlfleet.serving.models import predict


def pool_class(max_models: int) -> type:
    """The pool deployment class, keeping up to ``max_models`` versions per replica.

    Built per call because ``serve.multiplexed`` takes its LRU size when decorating.
    """

    class ModelPool:
        """Predicts with whichever model version the request's multiplexed id names."""

        def __init__(self, settings_json: str) -> None:
            from mlfleet.settings import Settings

            settings = Settings.model_validate_json(settings_json)
            registry.configure(settings)
            self.sketches = SketchSender(sender_id("pool"), settings)

        @serve.multiplexed(max_num_models_per_replica=max_models)
        async def get_model(self, model_id: str) -> Any:
            name, _, version = model_id.partition("/")
            # Loading reads the registry and unpickles: keep the event loop free meanwhile.
            return await asyncio.to_thread(registry.load_pipeline, name, version)

        async def predict(self, frame: pd.DataFrame) -> dict[str, Any]:
            model_id = serve.get_multiplexed_model_id()
            model = await self.get_model(model_id)
            result = predict(model, frame)
            name, _, version = model_id.partition("/")
            self.sketches.record(name, version, frame, result)
            return result

        async def __del__(self) -> None:
            """Serve's graceful shutdown: flush what this replica still holds (bounded wait)."""
            await self.sketches.close()

        async def sender_stats(self) -> dict[str, Any]:
            """This replica's sketch sender (for operators and tests)."""
            return self.sketches.stats()

        async def ready(self) -> bool:
            """Load the request's model (used by /readyz)."""
            await self.get_model(serve.get_multiplexed_model_id())
            return True

    return ModelPool
