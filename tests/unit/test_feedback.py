"""The prediction log on real SQLite, the join of labels, and the Parquet it writes."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml

from mlfleet.contract.schema import Contract, parse_contract
from mlfleet.errors import UsageError
from mlfleet.monitoring.feedback import (
    LabelError,
    LabelTarget,
    PredictionLog,
    feedback_dir,
    feedback_source,
)
from mlfleet.monitoring.performance import ConfusionCounts, ErrorCounts
from mlfleet.monitoring.protocol import Label, PredictionRecord

LOANS = """
name: loans
target: defaulted
columns:
  - {name: loan_id, type: int, nullable: true}
  - {name: income, type: float, min: 0}
  - {name: region, type: category, values: [north, south, east, west], normalize: [strip, lower]}
  - {name: years, type: int, min: 0}
  - {name: joint, type: bool}
  - {name: defaulted, type: category, values: ["yes", "no"], normalize: [strip, lower]}
"""
CLASSES = ("no", "yes")
MINUTE = 29_000_000  # minutes since the epoch: every prediction below sits in one of two


def loans_contract() -> Contract:
    return parse_contract(yaml.safe_load(LOANS))


def model_rows(n: int, start: int = 0) -> list[dict[str, object]]:
    """Rows as the model read them: numeric kinds as floats, categories as text."""
    regions = ["north", "south", "east", "west"]
    return [
        {
            "income": 1000.0 + 10 * i,
            "region": regions[i % 4],
            "years": float(i % 7),
            "joint": float(i % 2),
        }
        for i in range(start, start + n)
    ]


def record(
    rid: str, version: str, n: int, *, minute: int = MINUTE, start: int = 0
) -> PredictionRecord:
    return PredictionRecord(
        request_id=rid,
        model="loans",
        version=version,
        at=minute * 60 + 5.0,
        rows=model_rows(n, start),
        predictions=["yes" if i % 3 == 0 else "no" for i in range(n)],
    )


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    return sa.create_engine(f"sqlite:///{tmp_path / 'monitor.db'}")


def make_log(engine: sa.Engine, home: Path, **kwargs: object) -> PredictionLog:
    target = LabelTarget(loans_contract(), "classification", CLASSES)
    return PredictionLog(engine, home, target_of=lambda _m, _v: target, **kwargs)  # type: ignore[arg-type]


def test_join_matches_writes_typed_parquet_and_counts(engine: sa.Engine, tmp_path: Path) -> None:
    log = make_log(engine, tmp_path / "home")
    log.record([record("r1", "1", 3), record("r2", "2", 2, minute=MINUTE + 1)])
    log.record([record("r1", "1", 3)])  # a resent flush: the request is logged once
    assert log.rows() == 5
    labels = [
        Label("r1", "yes", 0),  # predicted yes: right
        Label("r1", " No ", 1),  # normalised to "no"; predicted no: right
        Label("r1", "yes", 2),  # predicted no: wrong
        Label("r2", "no", 0),  # predicted yes: wrong
        Label("nope", "yes", 0),  # unknown request
        Label("r2", "yes", 9),  # unknown row of a known request
    ]
    result, realised = log.join("loans", labels)

    assert result.matched == 4
    assert result.unknown == ["nope", "r2"]
    assert result.written is not None
    written = Path(result.written)
    assert written.parent == tmp_path / "home" / "feedback" / "loans"
    assert written.suffix == ".parquet" and not written.name.startswith(".")
    assert [p.name for p in written.parent.iterdir()] == [written.name]  # nothing partial

    table = pq.read_table(written)
    # The contract's columns the rows carry, plus the target, typed per the contract.
    assert table.schema.names == ["income", "region", "years", "joint", "defaulted"]
    assert [f.type for f in table.schema] == [
        pa.float64(),
        pa.string(),
        pa.int64(),
        pa.bool_(),
        pa.string(),
    ]
    assert table.column("defaulted").to_pylist() == ["yes", "no", "yes", "no"]
    assert table.column("years").to_pylist() == [0, 1, 2, 0]
    assert table.column("joint").to_pylist() == [False, True, False, False]
    assert table.schema.metadata[b"mlfleet.versions"] == b"1,2"

    assert set(realised) == {("1", MINUTE), ("2", MINUTE + 1)}
    v1 = realised[("1", MINUTE)]
    assert isinstance(v1, ConfusionCounts) and v1.labels == CLASSES
    assert (v1.rows, v1.accuracy) == (3, pytest.approx(2 / 3))
    v2 = realised[("2", MINUTE + 1)]
    assert isinstance(v2, ConfusionCounts) and (v2.rows, v2.accuracy) == (1, 0.0)


def test_a_label_given_twice_counts_once(engine: sa.Engine, tmp_path: Path) -> None:
    log = make_log(engine, tmp_path)
    log.record([record("r1", "1", 2)])
    first, counted = log.join("loans", [Label("r1", "yes", 0), Label("r1", "no", 0)])
    assert first.matched == 1 and counted[("1", MINUTE)].rows == 1
    again, recounted = log.join("loans", [Label("r1", "yes", 0)])
    assert (again.matched, again.unknown, again.written, recounted) == (0, [], None, {})
    # A restarted monitor (a new log on the same database) remembers both.
    restarted = make_log(engine, tmp_path)
    assert restarted.rows() == 2
    late, _ = restarted.join("loans", [Label("r1", "no", 0), Label("r1", "no", 1)])
    assert late.matched == 1
    files = sorted(feedback_dir(tmp_path, "loans").glob("*.parquet"))
    assert sum(pq.read_metadata(f).num_rows for f in files) == 2


def test_a_label_the_contract_refuses_stores_nothing(engine: sa.Engine, tmp_path: Path) -> None:
    log = make_log(engine, tmp_path)
    log.record([record("r1", "1", 2)])
    with pytest.raises(LabelError, match=r"request r1 row 1: not_in_values") as caught:
        log.join("loans", [Label("r1", "yes", 0), Label("r1", "maybe", 1)])
    assert "maybe" not in str(caught.value)  # the message names rows, never echoes values
    assert caught.value.http_status == 422
    assert feedback_source(tmp_path, "loans") is None
    fixed, _ = log.join("loans", [Label("r1", "yes", 0), Label("r1", "no", 1)])
    assert fixed.matched == 2


def test_the_oldest_rows_are_evicted_first(engine: sa.Engine, tmp_path: Path) -> None:
    log = make_log(engine, tmp_path, max_rows=5)
    log.record([record("a", "1", 2), record("b", "1", 2)])
    log.record([record("c", "1", 2)])
    assert log.rows() == 5
    result, _ = log.join("loans", [Label("a", "yes", 0), Label("a", "yes", 1)])
    assert (result.matched, result.unknown) == (1, ["a"])  # row 0 of a went first
    result, _ = log.join("loans", [Label(r, "no", 0) for r in ("b", "c")])
    assert (result.matched, result.unknown) == (2, [])


def test_labels_only_join_their_own_model(engine: sa.Engine, tmp_path: Path) -> None:
    log = make_log(engine, tmp_path)
    log.record([record("r1", "1", 1)])
    result, _ = log.join("other-model", [Label("r1", "yes", 0)])
    assert (result.matched, result.unknown) == (0, ["r1"])
    with pytest.raises(UsageError):
        log.join("../../etc", [Label("r1", "yes", 0)])


def test_regressors_get_error_counts(engine: sa.Engine, tmp_path: Path) -> None:
    contract = parse_contract(
        {
            "name": "prices",
            "target": "price",
            "columns": [
                {"name": "size", "type": "float"},
                {"name": "price", "type": "float", "min": 0},
            ],
        }
    )
    log = PredictionLog(
        engine, tmp_path, target_of=lambda _m, _v: LabelTarget(contract, "regression")
    )
    log.record(
        [
            PredictionRecord(
                "q1", "prices", "4", MINUTE * 60.0, [{"size": 1.0}, {"size": 2.0}], [10.0, 20.0]
            )
        ]
    )
    result, realised = log.join("prices", [Label("q1", 12.5, 0), Label("q1", "19", 1)])
    assert result.matched == 2
    counts = realised[("4", MINUTE)]
    assert isinstance(counts, ErrorCounts) and counts.mae == pytest.approx(1.75)
    assert pq.read_table(result.written).to_pydict() == {"size": [1.0, 2.0], "price": [12.5, 19.0]}


def test_feedback_hands_realised_counters_to_the_monitor(engine: sa.Engine, tmp_path: Path) -> None:
    merged: list[tuple[str, str, int, object]] = []
    log = make_log(engine, tmp_path)
    log.on_realised = lambda *args: merged.append(args)
    log.record([record("r1", "1", 2), record("r2", "1", 1, minute=MINUTE + 3)])
    result = log.feedback("loans", [Label("r1", "yes", 0), Label("r2", "yes", 0)])
    assert result.matched == 2
    assert sorted((m, v, minute, c.rows) for m, v, minute, c in merged) == [
        ("loans", "1", MINUTE, 1),
        ("loans", "1", MINUTE + 3, 1),
    ]
