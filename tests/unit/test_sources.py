from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from mlfleet.data.sources import read_csv, read_jsonl, resolve_sources
from mlfleet.errors import SourceError


def test_ragged_csv_rows_are_kept_with_their_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text('a,b\n1,2\n3,4,5\n"x\ny",6\n7\n8,9\n')
    table = pa.concat_tables(list(read_csv(path)), promote_options="permissive")
    rows = table.to_pylist()
    assert [r["_row"] for r in rows] == [1, 2, 3, 4, 5]
    assert [(r["a"], r["b"]) for r in rows] == [
        ("1", "2"),
        ("3", "4"),
        ("x\ny", "6"),
        ("7", None),
        ("8", "9"),
    ]
    assert rows[1]["field_3"] == "5"


def test_well_formed_csv_is_text_with_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "ok.csv"
    path.write_text("a,b\n1,\n, x \n")
    table = pa.concat_tables(list(read_csv(path)))
    assert table.schema.field("a").type == pa.string()
    assert table.to_pylist() == [{"a": "1", "b": "", "_row": 1}, {"a": "", "b": " x ", "_row": 2}]


def test_jsonl_with_changing_types_falls_back_to_text(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"a": 1, "b": true}\n\n{"a": "two", "c": [1, 2], "d": 2.0}\n')
    (table,) = list(read_jsonl(path))
    # Only the column whose values change type becomes text; the others keep their type.
    assert table.schema.field("a").type == pa.string()
    assert table.schema.field("b").type == pa.bool_()
    assert table.to_pylist() == [
        {"a": "1", "b": True, "c": None, "d": None, "_row": 1},
        {"a": "two", "b": None, "c": [1, 2], "d": 2.0, "_row": 2},
    ]


def test_jsonl_text_fallback_prints_numbers_as_arrow_does(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"a": 2.0}\n{"a": "x"}\n{"a": 1e-7}\n{"a": 100000000000000000000}\n')
    (table,) = list(read_jsonl(path))
    assert table.column("a").to_pylist() == ["2", "x", "1e-7", "100000000000000000000"]


def test_broken_json_line_is_a_source_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(SourceError, match="line 2 is not valid JSON"):
        list(read_jsonl(path))


def test_resolve_sources_globs_order_and_errors(tmp_path: Path) -> None:
    for name in ("b.csv", "a.csv"):
        (tmp_path / name).write_text("x\n1\n")
    found = resolve_sources([str(tmp_path / "*.csv"), str(tmp_path / "a.csv")])
    assert [Path(s.uri).name for s in found] == ["a.csv", "b.csv"]  # sorted, each once
    assert [s.index for s in found] == [0, 1]
    with pytest.raises(SourceError, match="unsupported file type"):
        (tmp_path / "x.xlsx").write_text("")
        resolve_sources([str(tmp_path / "x.xlsx")])
    with pytest.raises(SourceError, match="exactly one table"):
        resolve_sources([f"sqlite:///{tmp_path / 'a.csv'}"])
