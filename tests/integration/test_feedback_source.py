"""Labelled feedback rows are a valid training source: validation gives them back."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from mlfleet.data.validate import validate
from mlfleet.monitoring.feedback import feedback_source
from mlfleet.monitoring.protocol import Label
from mlfleet.settings import get_settings
from tests.unit.test_feedback import loans_contract, make_log, record

pytestmark = pytest.mark.ray


def test_the_feedback_folder_validates_with_every_row(ray_session: None, tmp_path: Path) -> None:
    home = tmp_path / "home"
    log = make_log(sa.create_engine(f"sqlite:///{tmp_path / 'monitor.db'}"), home)
    log.record([record("r1", "1", 4), record("r2", "1", 3, start=4)])
    first, _ = log.join("loans", [Label("r1", "yes" if i % 2 else "no", i) for i in range(4)])
    second, _ = log.join("loans", [Label("r2", "YES", i) for i in range(3)])
    assert (first.matched, second.matched) == (4, 3)

    source = feedback_source(home, "loans")
    assert source == str(home / "feedback" / "loans" / "*.parquet")
    result = validate(loans_contract(), [source], get_settings(home=home))
    manifest = result.manifest
    assert (manifest.rows_in, manifest.rows_valid, manifest.rows_quarantined) == (7, 7, 0)
    assert manifest.status == "passed"
    curated = pq.read_table(result.path / "data").to_pylist()
    got = sorted(
        (r["income"], r["region"], r["years"], r["joint"], r["defaulted"]) for r in curated
    )
    expected = sorted(
        (1000.0 + 10 * i, ["north", "south", "east", "west"][i % 4], i % 7, bool(i % 2), label)
        for i, label in enumerate(["no", "yes", "no", "yes", "yes", "yes", "yes"])
    )
    assert got == expected
    assert all(r["loan_id"] is None for r in curated)  # a nullable column requests lack
