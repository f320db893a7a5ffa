"""Three messy sources with hand-counted faults (see the comments on each row)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd

# The data contract exactly as issue #2 gives it (comments included).
CONTRACT_YAML = """
name: customers
target: churned            # optional
keys: [customer_id]        # optional; duplicates by key (or by whole row when absent)
columns:
  - {name: customer_id, type: int, nullable: false}
  - {name: age, type: int, min: 18, max: 120, nullable: true}
  - {name: plan, type: category, values: [basic, pro, enterprise], normalize: [strip, lower]}
  - {name: signup_date, type: datetime, formats: ["%Y-%m-%d", "%d/%m/%Y"]}
  - {name: monthly_spend, type: float, min: 0}
  - {name: email, type: str, pattern: '^[^@\\s]+@[^@\\s]+$', nullable: true}
  - {name: churned, type: bool}
"""

# Website export: header drift (" Age ", "Plan"), stray spaces, mixed case.
WEB_CSV = """customer_id, Age ,Plan,signup_date,monthly_spend,email,churned
1,34, Pro ,2024-01-05,10.5,a@x.io,yes
2,17,basic,2024-01-06,20,b@x.io,no
3,,ENTERPRISE,06/01/2024,30.0,,TRUE
x4,40,basic,2024-01-07,5,c@x.io,no
5,50,gold,2024-01-08,5,d@x.io,no
6,60,pro,2024-01-09,NA,e@x.io,no
7,70,pro,2024-01-10,1,not-an-email,0
8,80,basic,2024-01-11,2,f@x.io,1
"""
# rows: 1 valid · 2 below_min · 3 valid · 4 type · 5 not_in_values · 6 missing · 7 pattern · 8 valid

APP_RECORDS = [
    {
        "customer_id": 9,
        "age": 121,
        "plan": "pro",
        "signup_date": "2024-02-01",
        "monthly_spend": 3.5,
        "email": "g@x.io",
        "churned": False,
    },  # 1 above_max
    {
        "customer_id": 10,
        "age": 30,
        "plan": "basic",
        "signup_date": "2024-02-02",
        "monthly_spend": 4,
        "email": "h@x.io",
        "churned": True,
        "referrer": "ad",
    },  # 2 unknown_column
    {
        "customer_id": 1,
        "age": 34,
        "plan": "pro",
        "signup_date": "2024-01-05",
        "monthly_spend": 99.0,
        "email": "a@x.io",
        "churned": False,
    },  # 3 duplicate of web 1
    {
        "customer_id": 11,
        "age": 45,
        "plan": "pro",
        "signup_date": "2024-02-03",
        "monthly_spend": 7.25,
        "email": None,
        "churned": "maybe",
    },  # 4 type
    {
        "customer_id": 12,
        "age": 45,
        "plan": "Basic",
        "signup_date": "2024-02-04",
        "monthly_spend": 8,
        "email": "i@x.io",
        "churned": "no",
        "referrer": None,
    },  # 5 valid
    {
        "customer_id": 8,
        "age": 80,
        "plan": "basic",
        "signup_date": "2024-01-11",
        "monthly_spend": 2,
        "email": "f@x.io",
        "churned": True,
    },  # 6 duplicate of web 8
    {
        "customer_id": 2,
        "age": 30,
        "plan": "basic",
        "signup_date": "2024-01-06",
        "monthly_spend": 20,
        "email": "b@x.io",
        "churned": False,
    },  # 7 valid (web 2 was rejected)
]

DB_ROWS = [
    (13, 25, "pro", "2024-03-01", 9.0, "j@x.io", 1),  # 1 valid
    (14, 26, "pro", "2024/03/02", 9.0, "k@x.io", 0),  # 2 type (date format)
    (13, 25, "pro", "2024-03-01", 9.0, "j@x.io", 1),  # 3 duplicate of db 1
    (12, 45, "basic", "2024-02-04", 8.0, "i@x.io", 0),  # 4 duplicate of app 5
    (15, None, "basic", "2024-03-05", -1.0, "l@x.io", 0),  # 5 below_min
    (16, 33, "enterprise", "2024-03-06", 0.0, None, "no"),  # 6 valid
]


def write_sources(folder: Path) -> list[str]:
    """Write the three sources; returns SOURCE arguments in priority order."""
    folder.mkdir(parents=True, exist_ok=True)
    web = folder / "web.csv"
    web.write_text(WEB_CSV)
    app = folder / "app.jsonl"
    app.write_text("".join(json.dumps(r) + "\n" for r in APP_RECORDS))
    db = folder / "crm.db"
    db.unlink(missing_ok=True)
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE customers (customer_id INTEGER, age INTEGER, plan TEXT, "
            "signup_date TEXT, monthly_spend REAL, email TEXT, churned INTEGER)"
        )
        conn.executemany("INSERT INTO customers VALUES (?,?,?,?,?,?,?)", DB_ROWS)
    conn.close()
    return [str(web), str(app), f"sqlite:///{db}?table=customers"]


LOANS_CONTRACT = """
name: loans
target: defaulted
keys: [loan_id]
columns:
  - {name: loan_id, type: int}
  - {name: income, type: float, min: 0, nullable: true}
  - {name: debt_ratio, type: float, min: 0, max: 5}
  - {name: region, type: category, values: [north, south, east, west], normalize: [strip, lower]}
  - {name: defaulted, type: category, values: ["yes", "no"]}
"""


def loans_frame(n: int, seed: int) -> pd.DataFrame:
    """Loans whose default depends on debt and income (a model can learn it)."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10, 0.5, n)
    debt = rng.uniform(0, 3, n)
    risk = debt * 2 - np.log(income) / 4 + rng.normal(0, 0.3, n)
    return pd.DataFrame(
        {
            "loan_id": np.arange(1, n + 1),
            "income": income.round(2),
            "debt_ratio": debt.round(3),
            "region": rng.choice(["north", "south", "East ", "west"], n),
            "defaulted": np.where(risk > np.median(risk), "yes", "no"),
        }
    )


def example_spec_copy(repo: Path, specs: Path, name: str, num_samples: int) -> Path:
    """An example spec (``specs/NAME``) with absolute paths and a smaller search, in ``specs``."""
    import yaml

    base = repo / "specs" / name
    spec = yaml.safe_load((base / "model.yaml").read_text())
    spec["contract"] = str(base / spec["contract"])
    sqlite = "sqlite:///"
    spec["sources"] = [
        s.replace(sqlite, f"{sqlite}{base}/", 1) if s.startswith(sqlite) else str(base / s)
        for s in spec["sources"]
    ]
    spec["search"]["num_samples"] = num_samples
    path = specs / name / "model.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec))
    return path


def diabetes_spec_copy(repo: Path, specs: Path, num_samples: int) -> Path:
    """The example diabetes spec with absolute paths and a smaller search, in ``specs``."""
    return example_spec_copy(repo, specs, "diabetes", num_samples)
