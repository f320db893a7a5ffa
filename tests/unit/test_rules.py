from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from mlfleet.contract.schema import ColumnSpec, parse_contract
from mlfleet.contract.semantics import (
    check_batch,
    match_columns,
    normalize_text,
    parse_column,
)
from mlfleet.data.quarantine import quarantine_rows, reason_lists

TOKENS = ("", "na", "n/a", "null", "none", "nan")


def col(**kw: object) -> ColumnSpec:
    return ColumnSpec.model_validate(kw)


def parse(data: list[object], arrow_type: pa.DataType | None = None, **kw: object):
    arr = pa.array(data, arrow_type or pa.string())
    return parse_column(arr, col(**kw), TOKENS, len(data))


def failing(result, code: str) -> list[int]:
    return [int(i) for i in np.nonzero(result.failures.get(code, np.zeros(0, bool)))[0]]


def test_int_parsing_and_type_failures() -> None:
    r = parse(
        [" 42", "-7", "+3", "3.0", "4.5", "abc", "1e3", "NA", "", None, "12345678901234567890"],
        name="n",
        type="int",
        nullable=True,
    )
    assert r.values.to_pylist() == [42, -7, 3, 3, None, None, None, None, None, None, None]
    assert failing(r, "type") == [4, 5, 6, 10]
    assert "missing" not in r.failures


def test_missing_only_for_non_nullable_and_not_double_counted_with_type() -> None:
    r = parse(["1", "NULL", "x", None], name="n", type="int")
    assert failing(r, "missing") == [1, 3]
    assert failing(r, "type") == [2]


def test_float_parsing_keeps_exponents_and_rejects_infinity_text() -> None:
    r = parse(["1.5", ".5", "1e3", "-2.", "inf", "1,5"], name="x", type="float", nullable=True)
    assert r.values.to_pylist() == [1.5, 0.5, 1000.0, -2.0, None, None]
    assert failing(r, "type") == [4, 5]


def test_typed_floats_nan_is_missing_inf_is_type() -> None:
    r = parse([1.0, float("nan"), float("inf"), None], pa.float64(), name="x", type="float")
    assert r.values.to_pylist() == [1.0, None, None, None]
    assert failing(r, "type") == [2]
    assert failing(r, "missing") == [1, 3]


def test_ranges() -> None:
    r = parse(["17", "18", "120", "121"], name="age", type="int", min=18, max=120)
    assert failing(r, "below_min") == [0]
    assert failing(r, "above_max") == [3]
    r = parse([-0.01, 0.0], pa.float64(), name="spend", type="float", min=0)
    assert failing(r, "below_min") == [0]


def test_bool_tokens_any_case() -> None:
    r = parse(["true", "FALSE", "1", "0", "Yes", "no", " y ", "maybe"], name="b", type="bool")
    assert r.values.to_pylist() == [True, False, True, False, True, False, None, None]
    assert failing(r, "type") == [6, 7]


def test_typed_int_into_float_and_text_into_str() -> None:
    r = parse([1, 2], pa.int64(), name="x", type="float")
    assert r.values.type == pa.float64() and r.values.to_pylist() == [1.0, 2.0]
    r = parse([7, 8], pa.int64(), name="code", type="str")
    assert r.values.to_pylist() == ["7", "8"]


def test_category_normalised_before_checking_values() -> None:
    r = parse(
        [" Pro ", "BASIC", "gold", None],
        name="plan",
        type="category",
        values=["basic", "pro"],
        normalize=["strip", "lower"],
        nullable=True,
    )
    assert r.values.to_pylist() == ["pro", "basic", "gold", None]
    assert failing(r, "not_in_values") == [2]


def test_pattern_is_a_search_and_nulls_do_not_fail_it() -> None:
    r = parse(
        ["a@b.c", "bad", None],
        name="email",
        type="str",
        pattern=r"^[^@\s]+@[^@\s]+$",
        nullable=True,
    )
    assert failing(r, "pattern") == [1]


def test_datetime_formats_in_order_to_one_type() -> None:
    r = parse(
        ["2024-03-01", "02/03/2024", "2024-13-01", "March 1"],
        name="d",
        type="datetime",
        formats=["%Y-%m-%d", "%d/%m/%Y"],
        nullable=True,
    )
    assert r.values.type == pa.timestamp("us")
    assert r.values.to_pylist()[:2] == [dt.datetime(2024, 3, 1), dt.datetime(2024, 3, 2)]
    assert failing(r, "type") == [2, 3]


def test_normalize_ops() -> None:
    arr = pa.array(["  hello   big  World "])
    assert normalize_text(arr, ["collapse_whitespace"]).to_pylist() == ["hello big World"]
    assert normalize_text(arr, ["strip", "upper"]).to_pylist() == ["HELLO   BIG  WORLD"]
    assert normalize_text(arr, ["strip", "title"]).to_pylist() == ["Hello   Big  World"]


def test_missing_source_column_reads_as_missing() -> None:
    r = parse_column(None, col(name="x", type="int"), TOKENS, 3)
    assert failing(r, "missing") == [0, 1, 2]


def test_header_matching_folds_case_spaces_and_punctuation() -> None:
    c = parse_contract(
        {
            "name": "t",
            "columns": [
                {"name": "monthly_spend", "type": "float"},
                {"name": "plan", "type": "str"},
            ],
        }
    )
    mapping, extras = match_columns(["Monthly Spend ($)", "plan", "extra col", "_row"], c)
    assert mapping == {"monthly_spend": "Monthly Spend ($)", "plan": "plan"}
    assert extras == ["extra col"]


CONTRACT = parse_contract(
    {
        "name": "t",
        "keys": ["id"],
        "columns": [
            {"name": "id", "type": "int"},
            {"name": "age", "type": "int", "min": 18, "nullable": True},
            {"name": "plan", "type": "category", "values": ["a", "b"], "normalize": ["lower"]},
        ],
    }
)


def test_check_batch_unknown_columns_and_reason_lists() -> None:
    batch = pa.table(
        {
            "id": ["1", "x", "3", "4"],
            "age": ["20", "5", None, "30"],
            "Plan": ["A", "c", "b", "b"],
            "note": [None, None, "hi", "  "],
            "_row": pa.array([1, 2, 3, 4], pa.int64()),
        }
    )
    checked = check_batch(batch, CONTRACT)
    assert checked.bad.tolist() == [False, True, True, False]
    assert checked.typed.column("plan").to_pylist() == ["a", "c", "b", "b"]
    rows = np.nonzero(checked.bad)[0]
    q = quarantine_rows(batch, checked, CONTRACT, rows, "src.csv", batch.column("_row").chunk(0))
    assert q.column("_row").to_pylist() == [2, 3]
    assert q.column("_source").to_pylist() == ["src.csv", "src.csv"]
    assert q.column("id").to_pylist() == ["x", "3"]  # raw values, not parsed
    assert q.column("plan").to_pylist() == ["c", "b"]
    assert q.column("_reasons").to_pylist() == [
        ["type", "below_min", "not_in_values"],
        ["unknown_column"],
    ]
    assert q.column("_details").to_pylist()[0] == ["id:type", "age:below_min", "plan:not_in_values"]
    assert q.column("_extra").to_pylist() == [None, '{"note": "hi"}']


def test_reason_lists_lists_each_code_once() -> None:
    failures = {("a", "type"): np.array([True, False]), ("b", "type"): np.array([True, True])}
    reasons, details = reason_lists(failures, np.array([0, 1]))
    assert reasons.to_pylist() == [["type"], ["type"]]
    assert details.to_pylist() == [["a:type", "b:type"], ["b:type"]]


@pytest.mark.parametrize("token", ["NA", "n/a", "Null", "NONE", "nan", " ", ""])
def test_null_tokens(token: str) -> None:
    r = parse([token], name="x", type="str", nullable=False)
    assert failing(r, "missing") == [0]
