"""Concrete configurations sampled from a spec's search space (pure, seeded).

Sampling up front, rather than inside Tune's searcher, makes a search reproducible from
the spec's seed and lets every candidate family take its fair share of the trials.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mlfleet.spec import SearchSpec


def _draw(dist: Any, rng: np.random.Generator) -> Any:
    if not isinstance(dist, dict):
        return dist
    kind, args = next(iter(dist.items()))
    if kind == "choice":
        return args[int(rng.integers(len(args)))]
    if kind == "uniform":
        return float(rng.uniform(args[0], args[1]))
    if kind == "loguniform":
        return float(math.exp(rng.uniform(math.log(args[0]), math.log(args[1]))))
    if kind == "randint":
        return int(rng.integers(int(args[0]), int(args[1]), endpoint=True))
    if kind == "quniform":
        low, high, q = args
        return float(round(rng.uniform(low, high) / q) * q)
    raise ValueError(kind)  # pragma: no cover - the spec validates kinds


def _has_random_state(estimator: str) -> bool:
    import importlib

    module_name, _, class_name = estimator.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    return "random_state" in cls().get_params()


def sample_configs(search: SearchSpec, seed: int) -> list[dict[str, Any]]:
    """``num_samples`` configurations, candidates taken in turn, params drawn with ``seed``.

    Returns:
        Dicts with ``estimator`` (dotted path) and ``params`` (concrete values).
    """
    rng = np.random.default_rng(seed)
    configs = []
    for i in range(search.num_samples):
        candidate = search.candidates[i % len(search.candidates)]
        params = {name: _draw(dist, rng) for name, dist in sorted(candidate.params.items())}
        if "random_state" not in params and _has_random_state(candidate.estimator):
            params["random_state"] = seed  # the same spec trains the same model
        configs.append({"estimator": candidate.estimator, "params": params})
    return configs
