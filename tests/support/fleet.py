"""Small fleets of loan models for serving and monitoring tests.

The specs share one contract and one CSV of :func:`tests.support.messy.loans_frame` rows
(``specs/contract.yaml``, ``specs/loans.csv``), one folder per model; :func:`serving`
deploys them on the session's Ray the way ``mlfleet serve up`` would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from mlfleet import registry
from mlfleet.serving.auth import digest
from mlfleet.settings import Settings
from mlfleet.spec import load_spec
from tests.support.messy import LOANS_CONTRACT, loans_frame
from tests.support.net import free_port
from tests.support.waiting import wait_for

LOAN_FEATURES = ["income", "debt_ratio", "region"]
LOGREG = ("sklearn.linear_model.LogisticRegression", {"max_iter": 300})
DUMMY = ("sklearn.dummy.DummyClassifier", {"strategy": "most_frequent"})

Model = tuple[str, dict[str, Any], str]  # estimator, its parameters, serving mode


def api_key(name: str, key: str, *scopes: str) -> dict[str, Any]:
    """The MLFLEET_API_KEYS entry of ``key`` (its digest) with ``scopes``."""
    return {"name": name, "sha256": digest(key), "scopes": list(scopes)}


def loans_spec(
    name: str,
    estimator: str,
    params: dict[str, Any],
    mode: str = "pool",
    min_improvement: float = 0.0,
) -> dict[str, Any]:
    """A one-trial spec on the loans data, in ``specs/<name>/model.yaml``'s layout."""
    return {
        "name": name,
        "contract": "../contract.yaml",
        "sources": ["../loans.csv"],
        "task": "classification",
        "features": LOAN_FEATURES,
        "split": {"test_fraction": 0.25, "seed": 5},
        "search": {
            "metric": "accuracy",
            "num_samples": 1,
            "scheduler": "fifo",
            "candidates": [{"estimator": estimator, "params": params}],
        },
        "promotion": {"min_improvement": min_improvement},
        "serving": {
            "mode": mode,
            "max_batch_size": 16,
            "batch_wait_timeout_s": 0.01,
            "autoscaling": {"min_replicas": 1, "max_replicas": 1},
        },
    }


def write_loans_fleet(root: Path, models: dict[str, Model], rows: int, seed: int) -> Path:
    """The specs folder of ``models`` under ``root``, with the data they train on."""
    specs = root / "specs"
    specs.mkdir()
    loans_frame(rows, seed=seed).to_csv(specs / "loans.csv", index=False)
    (specs / "contract.yaml").write_text(LOANS_CONTRACT)
    for name, (estimator, params, mode) in models.items():
        (specs / name).mkdir()
        (specs / name / "model.yaml").write_text(
            yaml.safe_dump(loans_spec(name, estimator, params, mode))
        )
    return specs


def train_fleet(settings: Settings, specs: Path, names: Iterable[str]) -> None:
    """Train each named spec of ``specs`` once, against the settings' registry."""
    from mlfleet.training.run import train

    registry.configure(settings)
    for name in names:
        train(load_spec(specs / name / "model.yaml"), settings)


def stop_monitor() -> None:
    """Kill the session's monitor actor, if any, and wait until its name is free (another
    module's fleet may have started one with its own settings)."""
    from mlfleet.monitoring.actor import find_monitor

    _stop_actor(find_monitor, "the monitor")


def stop_scaler() -> None:
    """Kill the session's scaler actor (model-aware scaling), if any, likewise."""
    from mlfleet.serving.scaler import find_scaler

    _stop_actor(find_scaler, "the scaler")


def _stop_actor(find: Callable[[], Any], what: str) -> None:
    import ray

    handle = find()
    if handle is not None:
        ray.kill(handle, no_restart=True)
    wait_for(lambda: find() is None, timeout=60, what=f"{what}'s name released")


@contextmanager
def serving(settings: Settings, specs: Path, gateway_replicas: int = 1) -> Iterator[str]:
    """The fleet of ``specs`` on Serve (``gateway_replicas`` gateways, one pool replica);
    yields its URL."""
    from ray import serve

    from mlfleet.serving.app import FleetArgs, build_fleet

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(
        build_fleet(
            FleetArgs(
                specs_dir=str(specs),
                gateway_min_replicas=gateway_replicas,
                gateway_max_replicas=gateway_replicas,
                pool_max_replicas=1,
            ),
            settings,
        ),
        name="fleet",
        route_prefix="/",
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()


def rows_of(frame: Any) -> list[dict[str, Any]]:
    """The loan features of ``frame`` as JSON-ready request rows."""
    return [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in frame[LOAN_FEATURES].to_dict("records")
    ]


def predict_all(
    client: httpx.Client, name: str, rows: list[dict[str, Any]], per_request: int = 10
) -> list[dict[str, Any]]:
    """Predict ``rows`` with ``name``, ``per_request`` rows a request; each answer with the
    ``X-Served-By`` header as ``served_by``."""
    out = []
    for start in range(0, len(rows), per_request):
        r = client.post(
            f"/v1/models/{name}/predict", json={"instances": rows[start : start + per_request]}
        )
        assert r.status_code == 200, r.text
        out.append({**r.json(), "served_by": r.headers["x-served-by"]})
    return out
