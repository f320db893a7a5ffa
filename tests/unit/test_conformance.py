"""One meaning per contract: batch validation and the gateway read every value alike.

Each value below goes (a) into a JSON-lines file read by the batch reader and checked by
``check_batch`` (the function every Ray Data batch goes through), once in a file of all the
column's values (types mixed, so the column is read as text) and once in a file of values
of its own JSON type (read typed), and (b) through the gateway's ``RowChecker``, one
request value at a time. Verdicts (reason codes) and parsed values must be identical.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from mlfleet.contract import semantics
from mlfleet.contract.schema import Contract, parse_contract
from mlfleet.data.sources import read_jsonl
from mlfleet.errors import ContractError
from mlfleet.serving.schemas import RequestInvalid, RowValidator

NAN, INF = float("nan"), float("inf")
# fmt: off
BLANKS_AND_NULLS: list[Any] = [
    "", " ", "\t", "NA", "na", " NA ", "N/A", "n/a", "Null", "NULL", "nUlL",
    "None", "NONE", "NaN", "nan", "NAN", None,
]
INT_VALUES: list[Any] = [
    *BLANKS_AND_NULLS,
    0, 1, -1, 119, 120, 121, -0, 34, True, False,
    "34", " 34 ", "+34", "-0", "34.0", "34.000", "34.5", "3.4e1", "1e3", "0x1f", "1_000",
    "1,000", "12 34", "\t7\n", "\u00a07\u00a0", "٣٤", "३४", "７", "34abc",
    34.0, 34.5, 1e20, 3.0000000001, NAN, INF, -INF, -0.0,
    10**400, -(10**400), 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**19, 10**18,
    "9223372036854775807", "9223372036854775808", "-9223372036854775808",
    "-9223372036854775809", "0000000000000000001", "00000000000000000001",
    "99999999999999999999", [1], {"a": 1}, [], "true", "1.",
]
FLOAT_VALUES: list[Any] = [
    *BLANKS_AND_NULLS,
    0.5, 0.49999, 100, 100.0, 100.0000001, 1, 50, 99.99, True, NAN, INF, -INF, 1e-7, 5e-324,
    "0.5", " 0.5 ", ".5", "5.", "+.5e1", "5e1", "5E1", "1e", "e5", "1.2.3", "Infinity",
    "-Infinity", "inf", "-inf", "1e309", "-1e309", "1e-400", "1e2", "٣٤.٥", "1,5", "0x10",
    "12.5kg", "1_0.5", 10**400, 2**53 + 1, 2**63, "100.00000000000000001", "  7  ", "\u20097",
    [1.5], {"x": 1},
]
BOOL_VALUES: list[Any] = [
    *BLANKS_AND_NULLS,
    True, False, "true", "TRUE", "True", " yes ", "Yes", "No", "NO", "1", "0", 1, 0, 2, -1,
    "2", "t", "f", "y", "n", 1.0, 0.0, 0.5, "1.0", "on", "off", "ｔｒｕｅ", [True],
]
SPECIES_VALUES: list[Any] = [
    *BLANKS_AND_NULLS,
    "adelie", " ADELIE ", "Adelie", "aDeLiE", "adélie", "ADÉLIE", "gentoo\t", "\u00a0gentoo\u00a0",
    "gen too", "adelie\n", "ADELIE\x1f", "Chinstrap ", "chinstrap", "CHINSTRAP!", "\u200bgentoo",
    "ＡＤＥＬＩＥ", 1, 1.5, True, ["adelie"], "emperor", "İadelie",
]
CODE_VALUES: list[Any] = [
    *BLANKS_AND_NULLS,
    1, 2, 3, 0, "1", "2", "3", 1.0, 2.0, 1.5, "1.0", " 1", "1 ", True, False, -1, "01", "١",
]
PLATE_VALUES: list[Any] = [
    *BLANKS_AND_NULLS,
    "AB-123", "AB-1234", "xAB-123", "ab-123", " AB-123", "AB-123 ", "AB-١٢٣", "AB-123\n",
    "\nAB-123", "ÀB-123", "AB–123", "ZZ-000", "AB-12", 123, 12.5, False, "AB-123AB-123",
]
NAME_VALUES: list[Any] = [
    *BLANKS_AND_NULLS,
    "hello  world", "  x  y  ", "they're 3d", "ÉCOLE normale", "a\tb\nc", "mr o'neil 2",
    "x_y-z", "ǆemal", "straße", "ÀÉÎ", "hello\u00a0\u00a0world", "\u3000x\u3000", "9 lives",
    "ABC", "aBC dEF", 42, 4.25, True, {"k": "v"},
]
WHEN_VALUES: list[Any] = [
    *BLANKS_AND_NULLS,
    "2024-01-31", "2024-02-30", "2024-02-29", "2023-02-29", "2024-01-31T10:20:30",
    "2024-01-31 10:20:30", " 2024-01-31 ", "31/01/2024", "2024-1-5", "2024-01-31T10:20:30Z",
    "2024-01-31T10:20:30.5", "2024-01-31T25:00:00", "2024-01-31T23:59:60", "0001-01-01",
    "9999-12-31", 20240131, 1706659200.0, "２０２４-01-31", "2024-01-31\n", True,
]
DAY_VALUES: list[Any] = [*BLANKS_AND_NULLS, "31/01/2024", "2024-01-31", "1/2/2024", "31/1/24"]
TOKEN_VALUES: list[Any] = [
    "-", " - ", "missing", "MISSING", "Missing", "notavailablehere", "NOTAVAILABLEHERE",
    "NotAvailableHere", " notAvailableHERE ", "na", "NA", "", " ", "nan", None, NAN, 5, "5",
]
# fmt: on

CONTRACT = parse_contract(
    {
        "name": "conformance",
        "columns": [
            {"name": "age", "type": "int", "min": 0, "max": 120},
            {"name": "id", "type": "int", "nullable": True},
            {"name": "mass", "type": "float", "min": 0.5, "max": 100},
            {"name": "flag", "type": "bool"},
            {
                "name": "species",
                "type": "category",
                "values": ["adelie", "chinstrap", "gentoo"],
                "normalize": ["strip", "lower"],
            },
            {"name": "code", "type": "category", "values": ["1", "2"], "nullable": True},
            {"name": "plate", "type": "str", "pattern": r"^[A-Z]{2}-\d{3}$"},
            {
                "name": "name",
                "type": "str",
                "nullable": True,
                "normalize": ["collapse_whitespace", "title"],
            },
            {"name": "shout", "type": "str", "nullable": True, "normalize": ["upper"]},
            {"name": "when", "type": "datetime"},
            {"name": "day", "type": "datetime", "formats": ["%d/%m/%Y"], "nullable": True},
        ],
    }
)
TOKENS_CONTRACT = parse_contract(
    {
        "name": "tokens",
        "null_values": ["-", "missing", "NotAvailableHere"],
        "columns": [
            {"name": "n", "type": "int", "nullable": True},
            {"name": "c", "type": "category", "values": ["na", "x"], "nullable": True},
            {"name": "f", "type": "float"},
        ],
    }
)
CASES: list[tuple[Contract, str, list[Any]]] = [
    (CONTRACT, "age", INT_VALUES),
    (CONTRACT, "id", INT_VALUES),
    (CONTRACT, "mass", FLOAT_VALUES),
    (CONTRACT, "flag", BOOL_VALUES),
    (CONTRACT, "species", SPECIES_VALUES),
    (CONTRACT, "code", CODE_VALUES),
    (CONTRACT, "plate", PLATE_VALUES),
    (CONTRACT, "name", NAME_VALUES),
    (CONTRACT, "shout", NAME_VALUES),
    (CONTRACT, "when", WHEN_VALUES),
    (CONTRACT, "day", DAY_VALUES),
    (TOKENS_CONTRACT, "n", TOKEN_VALUES),
    (TOKENS_CONTRACT, "c", TOKEN_VALUES),
    (TOKENS_CONTRACT, "f", TOKEN_VALUES),
]

Verdict = tuple[Any, tuple[str, ...]]


def _one_column(contract: Contract, name: str) -> Contract:
    return contract.model_copy(update={"columns": [contract.column(name)]})


def _batch(contract: Contract, name: str, values: list[Any], path: Path) -> list[Verdict]:
    """What batch validation makes of ``values``, read from a JSON-lines file."""
    path.write_text("".join(json.dumps({name: v}) + "\n" for v in values))
    table = pa.concat_tables(list(read_jsonl(path)))
    assert table.column("_row").to_pylist() == list(range(1, len(values) + 1))
    checked = semantics.check_batch(table, _one_column(contract, name))
    out = []
    for i in range(len(values)):
        codes = tuple(code for (col, code), m in checked.failures.items() if col == name and m[i])
        out.append((checked.typed.column(name)[i].as_py(), codes))
    return out


def _same(a: Verdict, b: Verdict) -> bool:
    (va, ca), (vb, cb) = a, b
    if isinstance(va, float) and isinstance(vb, float) and math.isnan(va) and math.isnan(vb):
        return ca == cb
    return ca == cb and va == vb and type(va) is type(vb)


def test_there_are_at_least_200_tricky_values() -> None:
    assert sum(len(values) for _, _, values in CASES) >= 200


@pytest.mark.parametrize(("contract", "name", "values"), CASES, ids=[c[1] for c in CASES])
def test_batch_and_gateway_read_every_value_alike(
    contract: Contract, name: str, values: list[Any], tmp_path: Path
) -> None:
    checker = semantics.RowChecker(contract, [name])
    col = contract.column(name)
    gateway = [checker.check(col, v) for v in values]
    mixed = _batch(contract, name, values, tmp_path / "mixed.jsonl")
    by_type: dict[str, list[int]] = {}
    for i, v in enumerate(values):
        by_type.setdefault(type(v).__name__, []).append(i)
    typed: dict[int, Verdict] = {}
    for kind, idx in by_type.items():
        found = _batch(contract, name, [values[i] for i in idx], tmp_path / f"{kind}.jsonl")
        typed.update(zip(idx, found, strict=True))
    differ = [
        (values[i], gateway[i], mixed[i], typed[i])
        for i in range(len(values))
        if not (_same(gateway[i], mixed[i]) and _same(gateway[i], typed[i]))
    ]
    assert not differ, "\n".join(
        f"{v!r}: gateway {g}, mixed {m}, typed {t}" for v, g, m, t in differ
    )


@pytest.mark.parametrize(("contract", "name", "values"), CASES, ids=[c[1] for c in CASES])
def test_fast_path_equals_the_kernel(contract: Contract, name: str, values: list[Any]) -> None:
    checker = semantics.RowChecker(contract, [name])
    col = contract.column(name)
    for v in values:
        assert _same(checker.check(col, v), checker.kernel(col, v)), v


def test_expected_readings() -> None:
    """Spot checks written by hand (the comparison above cannot tell both wrong)."""
    checker = semantics.RowChecker(CONTRACT, CONTRACT.column_names)

    def read(name: str, value: Any) -> Verdict:
        return checker.check(CONTRACT.column(name), value)

    assert read("age", " 34 ") == (34, ())
    assert read("age", "٣٤") == (None, ("type",))  # Unicode digits are not numbers
    assert read("age", 120) == (120, ()) and read("age", 121) == (121, ("above_max",))
    assert read("age", "NuLL") == (None, ("missing",))
    assert read("id", "9223372036854775807") == (2**63 - 1, ())
    assert read("id", "9223372036854775808") == (None, ("type",))
    assert read("id", 10**400) == (None, ("type",))
    assert read("mass", "1e309") == (None, ("type",))
    assert read("mass", NAN) == (None, ("missing",))
    assert read("mass", 0.5) == (0.5, ()) and read("mass", 100) == (100.0, ())
    assert read("flag", " yes ") == (True, ()) and read("flag", 2) == (None, ("type",))
    assert read("species", " ADELIE ") == ("adelie", ())
    assert read("species", " NA ") == (None, ("missing",))
    assert read("code", 1.0) == ("1", ())  # a number in a text column reads as Arrow prints it
    assert read("plate", "AB-123\n") == ("AB-123\n", ("pattern",))  # RE2's $ is the very end
    assert read("name", "  they're   3d ") == ("They'Re 3D", ())
    assert read("when", "2024-01-31 10:20:30") == (datetime(2024, 1, 31, 10, 20, 30), ())
    assert read("when", "2024-02-30") == (None, ("type",))  # no rolling over to March
    assert read("when", "2024-1-5") == (datetime(2024, 1, 5), ())
    tokens = semantics.RowChecker(TOKENS_CONTRACT, ["n"])
    assert tokens.check(TOKENS_CONTRACT.column("n"), " notAvailableHERE ") == (None, ())
    assert tokens.check(TOKENS_CONTRACT.column("c"), "NA") == ("NA", ("not_in_values",))


@pytest.mark.timeout(60)
def test_a_catastrophic_pattern_runs_in_linear_time() -> None:
    """``^(\\w+\\s?)*$`` backtracks exponentially in Python's re; RE2 does not."""
    contract = parse_contract(
        {"name": "redos", "columns": [{"name": "t", "type": "str", "pattern": r"^(\w+\s?)*$"}]}
    )
    validator = RowValidator(contract, ["t"])
    hostile = "a" * 64 + "!"
    with pytest.raises(RequestInvalid, match="does not match the required pattern"):
        validator.frame([{"t": hostile}])
    assert validator.frame([{"t": "fine words here"}])["t"].tolist() == ["fine words here"]


def test_a_pattern_re2_cannot_compile_is_refused_at_load() -> None:
    data = {"name": "x", "columns": [{"name": "code", "type": "str", "pattern": "^(?=A)\\w+$"}]}
    with pytest.raises(ContractError, match=r"columns\[code\].*pattern.*not a valid regex"):
        parse_contract(data)


def test_gateway_frame_uses_the_model_types() -> None:
    validator = RowValidator(CONTRACT, ["age", "id", "flag", "species", "code"])
    frame = validator.frame(
        [
            {"age": "7", "id": 2, "flag": "no", "species": " Gentoo", "code": 2},
            {"age": 8, "id": None, "flag": True, "species": "adelie", "code": None},
        ]
    )
    assert frame.dtypes.astype(str).tolist() == ["float64"] * 3 + ["object"] * 2
    assert frame["age"].tolist() == [7.0, 8.0] and frame["flag"].tolist() == [0.0, 1.0]
    assert math.isnan(frame["id"][1]) and frame["code"].tolist() == ["2", None]
    assert frame["species"].tolist() == ["gentoo", "adelie"]


def test_other_contract_columns_are_checked_and_kept_beside_the_features() -> None:
    validator = RowValidator(CONTRACT, ["age", "species"])
    frame, logged = validator.read(
        [
            {"age": 7, "species": "gentoo", "id": "12", "when": "2024-01-31 10:20:30"},
            {"age": 8, "species": "adelie"},
        ]
    )
    assert list(frame.columns) == ["age", "species"]
    assert logged["id"] == [12, None]
    assert logged["when"] == [datetime(2024, 1, 31, 10, 20, 30), None]
    with pytest.raises(RequestInvalid, match="row 0, field 'when': expected a date"):
        validator.read([{"age": 7, "species": "gentoo", "when": "2024-02-30"}])
    targeted = parse_contract({**CONTRACT.model_dump(exclude_none=True), "target": "flag"})
    with pytest.raises(RequestInvalid, match="unknown field 'flag'"):
        RowValidator(targeted, ["age"]).read([{"age": 7, "flag": True}])
