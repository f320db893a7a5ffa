"""The production profile for real: an MLflow tracking server on PostgreSQL with its artifact
root on disk, and the monitor's store on the same PostgreSQL (``tests/support/postgres.py``
starts both). On it: two ``mlfleet train`` processes at once, a fleet served from the
tracking server, a promotion through the gateway's admin route, and monitoring whose tables
are read back from PostgreSQL. One fleet for the module."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from examples.quickstart import EXAMPLE_ROWS
from mlfleet import registry
from mlfleet.monitoring.feedback import PredictionLog
from mlfleet.monitoring.store import (
    Alert,
    Batch,
    BucketRow,
    ModelRow,
    MonitorStore,
    SenderRow,
    StatusChange,
    new_id,
)
from mlfleet.settings import Settings, get_settings
from tests.support import REPO
from tests.support.cli import run_cli
from tests.support.fleet import api_key, serving, stop_monitor
from tests.support.messy import example_spec_copy
from tests.support.net import free_port
from tests.support.postgres import MlflowServer, Postgres
from tests.support.waiting import wait_for

pytestmark = pytest.mark.ray

MODEL = "diabetes-progression"
PREDICT_KEY, ADMIN_KEY = "mlf_production_predict_key", "mlf_production_admin_key"
FEATURES = list(EXAMPLE_ROWS[MODEL])
TRAFFIC_ROWS = 40


@dataclass
class Profile:
    settings: Settings
    env: dict[str, str]  # the CLI's environment: the same profile through MLFLEET_* variables
    specs: Path
    postgres: Postgres
    server: MlflowServer


@pytest.fixture(scope="module")
def profile(
    tmp_path_factory: pytest.TempPathFactory,
    ray_session: None,
    postgres: Postgres,
    mlflow_server: MlflowServer,
) -> Profile:
    import ray

    root = tmp_path_factory.mktemp("production")
    specs = root / "specs"
    example_spec_copy(REPO, specs, "diabetes", num_samples=1)
    settings = get_settings(
        home=root / "home",
        mlflow_tracking_uri=mlflow_server.url,
        monitor_store_url=postgres.url("monitor"),
        api_keys=[
            api_key("app", PREDICT_KEY, "predict"),
            api_key("ops", ADMIN_KEY, "predict", "admin"),
        ],
        alias_refresh_seconds=0.5,
        monitor_flush_seconds=0.3,
        monitor_evaluate_seconds=2.0,
    )
    registry.configure(settings)
    env = {
        **os.environ,
        "MLFLEET_HOME": str(settings.home),
        "MLFLEET_MLFLOW_TRACKING_URI": mlflow_server.url,
        "MLFLEET_MONITOR_STORE_URL": postgres.url("monitor"),
        # The CLI joins the session's Ray instead of starting one of its own per process.
        "MLFLEET_RAY_ADDRESS": ray.get_runtime_context().gcs_address,
    }
    env.pop("MLFLEET_API_KEYS", None)
    return Profile(settings, env, specs, postgres, mlflow_server)


@pytest.fixture(scope="module")
def trainings(profile: Profile) -> list[subprocess.CompletedProcess[str]]:
    """Two ``mlfleet train`` processes of the same spec, started together."""
    spec = str(profile.specs / "diabetes" / "model.yaml")
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = [pool.submit(run_cli, ["train", spec, "--json"], profile.env, 600) for _ in range(2)]
        return [r.result() for r in runs]


def champion() -> str:
    found = registry.alias_version(MODEL, registry.CHAMPION)
    assert found is not None, "no champion"
    return found.version


def query(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` read straight from PostgreSQL, not through mlfleet or MLflow."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params)]
    finally:
        engine.dispose()


def test_two_trainings_at_once_both_register_on_postgres(
    trainings: list[subprocess.CompletedProcess[str]], profile: Profile
) -> None:
    for run in trainings:
        assert run.returncode == 0, run.stderr[-3000:]
        assert "Traceback" not in run.stderr
    results = [json.loads(run.stdout) for run in trainings]
    versions = sorted(r["version"] for r in results)
    assert versions == ["1", "2"]
    print(
        "production profile: two trainings at once registered versions 1 and 2 in "
        + " and ".join(f"{r['seconds']:.0f} s" for r in results)
    )
    assert champion() in versions

    # The registry lives in the server's PostgreSQL database...
    stored = query(
        profile.postgres.url("mlflow"),
        "SELECT version, source FROM model_versions WHERE name = :name ORDER BY version",
        name=MODEL,
    )
    assert [str(v) for v, _ in stored] == ["1", "2"]
    # ...the artifacts under the server's root on disk, uploaded through the server...
    assert len(list(profile.server.artifacts.rglob("MLmodel"))) == 2
    # ...and nothing in the local defaults.
    assert not (profile.settings.home / "mlflow.db").exists()
    assert not (profile.settings.home / "mlartifacts").exists()


def test_many_writers_of_one_alias_at_once_all_succeed(
    trainings: list[subprocess.CompletedProcess[str]], profile: Profile
) -> None:
    # Two trainings of one model setting its challenger together once failed one of them on
    # the tracking server (a stale UPDATE of the alias row). Many writers at once, here.
    from mlflow import MlflowClient

    before = registry.alias_version(MODEL, registry.CHALLENGER)

    def write(worker: int) -> None:
        for i in range(15):
            registry.set_challenger(MODEL, "1" if (worker + i) % 2 else "2")

    with ThreadPoolExecutor(max_workers=6) as pool:
        for future in [pool.submit(write, w) for w in range(6)]:
            future.result()  # raises what a writer raised
    registry.set_challenger(MODEL, "2")
    last = registry.alias_version(MODEL, registry.CHALLENGER)
    assert last is not None and last.version == "2"
    if before is None:  # as the trainings left it, for the tests after this one
        MlflowClient().delete_registered_model_alias(MODEL, registry.CHALLENGER)
    else:
        registry.set_challenger(MODEL, before.version)


def test_a_tracking_server_that_does_not_answer_is_one_line(profile: Profile) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {**profile.env, "MLFLEET_MLFLOW_TRACKING_URI": down}
    spec = str(profile.specs / "diabetes" / "model.yaml")
    for args in (["train", spec], ["models", "list"]):
        run = run_cli(args, env, timeout=120)
        assert run.returncode == 1, run.stderr
        assert "Traceback" not in run.stderr
        (line,) = run.stderr.strip().splitlines()
        assert "MLFLEET_MLFLOW_TRACKING_URI" in line and down in line


@pytest.fixture(scope="module")
def fleet(trainings: list[subprocess.CompletedProcess[str]], profile: Profile) -> Iterator[str]:
    assert all(run.returncode == 0 for run in trainings), "the trainings failed"
    stop_monitor()  # the gateway starts one with this profile's store
    with serving(profile.settings, profile.specs) as url:
        yield url
    stop_monitor()


def predict(url: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    r = httpx.post(
        f"{url}/v1/models/{MODEL}/predict",
        json={"instances": rows},
        headers={"Authorization": f"Bearer {PREDICT_KEY}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_the_fleet_serves_the_champion_from_the_tracking_server(fleet: str) -> None:
    body = predict(fleet, [EXAMPLE_ROWS[MODEL]])
    assert body["version"] == champion()
    assert isinstance(body["predictions"][0], float)


def test_promotion_through_the_admin_route(fleet: str, profile: Profile) -> None:
    other = "1" if champion() == "2" else "2"
    url = f"{fleet}/v1/models/{MODEL}/promote"
    refused = httpx.post(
        url,
        json={"version": other},
        headers={"Authorization": f"Bearer {PREDICT_KEY}"},
        timeout=60,
    )
    assert refused.status_code == 403, refused.text
    done = httpx.post(
        url,
        json={"version": other},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=60,
    )
    assert done.status_code == 200, done.text
    assert champion() == other
    aliases = query(
        profile.postgres.url("mlflow"),
        "SELECT version FROM registered_model_aliases WHERE name = :name AND alias = :alias",
        name=MODEL,
        alias=registry.CHAMPION,
    )
    assert [str(v) for (v,) in aliases] == [other]
    wait_for(
        lambda: predict(fleet, [EXAMPLE_ROWS[MODEL]])["version"] == other,
        timeout=30,
        what=f"the gateway to serve v{other}",
    )


def traffic() -> tuple[list[dict[str, Any]], list[float]]:
    """Rows of the example data and their true progression (the labels that come back)."""
    frame = pd.read_csv(REPO / "specs" / "diabetes" / "data" / "diabetes.csv", dtype={"sex": str})
    frame = frame.head(TRAFFIC_ROWS)
    rows = [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in frame[FEATURES].to_dict("records")
    ]
    return rows, [float(v) for v in frame["progression"]]


def test_monitoring_keeps_its_tables_in_postgres(fleet: str, profile: Profile) -> None:
    rows, truth = traffic()
    since = time.time() - 600
    headers = {"Authorization": f"Bearer {PREDICT_KEY}"}
    labels = []
    for start in range(0, len(rows), 10):
        request_id = predict(fleet, rows[start : start + 10])["request_id"]
        labels += [
            {"request_id": request_id, "row": i, "label": truth[start + i]} for i in range(10)
        ]

    def monitored_rows() -> int:
        r = httpx.get(f"{fleet}/v1/monitoring", headers=headers, timeout=30)
        if r.status_code != 200:
            return 0
        models = {m["model"]: m for m in r.json()["models"]}
        return int(models.get(MODEL, {}).get("rows") or 0)

    seen = wait_for(
        lambda: monitored_rows() >= TRAFFIC_ROWS, timeout=60, what="the monitor to count rows"
    )
    assert seen

    # The monitor counts a flush as soon as it applies it and stores it with the next
    # group commit (it acknowledges the sender only then): the rows reach PostgreSQL
    # shortly after the API shows them.
    monitor_db = profile.postgres.url("monitor")

    def stored_rows(kind: str = "sketch") -> int:
        """Rows of the model's stored buckets of ``kind`` since the test began."""
        (total,) = query(
            monitor_db,
            "SELECT COALESCE(SUM(rows), 0) FROM monitor_buckets "
            "WHERE model = :model AND kind = :kind AND minute >= :minute",
            model=MODEL,
            kind=kind,
            minute=int(since // 60),
        )
        return int(total[0])

    wait_for(
        lambda: stored_rows() >= TRAFFIC_ROWS, timeout=30, what="the counted rows to be stored"
    )
    (senders,) = query(monitor_db, "SELECT COUNT(*) FROM monitor_senders")
    assert senders[0] >= 1
    (logged,) = query(
        monitor_db, "SELECT COUNT(*) FROM feedback_predictions WHERE model = :model", model=MODEL
    )
    assert logged[0] >= TRAFFIC_ROWS

    # Labels join the logged predictions (an UPDATE per row on PostgreSQL) and become
    # realised error counters in the buckets.
    r = httpx.post(
        f"{fleet}/v1/models/{MODEL}/feedback", json={"labels": labels}, headers=headers, timeout=60
    )
    assert r.status_code == 200, r.text
    assert r.json()["matched"] == TRAFFIC_ROWS
    (labelled,) = query(
        monitor_db,
        "SELECT COUNT(*) FROM feedback_predictions WHERE model = :model AND label IS NOT NULL",
        model=MODEL,
    )
    assert labelled[0] == TRAFFIC_ROWS

    wait_for(
        lambda: stored_rows("error") == TRAFFIC_ROWS, timeout=30, what="realised counters stored"
    )
    assert not (profile.settings.home / "monitor.db").exists()
    # What the store reads back (its own SQL on PostgreSQL) matches the raw table.
    store = MonitorStore(monitor_db)
    try:
        stored = [b for b in store.load_buckets(int(since // 60)) if b.model == MODEL]
        assert sum(b.rows for b in stored if b.kind == "sketch") == stored_rows()
        assert {m.model for m in store.load_models()} >= {MODEL}
    finally:
        store.close()


def test_the_monitor_store_on_postgres(postgres: Postgres) -> None:
    """What differs by dialect: upserts (a key twice in one group commit, then again), 64-bit
    counters, insert-if-new alerts, JSON text merged on update, ids, pruning."""
    huge = 2**40  # beyond a 32-bit INTEGER: counters and sequence numbers are BIGINT
    minute = 29_000_000
    store = MonitorStore(postgres.url("scratch"))
    try:
        alert = Alert(new_id(), "m", "1", 60.0 * minute, None, "ok", "first", {"x": [1, 2]})
        store.write(
            Batch(
                buckets=[
                    BucketRow("m", "1", minute, "sketch", 5, '{"n": 5}'),
                    BucketRow("m", "1", minute, "sketch", huge, '{"n": "last"}'),
                ],
                senders=[SenderRow("s", huge, (huge + 2,), huge, 1.0)],
                models=[ModelRow("m", "1", "ok", "ok", 0, 1.0, '{"rows": 5}')],
                changes=[StatusChange("m", "1", 60.0 * minute, None, "ok", huge, "first")],
                alerts=[alert],
            )
        )
        store.write(Batch(buckets=[BucketRow("m", "1", minute + 1, "sketch", 1, "{}")]))
        store.write(Batch(buckets=[BucketRow("m", "1", minute + 1, "sketch", 2, '{"n": 2}')]))
        store.record_alert(alert)  # the same id again: kept as it was
        store.update_alert(alert.id, "webhook", {"ok": True, "attempts": 2})
        retrain = store.record_retrain("m", reason="drift", version="1")
        store.update_retrain(retrain, status="running", details={"job": "j"})

        buckets = {(b.minute, b.rows, b.data) for b in store.load_buckets(minute)}
        assert buckets == {(minute, huge, '{"n": "last"}'), (minute + 1, 2, '{"n": 2}')}
        assert store.load_senders() == [SenderRow("s", huge, (huge + 2,), huge, 1.0)]
        assert [h["rows"] for h in store.status_history("m")] == [huge]
        (stored,) = store.alerts("m")
        assert stored["reason"] == "first" and stored["details"] == {"x": [1, 2]}
        assert stored["deliveries"] == {"webhook": {"ok": True, "attempts": 2}}
        assert store.last_retrains()["m"]["status"] == "running"
        assert store.last_retrains()["m"]["details"] == {"job": "j"}

        # Ids that only grow are 64-bit too (a SERIAL would stop at 2**31 rows).
        PredictionLog(store.engine, Path("unused"))  # creates the prediction log's table
        ids = query(
            postgres.url("scratch"),
            "SELECT table_name, data_type FROM information_schema.columns "
            "WHERE column_name = 'id' AND table_name IN "
            "('monitor_status_history', 'feedback_predictions') ORDER BY table_name",
        )
        assert ids == [("feedback_predictions", "bigint"), ("monitor_status_history", "bigint")]

        assert store.prune(minute + 1, 60.0 * minute + 1, keep_models=[]) == 1
        assert [b.minute for b in store.load_buckets(0)] == [minute + 1]
        assert store.load_senders() == [] and store.status_history("m") == []
    finally:
        store.close()
