"""The peer of ``mlfleet train specs/penguins/model.yaml`` in bench_cli.py: the script a user
would write by hand for the same model, timed as a whole process (imports included).

    python benchmarks/plain_train.py [specs/penguins]

It reads the spec's three sources (CSV, JSON lines, SQLite), fixes the obvious mess (header
case, stray spaces and case in categories), drops rows without a label, holds out 25%
(stratified, the spec's seed) and runs ``RandomizedSearchCV`` over the spec's two candidate
families: 8 configurations, 3-fold, ``n_jobs=2``, refit, holdout F1. It prints one JSON line.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

import pandas as pd
from scipy.stats import loguniform
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import RandomizedSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CATEGORIES = ["island", "sex"]


def load(folder: Path) -> pd.DataFrame:
    web = pd.read_csv(folder / "data" / "penguins_web.csv")
    web.columns = [c.strip().lower().replace(" (mm)", "_mm").replace(" ", "_") for c in web]
    app = pd.read_json(folder / "data" / "penguins_app.jsonl", lines=True)
    with sqlite3.connect(folder / "data" / "penguins_db.sqlite") as conn:
        db = pd.read_sql("SELECT * FROM measurements", conn)
    frame = pd.concat([web, app, db], ignore_index=True)
    for col in ["species", *CATEGORIES]:
        frame[col] = frame[col].astype("str").str.strip().str.lower().replace({"nan": None})
    for col in NUMERIC:
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    frame = frame.drop_duplicates("penguin_id")
    return frame[frame["species"].isin(["adelie", "chinstrap", "gentoo"])]


def main(folder: Path) -> None:
    started = time.perf_counter()
    frame = load(folder)
    X, y = frame[NUMERIC + CATEGORIES], frame["species"]
    X_train, X_hold, y_train, y_hold = train_test_split(
        X, y, test_size=0.25, random_state=7, stratify=y
    )
    prep = ColumnTransformer(
        [
            ("num", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]), NUMERIC),
            (
                "cat",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="most_frequent")),
                        ("onehot", OneHotEncoder(handle_unknown="ignore")),
                    ]
                ),
                CATEGORIES,
            ),
        ]
    )
    space = [
        {
            "model": [HistGradientBoostingClassifier(max_iter=100)],
            "model__learning_rate": loguniform(0.01, 0.3),
            "model__max_depth": [3, 5, None],
        },
        {"model": [LogisticRegression(max_iter=1000)], "model__C": loguniform(0.001, 10)},
    ]
    pipe = Pipeline([("prep", prep), ("model", LogisticRegression())])
    search = RandomizedSearchCV(
        pipe, space, n_iter=8, cv=3, n_jobs=2, scoring="f1_macro", random_state=7
    )
    search.fit(X_train, y_train)
    holdout = f1_score(y_hold, search.predict(X_hold), average="macro")
    print(
        json.dumps(
            {
                "rows": len(frame),
                "cv_f1_macro": round(float(search.best_score_), 4),
                "holdout_f1_macro": round(float(holdout), 4),
                "seconds_after_imports": round(time.perf_counter() - started, 3),
            }
        )
    )


if __name__ == "__main__":
    main(
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else Path(__file__).resolve().parents[1] / "specs" / "penguins"
    )
