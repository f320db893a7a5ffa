"""Validation on a real Ray cluster over CSV + JSON lines + SQLite with known faults.

These inputs are small, so auto would check them in process: they ask for Ray Data by name
(tests/integration/test_validate_engines.py shows the local engine writes the same)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from mlfleet.contract.schema import parse_contract
from mlfleet.data.validate import ValidationResult, validate
from mlfleet.settings import get_settings
from tests.support.messy import CONTRACT_YAML, write_sources

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return write_sources(tmp_path_factory.mktemp("sources"))


@pytest.fixture(scope="module")
def result(
    ray_session: None, sources: list[str], tmp_path_factory: pytest.TempPathFactory
) -> ValidationResult:
    settings = get_settings(home=tmp_path_factory.mktemp("home"))
    contract = parse_contract(yaml.safe_load(CONTRACT_YAML))
    return validate(contract, sources, settings, max_quarantine_fraction=0.05, engine="ray")


def test_counts_reconcile_exactly(result: ValidationResult) -> None:
    m = result.manifest
    assert (m.rows_in, m.rows_valid, m.rows_quarantined) == (21, 7, 14)
    assert m.reasons == {
        "below_min": 2,
        "type": 3,
        "not_in_values": 1,
        "missing": 1,
        "pattern": 1,
        "above_max": 1,
        "unknown_column": 1,
        "duplicate": 4,
    }
    assert [(s.rows, s.rows_valid, s.rows_quarantined) for s in m.sources] == [
        (8, 3, 5),
        (7, 2, 5),
        (6, 2, 4),
    ]
    assert m.status == "failed"  # 14/21 is far over 5%
    assert m.keys == ["customer_id"]
    assert all(len(s.sha256) == 64 for s in m.sources)


def test_curated_data_is_typed_and_keeps_first_occurrences(result: ValidationResult) -> None:
    table = pq.read_table(result.path / "data")
    assert table.schema.field("customer_id").type == pa.int64()
    assert table.schema.field("signup_date").type == pa.timestamp("us")
    assert table.schema.field("churned").type == pa.bool_()
    rows = {r["customer_id"]: r for r in table.to_pylist()}
    assert sorted(rows) == [1, 2, 3, 8, 12, 13, 16]
    assert rows[1]["monthly_spend"] == 10.5  # the website's row, not the app's resend
    assert rows[1]["plan"] == "pro"  # " Pro " normalised
    assert rows[3]["signup_date"] == dt.datetime(2024, 1, 6)  # 06/01/2024 as %d/%m/%Y
    assert rows[3]["age"] is None
    assert rows[2]["age"] == 30  # from the app: the web row was invalid
    assert rows[16]["churned"] is False  # "no" stored as text in an INTEGER column


def test_quarantine_keeps_raw_values_provenance_and_reasons(
    result: ValidationResult, sources: list[str]
) -> None:
    q = pq.read_table(result.path / "quarantine").to_pylist()
    assert len(q) == 14
    by_place = {
        (Path(r["_source"].split("?")[0].removeprefix("sqlite:///")).name, r["_row"]): r for r in q
    }
    assert by_place[("web.csv", 4)]["customer_id"] == "x4"
    assert by_place[("web.csv", 4)]["_reasons"] == ["type"]
    assert by_place[("web.csv", 5)]["plan"] == "gold"
    assert by_place[("web.csv", 6)]["_details"] == ["monthly_spend:missing"]
    assert by_place[("app.jsonl", 2)]["_reasons"] == ["unknown_column"]
    assert json.loads(by_place[("app.jsonl", 2)]["_extra"]) == {"referrer": "ad"}
    assert by_place[("app.jsonl", 3)]["_reasons"] == ["duplicate"]
    assert by_place[("app.jsonl", 4)]["churned"] == "maybe"
    assert by_place[("crm.db", 2)]["signup_date"] == "2024/03/02"
    assert by_place[("crm.db", 3)]["_reasons"] == ["duplicate"]
    assert by_place[("crm.db", 4)]["_reasons"] == ["duplicate"]
    assert by_place[("crm.db", 5)]["_reasons"] == ["below_min"]
    assert by_place[("crm.db", 4)]["_source"].startswith("sqlite:///")
    assert by_place[("crm.db", 4)]["_source"].endswith("/crm.db?table=customers")
    assert by_place[("web.csv", 4)]["_source"] == str(Path(sources[0]).resolve())


def test_profile_and_report(result: ValidationResult) -> None:
    profile = json.loads((result.path / "profile.json").read_text())
    age = profile["features"]["age"]
    assert age["kind"] == "numeric"
    assert sum(age["counts"]) == 6 and age["nulls"] == 1
    assert age["edges"][0] == 25 and age["edges"][-1] == 80
    # The app's resend of customer 1 (spend 99.0) was the largest value before de-duplication.
    spend = profile["features"]["monthly_spend"]
    assert (spend["min"], spend["max"], sum(spend["counts"])) == (0.0, 30.0, 7)
    assert profile["features"]["plan"]["frequencies"] == {"basic": 3, "pro": 2, "enterprise": 2}
    # A flag is numeric, as the training pipeline and the monitor read it: 0 or 1.
    churned = profile["features"]["churned"]
    assert churned["kind"] == "numeric" and (churned["min"], churned["max"]) == (0.0, 1.0)
    assert "email" not in profile["features"]  # free text is not profiled
    report = json.loads((result.path / "report.json").read_text())
    assert report["rows_quarantined"] == 14
    failures = {(f["column"], f["code"]): f for f in report["failures"]}
    assert failures[("plan", "not_in_values")]["examples"][0]["value"] == "gold"
    assert failures[("customer_id", "duplicate")]["count"] == 4
    assert report["columns"]["age"]["nulls"] == 1
    html = (result.path / "report.html").read_text()
    assert "customers" in html and "not_in_values" in html and "<script" not in html


def test_timings_cover_every_step_and_part_of_a_batch(result: ValidationResult) -> None:
    t = result.timings
    steps = ["hash_sources", "ray", "read_check", "dedup", "profile", "report", "publish"]
    assert list(t.wall_s) == [*steps, "total"]
    assert t.wall_s["total"] >= sum(t.wall_s[s] for s in steps) > 0
    parts = {"check", "quarantine", "write", "key_hashes", "sketches"}
    assert set(t.cpu_s) == parts | {"batches", "between_batches", "dedup"}
    assert all(t.cpu_s[p] > 0 for p in parts)  # every source has valid and rejected rows
    assert t.cpu_s["batches"] >= sum(t.cpu_s[p] for p in parts)
    assert t.cpu_s["dedup"] > 0  # two files held duplicates
    assert t.batches >= 3 and t.workers >= 1  # at least one batch per source


def test_revalidation_is_idempotent_and_content_addressed(
    result: ValidationResult, sources: list[str], tmp_path: Path
) -> None:
    contract = parse_contract(yaml.safe_load(CONTRACT_YAML))
    settings = get_settings(home=result.path.parents[2])
    again = validate(contract, sources, settings, max_quarantine_fraction=0.05)
    assert again.reused and again.manifest.version == result.manifest.version
    assert again.manifest.created_at == result.manifest.created_at
    assert list(again.timings.wall_s) == ["hash_sources", "total"] and again.timings.batches == 0
    # Same bytes elsewhere: same version; one changed byte: a new version.
    moved = write_sources(tmp_path / "copy")
    assert validate(contract, moved, settings).manifest.version == result.manifest.version
    Path(moved[0]).write_text(Path(moved[0]).read_text().replace("10.5", "10.6"))
    changed = validate(contract, moved, settings, max_quarantine_fraction=0.05)
    assert changed.manifest.version != result.manifest.version
    assert not changed.reused


def test_parquet_row_numbers_across_batches_and_tasks(ray_session: None, tmp_path: Path) -> None:
    n = 600_000
    ids = pa.array(range(1, n + 1), pa.int64())
    ages = [30] * n
    ages[299_999] = 5  # row 300,000 (third batch boundary region)
    ages[n - 1] = 500  # the very last row
    table = pa.table({"id": ids, "age": pa.array(ages, pa.int64())})
    path = tmp_path / "big.parquet"
    pq.write_table(table, path, row_group_size=100_000)
    contract = parse_contract(
        {
            "name": "big",
            "keys": ["id"],
            "columns": [
                {"name": "id", "type": "int"},
                {"name": "age", "type": "int", "min": 18, "max": 120},
            ],
        }
    )
    res = validate(
        contract, [str(tmp_path / "*.parquet")], get_settings(home=tmp_path / "h"), engine="ray"
    )
    assert (res.manifest.rows_in, res.manifest.rows_quarantined) == (n, 2)
    q = pq.read_table(res.path / "quarantine").to_pylist()
    assert sorted((r["_row"], r["age"], r["_reasons"][0]) for r in q) == [
        (300_000, "5", "below_min"),
        (600_000, "500", "above_max"),
    ]
    assert res.manifest.status == "passed"
    assert pq.read_table(res.path / "data").num_rows == n - 2


def test_platform_module_in_a_ray_task_is_the_standard_library(ray_session: None) -> None:
    import ray

    @ray.remote(num_cpus=0.1)
    def where() -> tuple[str, str]:
        import platform
        import sysconfig

        return platform.__file__, sysconfig.get_paths()["stdlib"]

    module_file, stdlib = ray.get(where.remote())
    assert Path(module_file).resolve().parent == Path(stdlib).resolve()
