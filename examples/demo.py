"""Example data for the quickstart: real penguins split into three messy sources.

The Palmer penguins (shipped inside the ``palmerpenguins`` package, of the ``examples``
dependency group; nothing is downloaded) arrive the way a team receives them: a website
export (CSV with stray spaces, mixed case and "NA" strings), a mobile app's event log
(JSON lines with a field the contract does not know and a number typed as text) and an
operational database (SQLite), with a few records sent twice across systems and a few
impossible measurements.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd

WEB, APP, DB = "penguins_web.csv", "penguins_app.jsonl", "penguins_db.sqlite"
SQLITE_TABLE = "measurements"


def penguins() -> pd.DataFrame:
    """The Palmer penguins with a stable ``penguin_id`` key (1..344)."""
    from palmerpenguins import load_penguins

    df = load_penguins()
    df.insert(0, "penguin_id", np.arange(1, len(df) + 1))
    return df


def write_penguin_sources(out_dir: Path) -> list[Path | str]:
    """Write the three sources into ``out_dir``; returns the SOURCE arguments in order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    df = penguins()
    web, app, db = df.iloc[:150].copy(), df.iloc[150:250].copy(), df.iloc[250:].copy()

    # Website export: text everywhere, sloppy case and spacing, "NA" for missing values.
    web_text = web.astype(object).where(web.notna(), "NA").astype(str)
    web_text["species"] = [
        f" {s.upper()} " if i % 7 == 0 else s for i, s in enumerate(web_text["species"])
    ]
    web_text["island"] = [s.lower() if i % 5 == 0 else s for i, s in enumerate(web_text["island"])]
    web_text["body_mass_g"] = web_text["body_mass_g"].str.replace(r"\.0$", "", regex=True)
    web_text.loc[web_text.index[20], "body_mass_g"] = "-3650"  # sign flipped by a form
    web_text.loc[web_text.index[41], "bill_length_mm"] = "forty"  # free text in a number
    web_text.loc[web_text.index[77], "species"] = "Emperor"  # not a species we study
    web_text.columns = [
        c if c != "flipper_length_mm" else "Flipper Length (mm)" for c in web_text.columns
    ]  # header drift
    web_text.to_csv(out_dir / WEB, index=False)

    # App events: JSON lines, mostly typed, with drift a mobile release brings.
    with (out_dir / APP).open("w") as fh:
        for i, rec in enumerate(app.to_dict(orient="records")):
            rec = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in rec.items()}
            if i == 10:
                rec["flipper_length_mm"] = 5000.0  # mm typed as 1/10 mm
            if i == 30:
                rec["year"] = "2008"  # number sent as text: fine
            if i == 55:
                rec["tag_colour"] = "red"  # field the contract lacks
            fh.write(json.dumps(rec) + "\n")
        # The app re-sends two records the website already had (same penguin_id).
        for rec in web.iloc[[3 + 1, 60]].to_dict(orient="records"):
            rec = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in rec.items()}
            fh.write(json.dumps(rec) + "\n")

    # Operational database: clean types, a sync job that inserted some rows twice.
    path = out_dir / DB
    path.unlink(missing_ok=True)
    dupes = db.iloc[[5, 17, 40]]
    with sqlite3.connect(path) as conn:
        pd.concat([db, dupes]).to_sql(SQLITE_TABLE, conn, index=False)
    return [out_dir / WEB, out_dir / APP, f"sqlite:///{path}?table={SQLITE_TABLE}"]


def write_sklearn_sources(specs_dir: Path) -> list[Path]:
    """Write scikit-learn's bundled diabetes (CSV) and breast-cancer (Parquet) sets."""
    from sklearn.datasets import load_breast_cancer, load_diabetes

    out = []
    diabetes = load_diabetes(as_frame=True, scaled=False).frame.rename(
        columns={"target": "progression"}
    )
    diabetes.insert(0, "patient_id", np.arange(1, len(diabetes) + 1))
    diabetes[["age", "sex"]] = diabetes[["age", "sex"]].astype(int)  # "2", not "2.0"
    path = specs_dir / "diabetes" / "data" / "diabetes.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    diabetes.to_csv(path, index=False)
    out.append(path)

    cancer = load_breast_cancer(as_frame=True)
    frame = cancer.frame.copy()
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame["diagnosis"] = np.where(frame.pop("target") == 1, "benign", "malignant")
    frame.insert(0, "sample_id", np.arange(1, len(frame) + 1))
    path = specs_dir / "breast-cancer" / "data" / "breast_cancer.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    out.append(path)
    return out


if __name__ == "__main__":
    # Regenerate the committed example sources: python -m examples.demo [OUT_DIR]
    import sys

    specs = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("specs")
    for source in [
        *write_penguin_sources(specs / "penguins" / "data"),
        *write_sklearn_sources(specs),
    ]:
        print(source)
