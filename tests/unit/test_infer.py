from __future__ import annotations

import json
from pathlib import Path

from mlfleet.data.infer import infer_contract
from mlfleet.data.sources import resolve_sources


def test_infer_types_nullability_categories_and_key(tmp_path: Path) -> None:
    csv = tmp_path / "a.csv"
    csv.write_text(
        "customer_id,age,plan,signup,score,active,comment\n"
        "1,34,Basic,2024-01-02,0.5,yes,first\n"
        "2,,PRO,2024-02-03,1.25,no,second one\n"
        "3,51,pro ,2024-03-04,2,yes,third\n"
        "4,29,basic,2024-04-05,-1.5,no,fourth\n"
    )
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text(
        json.dumps(
            {
                "customer_id": 5,
                "age": 40,
                "plan": "basic",
                "signup": "2024-05-06",
                "score": 3.0,
                "active": "no",
                "comment": "fifth",
            }
        )
        + "\n"
    )
    c = infer_contract("customers", resolve_sources([str(csv), str(jsonl)]), target="active")
    types = {col.name: col.type for col in c.columns}
    assert types == {
        "customer_id": "int",
        "age": "int",
        "plan": "category",
        "signup": "datetime",
        "score": "float",
        "active": "bool",
        "comment": "str",
    }
    assert c.keys == ["customer_id"]
    assert c.target == "active"
    assert c.column("age").nullable is True
    assert c.column("score").nullable is False
    assert (c.column("age").min, c.column("age").max) == (29, 51)
    assert c.column("plan").values == ["basic", "pro"]
    assert c.column("plan").normalize == ["strip", "lower"]
    assert c.column("signup").formats[0] == "%Y-%m-%d"
