"""Dataset versions survive retries and crashes: what issue #10's hole 8 asked for.

Each case drives the real pipeline (Ray tasks, files on disk, SQLite) and looks only at
what is left on disk or in the manifest.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from mlfleet.contract.schema import parse_contract
from mlfleet.data import validate as validate_mod
from mlfleet.data.validate import DATA_DIR, QUARANTINE_DIR, validate
from mlfleet.settings import get_settings
from tests.support.messy import CONTRACT_YAML, write_sources

pytestmark = pytest.mark.ray

IDS_CONTRACT = {
    "name": "ids",
    "keys": ["id"],
    "columns": [{"name": "id", "type": "int"}, {"name": "v", "type": "float"}],
}


def test_a_retried_dedup_task_loses_no_valid_row(ray_session: None, tmp_path: Path) -> None:
    """The worker dies right after writing its output; Ray retries the task on another."""
    import ray

    staging = tmp_path / "staging"
    (staging / DATA_DIR).mkdir(parents=True)
    (staging / QUARANTINE_DIR).mkdir()
    n = 1_000
    data_file = "part-00000-000000000001.parquet"
    pq.write_table(
        pa.table({"id": pa.array(range(n), pa.int64()), "v": pa.array(np.ones(n))}),
        staging / DATA_DIR / data_file,
    )
    positions = np.array([10, 500, 999], np.int64)  # 3 duplicates to drop
    places = [("a.csv", int(p) + 1) for p in positions]
    contract = parse_contract(IDS_CONTRACT)
    died = tmp_path / "died-once"

    @ray.remote(num_cpus=0.5, max_retries=2)
    def attempt() -> validate_mod.DroppedDuplicates:
        out = validate_mod.remove_duplicates_from_file(
            str(staging), data_file, positions, places, places, contract
        )
        if not died.exists():
            died.touch()
            os._exit(1)  # the worker dies after its writes, before Ray hears the result
        return out

    dropped = ray.get(attempt.remote())
    assert died.exists()  # the first attempt really ran and died
    assert dropped.rows == 3 and dropped.data_file is not None
    kept = pq.read_table(staging / DATA_DIR / dropped.data_file)
    assert kept.num_rows == n - 3
    assert set(range(n)) - set(kept.column("id").to_pylist()) == {10, 500, 999}
    assert pq.read_table(staging / DATA_DIR / data_file).num_rows == n  # input untouched
    dups = pq.read_table(staging / QUARANTINE_DIR / f"dup-{data_file}")
    assert dups.column("id").to_pylist() == ["10", "500", "999"]
    print(f"dedup retried after a worker death: kept {kept.num_rows}/{n}, quarantined 3")


def test_validate_sweeps_stale_staging_folders_only(ray_session: None, tmp_path: Path) -> None:
    settings = get_settings(home=tmp_path / "home")
    root = settings.datasets_dir / "customers"
    root.mkdir(parents=True)
    # Left by a validation whose process is gone (its PID recorded with its start time).
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    import psutil

    identity = {"pid": gone.pid, "started": psutil.Process(gone.pid).create_time()}
    gone.wait()
    dead = root / ".staging-aaaa-dead"
    (dead / "data").mkdir(parents=True)
    (dead / "owner.json").write_text(json.dumps({"host": os.uname().nodename, **identity}))
    # Older than the bound, with no owner file at all (a crash before it was written).
    old = root / ".staging-bbbb-old"
    old.mkdir()
    week_ago = time.time() - 7 * 24 * 3600
    os.utime(old, (week_ago, week_ago))
    # Owned by a live process (this one): a validation in progress.
    live = root / ".staging-cccc-live"
    live.mkdir()
    (live / "owner.json").write_text(
        json.dumps(
            {
                "host": os.uname().nodename,
                "pid": os.getpid(),
                "started": psutil.Process().create_time(),
            }
        )
    )
    sources = write_sources(tmp_path / "src")
    contract = parse_contract(yaml.safe_load(CONTRACT_YAML))
    result = validate(contract, sources, settings)
    left = sorted(p.name for p in root.iterdir())
    assert left == sorted([".staging-cccc-live", result.manifest.version]), left
    assert not (result.path / "owner.json").exists()
    print(f"staging sweep: removed dead-owner and week-old folders, kept {left}")


def test_a_new_threshold_never_rewrites_the_manifest(ray_session: None, tmp_path: Path) -> None:
    settings = get_settings(home=tmp_path / "home")
    sources = write_sources(tmp_path / "src")
    contract = parse_contract(yaml.safe_load(CONTRACT_YAML))
    first = validate(contract, sources, settings, max_quarantine_fraction=0.05)
    assert first.manifest.status == "failed"  # 14 of 21 rows quarantined
    before = (first.path / "manifest.json").read_bytes()

    second = validate(contract, sources, settings, max_quarantine_fraction=0.9)
    assert second.reused and second.manifest.status == "passed"
    assert (first.path / "manifest.json").read_bytes() == before
    verdicts = [json.loads(p.read_text()) for p in (first.path / "verdicts").iterdir()]
    assert [(v["status"], v["max_quarantine_fraction"]) for v in verdicts] == [("passed", 0.9)]
    print(f"re-validation at 0.9: manifest unchanged ({len(before)} bytes), 1 verdict record")


def test_sqlite_rows_still_in_the_wal_make_a_new_version(ray_session: None, tmp_path: Path) -> None:
    db = tmp_path / "ids.db"
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")  # keep new rows in the -wal file
    writer.execute("CREATE TABLE ids (id INTEGER, v REAL)")
    writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    writer.executemany("INSERT INTO ids VALUES (?, ?)", [(i, 1.0) for i in range(10)])
    writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    settings = get_settings(home=tmp_path / "home")
    contract = parse_contract(IDS_CONTRACT)
    source = [f"sqlite:///{db}?table=ids"]
    first = validate(contract, source, settings)
    db_bytes = db.read_bytes()

    writer.executemany("INSERT INTO ids VALUES (?, ?)", [(i, 2.0) for i in range(10, 15)])
    assert db.read_bytes() == db_bytes  # the new rows are only in ids.db-wal
    second = validate(contract, source, settings)
    writer.close()
    assert second.manifest.version != first.manifest.version and not second.reused
    assert (first.manifest.rows_in, second.manifest.rows_in) == (10, 15)
    print(f"SQLite WAL: {first.manifest.version} (10 rows) -> {second.manifest.version} (15 rows)")
