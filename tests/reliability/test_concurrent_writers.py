"""Suite case 8, concurrent writers: two trainings and a serving gateway on one SQLite store.

Two `mlfleet train` processes for different models run at once against the same MLflow
SQLite database (runs, metrics, artifacts' records, registered versions, aliases), while a
served fleet answers `/v1/models` and predictions from that same database.

Pass criterion: both trainings exit 0 and register their version, no output of any
process says `database is locked`, and every gateway request meanwhile answers 2xx.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlfleet import registry
from mlfleet.settings import Settings, get_settings
from tests.support import REPO
from tests.support.cli import MLFLEET
from tests.support.fleet import DUMMY, LOGREG, serving, train_fleet, write_loans_fleet

ROUNDS = 1  # rounds of two concurrent trainings; each registers one version per model
ROW = {"income": 30000.0, "debt_ratio": 0.5, "region": "north"}


@pytest.fixture(scope="module")
def fleet(
    ray_session: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, Path, str]]:
    served = tmp_path_factory.mktemp("served")
    trained = tmp_path_factory.mktemp("trained")
    settings = get_settings(home=tmp_path_factory.mktemp("home"))
    served_specs = write_loans_fleet(served, {"served": (*LOGREG, "pool")}, rows=400, seed=3)
    train_specs = write_loans_fleet(
        trained, {"alpha": (*LOGREG, "pool"), "beta": (*DUMMY, "pool")}, rows=400, seed=4
    )
    train_fleet(settings, served_specs, ["served"])
    with serving(settings, served_specs) as url:
        yield settings, train_specs, url


def _reader(url: str, stop: threading.Event, codes: Counter[str]) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            for method, path, body in (
                ("GET", "/v1/models", None),
                ("POST", "/v1/models/served/predict", {"instances": [ROW]}),
            ):
                try:
                    r = client.request(method, path, json=body)
                    codes[f"{r.status_code}"] += 1
                except httpx.HTTPError as exc:
                    codes[type(exc).__name__] += 1
            time.sleep(0.05)


def test_two_trainings_and_the_gateway_share_one_sqlite_store(
    fleet: tuple[Settings, Path, str],
) -> None:
    import ray

    settings, specs, url = fleet
    env = {
        **os.environ,
        "MLFLEET_HOME": str(settings.home),
        "MLFLEET_RAY_ADDRESS": ray.get_runtime_context().gcs_address,
    }
    codes: Counter[str] = Counter()
    stop = threading.Event()
    reader = threading.Thread(target=_reader, args=(url, stop, codes), daemon=True)
    reader.start()
    outputs: list[str] = []
    started = time.monotonic()
    try:
        for _ in range(ROUNDS):
            procs = [
                subprocess.Popen(
                    [*MLFLEET, "train", str(specs / name / "model.yaml")],
                    env=env,
                    cwd=REPO,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                for name in ("alpha", "beta")
            ]
            for proc in procs:
                out, _ = proc.communicate(timeout=300)
                outputs.append(out)
                assert proc.returncode == 0, out[-3000:]
    finally:
        stop.set()
        reader.join(timeout=60)
    elapsed = time.monotonic() - started

    locked = [o for o in outputs if "database is locked" in o]
    registry.configure(settings)
    versions = {name: len(registry.model_versions(name)) for name in ("alpha", "beta")}
    ok = sum(n for code, n in codes.items() if code.startswith("2"))
    total = sum(codes.values())
    print(
        f"concurrent writers: {2 * ROUNDS} trainings in {elapsed:.0f}s, versions {versions}, "
        f"'database is locked' in {len(locked)} outputs, gateway {ok}/{total} 2xx {dict(codes)}"
    )
    store = Path(settings.tracking_uri.removeprefix("sqlite:///"))
    with sqlite3.connect(store) as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    conn.close()
    print(f"tracking store journal mode: {mode}")
    assert mode == "wal"  # readers never wait for a writer
    assert not locked, locked[0][-3000:]
    assert versions == {"alpha": ROUNDS, "beta": ROUNDS}
    assert total > 0 and ok == total, dict(codes)
