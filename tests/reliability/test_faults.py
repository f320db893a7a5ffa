"""Faults and overload against a real fleet on the session's Ray: a model replica, a gateway
replica and the monitor killed under load, and a burst at ten times what the fleet sustains.

One fleet for the module: two gateway replicas (one may die without an outage), a
dedicated model with two replicas (cases 1 and 2) and a pool model (cases 3 and 4) whose
replica takes 2 requests at a time with 2 more queued per gateway, so that a burst the
Python client can send overloads it. Gateways answer nothing themselves
(``gateway_inline_models=0``): every prediction crosses to a model replica, where the
faults are. Each case prints one line of what it measured.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mlfleet.monitoring.actor import call, ensure_monitor, find_monitor
from mlfleet.monitoring.state import MonitorError
from mlfleet.monitoring.store import MonitorStore
from mlfleet.monitoring.window import minute_of
from mlfleet.serving.names import APP_NAME, GATEWAY, POOL, dedicated_deployment_name
from mlfleet.settings import Settings, get_settings
from tests.support.fleet import (
    LOAN_FEATURES,
    LOGREG,
    Model,
    api_key,
    serving,
    stop_monitor,
    train_fleet,
    write_loans_fleet,
)
from tests.support.load import Load, Summary
from tests.support.messy import loans_frame
from tests.support.waiting import wait_for

pytestmark = pytest.mark.ray

KEY = "mlf_reliability_faults_key"
DEDICATED, POOLED = "rel-dedicated", "rel-pooled"
FLEET: dict[str, Model] = {DEDICATED: (*LOGREG, "dedicated"), POOLED: (*LOGREG, "pool")}
RATE = 30.0  # requests/s of the bounded client
TIMEOUT = 10.0  # each request's own timeout (a replacement replica loads its model first)
RECOVERY_S = 30.0  # a dead replica replaced, success back to 100%: within this
MAX_FAILED = 0.01  # share of non-2xx tolerated while a replica dies
SERVE_NAMESPACE = "serve"


@dataclass
class Fleet:
    url: str
    settings: Settings
    specs: Path
    ok: Counter[str]  # 2xx answers per model so far (every row a client got back)
    warm_minute: int  # the minute of the pool model's first traffic


def body(seed: int = 3) -> dict[str, Any]:
    row = loans_frame(1, seed=seed)[LOAN_FEATURES].iloc[0]
    return {"instances": [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}]}


def path(model: str) -> str:
    return f"/v1/models/{model}/predict"


HEADERS = {"Authorization": f"Bearer {KEY}"}


def write_specs(root: Path) -> Path:
    specs = write_loans_fleet(root, FLEET, rows=1200, seed=21)
    spec_file = specs / DEDICATED / "model.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["serving"]["autoscaling"] = {"min_replicas": 2, "max_replicas": 2}
    spec["serving"]["num_cpus"] = 0.2
    spec_file.write_text(yaml.safe_dump(spec))
    return specs


@pytest.fixture(scope="module")
def fleet(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("faults-fleet")
    specs = write_specs(root)
    settings = get_settings(
        home=root / "home",
        api_keys=[api_key("load", KEY, "predict")],
        gateway_inline_models=0,
        model_max_ongoing_requests=2,  # the pool; a dedicated replica takes 2 x its batch
        model_max_queued_requests=2,
        monitor_flush_seconds=0.5,
        monitor_evaluate_seconds=2.0,
        monitor_window_rows=1_000_000,  # the window holds every row the module sends
    )
    train_fleet(settings, specs, FLEET)
    stop_monitor()
    ensure_monitor(settings, specs_dir=specs)
    ok: Counter[str] = Counter()
    with (
        serving(settings, specs, gateway_replicas=2) as url,
        httpx.Client(base_url=url, headers=HEADERS, timeout=60) as client,
    ):
        warm_minute = minute_of(time.time())
        for model in FLEET:  # every replica loads its model before the cases time anything
            for _ in range(20):
                r = client.post(path(model), json=body())
                assert r.status_code == 200, r.text
                ok[model] += 1
        yield Fleet(url, settings, specs, ok, warm_minute)
    stop_monitor()


# --- looking at Serve from outside -----------------------------------------------------------


def replicas(deployment: str) -> dict[str, str]:
    """The live replica actors of ``deployment``: actor name -> actor id."""
    import ray

    prefix = f"SERVE_REPLICA::{APP_NAME}#{deployment}#"
    out = {}
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["namespace"] == SERVE_NAMESPACE and entry["name"].startswith(prefix):
            try:
                handle = ray.get_actor(entry["name"], namespace=SERVE_NAMESPACE)
            except ValueError:  # gone since it was listed
                continue
            out[entry["name"]] = handle._actor_id.hex()
    return out


def running(deployment: str) -> int:
    from ray import serve

    dep = serve.status().applications[APP_NAME].deployments[deployment]
    states = {str(getattr(state, "value", state)): n for state, n in dep.replica_states.items()}
    return states.get("RUNNING", 0)


def kill_one_under_load(fleet: Fleet, deployment: str, model: str) -> None:
    """Case 1 and 2: kill one replica of ``deployment`` under paced load on ``model``."""
    import ray

    before = replicas(deployment)
    assert len(before) == 2 and running(deployment) == 2, before
    victim = sorted(before)[0]
    with Load(fleet.url, path(model), body(), headers=HEADERS, timeout=TIMEOUT, rate=RATE) as load:
        wait_for(lambda: load.summary.ok >= RATE * 2, timeout=30, what="traffic flowing")
        ray.kill(ray.get_actor(victim, namespace=SERVE_NAMESPACE), no_restart=True)
        killed = time.monotonic()

        def replaced() -> bool:
            now = replicas(deployment)
            return victim not in now and len(now) == 2 and running(deployment) == 2

        wait_for(replaced, timeout=RECOVERY_S + 30, what=f"a new {deployment} replica")
        recovery = time.monotonic() - killed
        # Traffic on the replacement too, before stopping.
        settle = time.monotonic()
        wait_for(lambda: len(load.since(settle)) >= RATE * 2, timeout=30, what="more traffic")
    summary = load.stop()
    fleet.ok[model] += summary.ok
    failed = len(summary.failed)
    print(
        f"\n[{deployment} replica killed] {summary.line()} failed={failed / summary.sent:.2%} "
        f"skipped={load.skipped} replacement_running_after={recovery:.1f}s "
        f"failures={dict(summary.failures)}"
    )
    assert failed <= MAX_FAILED * summary.sent, summary.failures
    assert not [o for o in summary.outcomes if o.status is None], "a request got no answer"
    assert summary.max_elapsed < TIMEOUT
    assert recovery <= RECOVERY_S
    assert {o.served_by for o in summary.outcomes if o.ok} == {"dedicated"}


def test_replica_death_under_load(fleet: Fleet) -> None:
    kill_one_under_load(fleet, dedicated_deployment_name(DEDICATED), DEDICATED)


def test_gateway_death_under_load(fleet: Fleet) -> None:
    kill_one_under_load(fleet, GATEWAY, DEDICATED)


# --- overload ----------------------------------------------------------------------------------


def closed_loop(fleet: Fleet, concurrency: int, seconds: float) -> Summary:
    with Load(
        fleet.url, path(POOLED), body(), headers=HEADERS, timeout=TIMEOUT, concurrency=concurrency
    ) as load:
        time.sleep(seconds)  # the load runs for this long; nothing to wait on
    summary = load.stop()
    fleet.ok[POOLED] += summary.ok
    return summary


def sustainable_concurrency(fleet: Fleet) -> tuple[int, dict[int, float]]:
    """The concurrency past which throughput stops growing (or requests start failing)."""
    seconds = 2.0
    throughput: dict[int, float] = {}
    best = 1
    for concurrency in (1, 2, 4, 8):
        summary = closed_loop(fleet, concurrency, seconds)
        throughput[concurrency] = summary.ok / seconds
        if summary.failed or throughput[concurrency] < 1.1 * throughput[best]:
            break
        best = concurrency
    return best, throughput


def test_overload_is_shed_with_503_and_retry_after(fleet: Fleet) -> None:
    before = {dep: replicas(dep) for dep in (GATEWAY, POOL)}
    sustainable, throughput = sustainable_concurrency(fleet)
    burst = 10 * sustainable
    summary = closed_loop(fleet, burst, 5.0)
    ended = time.monotonic()
    # Success back to 100%: twenty answers in a row, all 2xx.
    streak = 0
    with httpx.Client(base_url=fleet.url, headers=HEADERS, timeout=TIMEOUT) as client:
        while streak < 20 and time.monotonic() - ended < RECOVERY_S + 30:
            r = client.post(path(POOLED), json=body())
            streak = streak + 1 if r.status_code == 200 else 0
            fleet.ok[POOLED] += r.status_code == 200
    back = time.monotonic() - ended
    shed = [o for o in summary.outcomes if o.status == 503]
    others = [o for o in summary.failed if o.status != 503]
    print(
        f"\n[overload] throughput by concurrency {throughput} -> sustainable {sustainable}; "
        f"burst of {burst}: {summary.line()} shed={len(shed) / summary.sent:.0%}; "
        f"100% success again {back:.1f}s after"
    )
    assert shed, "a burst at 10x the sustainable concurrency was not shed"
    assert not others, Counter((o.status, o.error) for o in others)
    assert all(o.retry_after == str(fleet.settings.overload_retry_after_seconds) for o in shed)
    assert {o.code for o in shed} == {"overloaded"}  # the JSON envelope, not Serve's text
    assert summary.ok > 0  # shedding the excess, not everything
    assert streak == 20 and back <= RECOVERY_S
    assert {dep: replicas(dep) for dep in (GATEWAY, POOL)} == before  # no replica crashed


# --- the monitor ------------------------------------------------------------------------------


def pool_buckets(settings: Settings) -> dict[tuple[str, int], tuple[int, str]]:
    """The stored sketch buckets of the pool model: (version, minute) -> (rows, counts)."""
    store = MonitorStore(settings.monitor_store)
    try:
        return {
            (b.version, b.minute): (b.rows, b.data)
            for b in store.load_buckets(0)
            if b.model == POOLED and b.kind == "sketch"
        }
    finally:
        store.close()


def counted(settings: Settings) -> int:
    return sum(rows for rows, _ in pool_buckets(settings).values())


def pool_sender() -> dict[str, Any]:
    from ray import serve

    stats: dict[str, Any] = (
        serve.get_deployment_handle(POOL, app_name=APP_NAME).sender_stats.remote().result()
    )
    return stats


def monitor_pid() -> int | None:
    """The monitor's process id, None while it does not answer."""
    handle = find_monitor()
    if handle is None:
        return None
    try:
        pid: int = call(handle.health.remote(), timeout=5)["pid"]
    except MonitorError:
        return None
    return pid


def test_monitor_death_while_replicas_flush(fleet: Fleet) -> None:
    import ray

    settings = fleet.settings
    wait_for(
        lambda: counted(settings) == fleet.ok[POOLED],
        timeout=30,
        what="the monitor counting every row answered so far",
    )
    # A past minute holds rows: the minute of the first stored rows must end (the warm-up
    # may have crossed into the next minute after ``warm_minute`` was taken).
    first = min(minute for _, minute in pool_buckets(settings))
    wait_for(lambda: minute_of(time.time()) > first, timeout=70, what="a minute ending")
    history = pool_buckets(settings)
    now = minute_of(time.time())
    past = {key: value for key, value in history.items() if key[1] < now}
    assert past
    monitor = find_monitor()
    pid_before = monitor_pid()
    with Load(fleet.url, path(POOLED), body(), headers=HEADERS, timeout=TIMEOUT, rate=RATE) as load:
        wait_for(lambda: load.summary.ok >= RATE * 2, timeout=30, what="traffic flowing")
        ray.kill(monitor, no_restart=False)
        killed = time.monotonic()
        wait_for(
            lambda: monitor_pid() not in (None, pid_before),
            timeout=60,
            what="the monitor restarted",
        )
        restarted = time.monotonic() - killed
        settle = time.monotonic()
        wait_for(lambda: len(load.since(settle)) >= RATE * 2, timeout=30, what="more traffic")
    summary = load.stop()
    fleet.ok[POOLED] += summary.ok
    expected = fleet.ok[POOLED]
    wait_for(
        lambda: counted(settings) == expected,
        timeout=60,
        what=f"the monitor counting the {expected} rows answered",
    )
    health = call(find_monitor().health.remote())
    sender = pool_sender()
    after = pool_buckets(settings)

    def api_rows() -> int | None:
        r = httpx.get(f"{fleet.url}/v1/monitoring/{POOLED}", headers=HEADERS, timeout=TIMEOUT)
        rows = r.json()["rows"] if r.status_code == 200 else None
        return rows if rows == expected else None

    shown = wait_for(api_rows, timeout=30, what="GET /v1/monitoring showing every row")
    print(
        f"\n[monitor killed] {summary.line()} restarted_after={restarted:.1f}s "
        f"answered_2xx={expected} counted={counted(settings)} shown={shown} "
        f"past_buckets={len(past)} dropped={health['dropped_rows']}/{sender['dropped_rows']}"
        f" failures={dict(summary.failures)}"
    )
    assert {key: after[key] for key in past} == past  # history unchanged
    assert health["dropped_rows"] == 0 and sender["dropped_rows"] == 0
    assert sender["pending_rows"] == 0
