from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlfleet.contract.schema import load_contract, parse_contract
from mlfleet.errors import ContractError
from tests.support.messy import CONTRACT_YAML

ISSUE_CONTRACT = CONTRACT_YAML


def _errors(data: object) -> str:
    with pytest.raises(ContractError) as info:
        parse_contract(data)
    return str(info.value)


def test_the_documented_example_parses() -> None:
    c = parse_contract(yaml.safe_load(ISSUE_CONTRACT))
    assert c.name == "customers"
    assert c.target == "churned"
    assert c.keys == ["customer_id"]
    assert [col.type for col in c.columns] == [
        "int",
        "int",
        "category",
        "datetime",
        "float",
        "str",
        "bool",
    ]
    assert c.column("age").nullable is True
    assert c.column("signup_date").nullable is False  # the default
    assert c.column("plan").normalize == ["strip", "lower"]


def test_round_trip_through_yaml_keeps_meaning() -> None:
    c = parse_contract(yaml.safe_load(ISSUE_CONTRACT))
    again = parse_contract(yaml.safe_load(c.to_yaml()))
    assert again == c
    assert "min: 18," in c.to_yaml()  # integers stay integers


def test_sha_ignores_formatting_but_not_meaning() -> None:
    a = parse_contract(yaml.safe_load(ISSUE_CONTRACT))
    b = parse_contract(
        yaml.safe_load(ISSUE_CONTRACT.replace("churned            # optional", "churned"))
    )
    c = parse_contract(yaml.safe_load(ISSUE_CONTRACT.replace("max: 120", "max: 121")))
    assert a.sha == b.sha
    assert a.sha != c.sha


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"name": "x", "columns": [{"name": "a", "type": "int", "mn": 3}]},
            "unknown key 'columns[a].mn'",
        ),
        ({"name": "x", "colums": []}, "unknown key 'colums'"),
        ({"name": "x", "columns": [{"name": "a", "type": "integer"}]}, "columns[a].type"),
        (
            {"name": "x", "columns": [{"name": "a", "type": "int", "min": 5, "max": 1}]},
            "'min' (5) is greater than 'max' (1)",
        ),
        (
            {"name": "x", "columns": [{"name": "a", "type": "str", "min": 1}]},
            "'min'/'max' apply to int and float",
        ),
        ({"name": "x", "columns": [{"name": "a", "type": "category"}]}, "non-empty 'values'"),
        (
            {"name": "x", "columns": [{"name": "a", "type": "str", "pattern": "("}]},
            "not a valid regex",
        ),
        (
            {"name": "x", "columns": [{"name": "a", "type": "int", "normalize": ["trim"]}]},
            "columns[a].normalize",
        ),
        (
            {"name": "x", "target": "y", "columns": [{"name": "a", "type": "int"}]},
            "target 'y' is not a declared column",
        ),
        (
            {"name": "x", "keys": ["id"], "columns": [{"name": "a", "type": "int"}]},
            "key 'id' is not a declared column",
        ),
        (
            {"name": "x", "columns": [{"name": "a", "type": "int"}, {"name": "a", "type": "str"}]},
            "column 'a' is declared twice",
        ),
        ({"name": "Bad Name", "columns": [{"name": "a", "type": "int"}]}, "name"),
        ({"name": "x", "columns": []}, "columns"),
        (["not", "a", "mapping"], "expected a mapping"),
    ],
)
def test_bad_contracts_name_the_problem(data: object, expected: str) -> None:
    assert expected in _errors(data)


def test_load_contract_errors_for_files(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="contract file not found"):
        load_contract(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ncolumns: [\n")
    with pytest.raises(ContractError, match="not valid YAML"):
        load_contract(bad)
