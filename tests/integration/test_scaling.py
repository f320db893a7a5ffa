"""Model-aware scaling on a real fleet: a pool model kept hot gets a deployment of its own,
and goes back to the pool once it cools, without a failed request; every move is listed."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mlfleet.monitoring.store import MonitorStore
from mlfleet.serving.names import SCALED_APP_PREFIX
from mlfleet.settings import Settings, get_settings
from tests.support.cli import run_cli
from tests.support.fleet import (
    DUMMY,
    LOGREG,
    Model,
    api_key,
    serving,
    stop_scaler,
    train_fleet,
    write_loans_fleet,
)
from tests.support.load import Load, Outcome
from tests.support.waiting import wait_for

pytestmark = pytest.mark.ray

KEY = "mlf_scaling_test_key"
ROW = {"income": 30000.0, "debt_ratio": 2.5, "region": "North"}
FLEET: dict[str, Model] = {"loan-hot": (*LOGREG, "pool"), "loan-cold": (*DUMMY, "pool")}
PROMOTE_RPS, FOLD_RPS = 5.0, 2.0
HOT_RPS, WARM_RPS, COLD_RPS = 12.0, 1.0, 0.5


@pytest.fixture(scope="module")
def fleet(
    ray_session: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Settings]]:
    root = tmp_path_factory.mktemp("scaling")
    specs = write_loans_fleet(root, FLEET, rows=400, seed=11)
    settings = get_settings(
        home=root / "home",
        api_keys=[api_key("app", KEY, "predict")],
        # Short windows so that a move happens within seconds; inline answers off, so that
        # every request goes to the pool or a dedicated deployment.
        scaling_enabled=True,
        scaling_promote_rps=PROMOTE_RPS,
        scaling_fold_rps=FOLD_RPS,
        scaling_window_seconds=4,
        scaling_min_dwell_seconds=2,
        scaling_interval_seconds=0.5,
        scaling_max_dedicated=1,
        gateway_inline_models=0,
        # Starting the promoted model's replica costs a few CPU-seconds; on a saturated
        # shared host the pool then stalls for seconds and would shed the backlog (503 by
        # design, docs/reliability.md). Room to queue it: this test is about the moves.
        model_max_queued_requests=512,
    )
    train_fleet(settings, specs, FLEET)
    stop_scaler()  # one another module left would keep its own settings
    with serving(settings, specs) as url:
        yield url, settings
    stop_scaler()


def load(url: str, model: str, rate: float) -> Load:
    return Load(
        url,
        f"/v1/models/{model}/predict",
        {"instances": [ROW]},
        headers={"Authorization": f"Bearer {KEY}"},
        rate=rate,
        timeout=30,
    )


def scaling(url: str, **params: Any) -> httpx.Response:
    return httpx.get(
        f"{url}/v1/scaling", params=params, headers={"Authorization": f"Bearer {KEY}"}, timeout=30
    )


def served_by(outcomes: list[Outcome], last: int = 5) -> set[str | None]:
    tail = outcomes[-last:]
    return {o.served_by for o in tail} if len(tail) == last else set()


def test_a_hot_model_is_promoted_then_folded_back_without_a_failed_request(
    fleet: tuple[str, Settings],
) -> None:
    url, settings = fleet
    from ray import serve

    started = time.monotonic()
    with load(url, "loan-cold", COLD_RPS) as cold:
        with load(url, "loan-hot", HOT_RPS) as hot:
            wait_for(
                lambda: served_by(hot.summary.outcomes) == {"dedicated"},
                timeout=240,
                what="loan-hot served by its own deployment",
            )
            promoted_after = time.monotonic() - started
            listed = {
                m["name"]: m
                for m in httpx.get(
                    f"{url}/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=30
                ).json()["models"]
            }
            assert listed["loan-hot"]["serving_mode"] == "dedicated"
            assert listed["loan-hot"]["scaled"] is True and listed["loan-hot"]["replicas"] >= 1
            assert listed["loan-cold"]["serving_mode"] == "pool"
            # The warm traffic starts before the hot stops: requests flow across the fold.
            warm = load(url, "loan-hot", WARM_RPS).__enter__()
        fold_started = time.monotonic()
        try:
            wait_for(
                lambda: (
                    not any(n.startswith(SCALED_APP_PREFIX) for n in serve.status().applications)
                ),
                timeout=180,
                what="loan-hot's own application deleted",
            )
            folded_after = time.monotonic() - fold_started
            after_fold = time.monotonic()
            wait_for(
                lambda: len([o for o in warm.since(after_fold) if o.status is not None]) >= 3,
                timeout=60,
                what="requests answered after the fold",
            )
        finally:
            warm.stop()

    summaries = {"hot": hot.summary, "warm": warm.summary, "cold": cold.summary}
    print(
        f"scaling: promoted after {promoted_after:.1f} s of hot traffic, folded "
        f"{folded_after:.1f} s after it cooled; "
        + "; ".join(f"{k}: {s.line()}" for k, s in summaries.items())
    )
    for name, summary in summaries.items():
        assert not summary.failed, f"{name}: {summary.failures}"
    assert {o.served_by for o in warm.since(after_fold)} == {"pool"}
    assert {o.served_by for o in cold.summary.outcomes} == {"pool"}

    body = scaling(url).json()
    assert body["enabled"] is True and body["scaled"] == [] and body["dedicated"] == []
    moves = [(m["model"], m["action"], m["outcome"]) for m in body["moves"]]
    assert moves == [("loan-hot", "fold", "done"), ("loan-hot", "promote", "done")]
    fold, promote = body["moves"]
    assert promote["rate"] >= PROMOTE_RPS == promote["threshold"]
    assert fold["rate"] <= FOLD_RPS == fold["threshold"]
    assert "req/s" in promote["reason"] and promote["details"]["version"] == "1"
    assert fold["at"] > promote["at"]
    # Kept in the monitor's store, where they outlive the gateway and the scaler.
    store = MonitorStore(settings.monitor_store)
    assert [m["id"] for m in store.moves()] == [m["id"] for m in body["moves"]]
    assert [m["action"] for m in scaling(url, model="loan-hot", limit=1).json()["moves"]] == [
        "fold"
    ]
    assert scaling(url, model="loan-cold").json()["moves"] == []

    # `mlfleet serve status`, joining this cluster as a user's shell would.
    import ray

    env = {
        **os.environ,
        "MLFLEET_HOME": str(settings.home),
        "MLFLEET_RAY_ADDRESS": ray.get_runtime_context().gcs_address,
    }
    status = run_cli(["serve", "status"], env, timeout=300)
    assert status.returncode == 0, status.stderr[-2000:]
    lines = status.stdout.splitlines()
    shown = lines[lines.index("recent scaling moves (newest first):") + 1 :]
    assert [line.split()[2:5] for line in shown] == [
        ["fold", "loan-hot", "(done):"],
        ["promote", "loan-hot", "(done):"],
    ]


def test_the_scaling_route_checks_its_caller_and_parameters(fleet: tuple[str, Settings]) -> None:
    url, _ = fleet
    assert httpx.get(f"{url}/v1/scaling", timeout=30).status_code == 401
    bad_name = scaling(url, model="Not A Model")
    assert bad_name.status_code == 404 and bad_name.json()["error"]["code"] == "not_found"
    too_many = scaling(url, limit=0)
    assert too_many.status_code == 422 and too_many.json()["error"]["code"] == "invalid_request"
    documented = httpx.get(f"{url}/openapi.json", timeout=30).json()["paths"]["/v1/scaling"]
    assert {"401", "403", "404", "503"} <= set(documented["get"]["responses"])
