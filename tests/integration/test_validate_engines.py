"""The local engine (batches checked in the command's own process) and Ray Data write the
same dataset version: manifest, curated rows, quarantine rows, profile and report; only
timestamps may differ. And the local engine never imports Ray."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from mlfleet.contract.schema import Contract, parse_contract
from mlfleet.data.validate import ValidationResult, validate
from mlfleet.settings import get_settings
from tests.support.messy import CONTRACT_YAML, LOANS_CONTRACT, loans_frame, write_sources

pytestmark = pytest.mark.ray

TIMESTAMPS = {"created_at"}


def _without_timestamps(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _without_timestamps(v) for k, v in doc.items() if k not in TIMESTAMPS}
    if isinstance(doc, list):
        return [_without_timestamps(v) for v in doc]
    return doc


def _rows(folder: Path) -> list[dict[str, Any]]:
    """Every row of a folder of Parquet parts, in the order a dataset reader returns them."""
    files = sorted(folder.glob("*.parquet"))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def snapshot(result: ValidationResult) -> dict[str, Any]:
    docs = {
        name: _without_timestamps(json.loads((result.path / name).read_text()))
        for name in ("manifest.json", "profile.json", "report.json")
    }
    quarantine = sorted(
        _rows(result.path / "quarantine"), key=lambda r: (r["_source"], r["_row"], r["_reasons"])
    )
    return {**docs, "data": _rows(result.path / "data"), "quarantine": quarantine}


def both_ways(
    contract: Contract, sources: list[str], home: Path
) -> tuple[ValidationResult, ValidationResult]:
    # Separate homes: the second run would otherwise find (and reuse) the first's version.
    local = validate(contract, sources, get_settings(home=home / "local"), engine="local")
    on_ray = validate(contract, sources, get_settings(home=home / "ray"), engine="ray")
    assert (local.timings.engine, on_ray.timings.engine) == ("local", "ray")
    assert not local.reused and not on_ray.reused
    return local, on_ray


def assert_same_version(local: ValidationResult, on_ray: ValidationResult) -> None:
    a, b = snapshot(local), snapshot(on_ray)
    for part in a:
        assert a[part] == b[part], part
    assert local.manifest.version == on_ray.manifest.version


def test_messy_sources_give_the_same_version(ray_session: None, tmp_path: Path) -> None:
    """CSV with header drift, JSON lines with an unknown column, SQLite; duplicates across
    all three."""
    sources = write_sources(tmp_path / "src")
    contract = parse_contract(yaml.safe_load(CONTRACT_YAML))
    local, on_ray = both_ways(contract, sources, tmp_path)
    assert local.manifest.rows_in == 21 and local.manifest.reasons["duplicate"] == 4
    assert_same_version(local, on_ray)


def test_several_batches_duplicates_and_an_unreadable_file(
    ray_session: None, tmp_path: Path
) -> None:
    """A Parquet file of two batches and six row groups, a CSV repeating some of its keys
    with faults of every kind, and a truncated Parquet file (reported, not fatal)."""
    src = tmp_path / "src"
    src.mkdir()
    big = loans_frame(300_000, seed=7)
    pq.write_table(
        pa.Table.from_pandas(big, preserve_index=False), src / "a.parquet", row_group_size=50_000
    )
    small = loans_frame(2_000, seed=8)
    small["loan_id"] = small["loan_id"] * 150  # some repeat loan ids of the Parquet file
    small = small.astype({"income": object, "debt_ratio": object})
    small.loc[::97, "income"] = "12,5k"  # type
    small.loc[::89, "debt_ratio"] = 9.5  # above_max
    small.loc[::83, "region"] = "mars"  # not_in_values
    small.loc[::79, "income"] = None  # nullable: valid
    small.to_csv(src / "b.csv", index=False)
    whole = (src / "a.parquet").read_bytes()
    (src / "c.parquet").write_bytes(whole[: len(whole) // 3])
    contract = parse_contract(yaml.safe_load(LOANS_CONTRACT))
    sources = [str(src / "a.parquet"), str(src / "b.csv"), str(src / "c.parquet")]

    local, on_ray = both_ways(contract, sources, tmp_path)
    m = local.manifest
    assert m.rows_in == 302_000 and m.sources[2].error
    assert {"duplicate", "type", "above_max", "not_in_values"} <= set(m.reasons)
    assert local.timings.batches >= 3
    assert_same_version(local, on_ray)


def test_local_engine_never_imports_ray(tmp_path: Path) -> None:
    sources = write_sources(tmp_path / "src")
    probe = (
        "import sys, yaml\n"
        "from mlfleet.contract.schema import parse_contract\n"
        "from mlfleet.data.validate import validate\n"
        "from mlfleet.settings import get_settings\n"
        "from tests.support.messy import CONTRACT_YAML\n"
        "r = validate(parse_contract(yaml.safe_load(CONTRACT_YAML)), sys.argv[2:],\n"
        "             get_settings(home=sys.argv[1]), max_quarantine_fraction=1)\n"
        "print(r.manifest.rows_in, r.timings.engine, 'ray' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "home"), *sources],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["21", "local", "False"]
