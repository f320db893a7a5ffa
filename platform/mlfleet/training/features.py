"""The preprocessing pipeline derived from a data contract.

Imputation, scaling and one-hot encoding live inside the logged sklearn Pipeline, so the
served model takes raw, contract-typed rows and needs nothing else.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlfleet.contract.schema import Contract
from mlfleet.spec import SpecError

MISSING_CATEGORY = "__missing__"


def feature_kinds(contract: Contract, features: list[str]) -> tuple[list[str], list[str]]:
    """Split features into (numeric, categorical) by their contract types.

    Raises:
        SpecError: for a feature type the pipeline cannot encode (datetime, free text).
    """
    numeric, categorical = [], []
    for name in features:
        col = contract.column(name)
        if col.type in ("int", "float", "bool"):
            numeric.append(name)
        elif col.type == "category" or (col.type == "str" and col.values):
            categorical.append(name)
        else:
            raise SpecError(
                f"feature {name!r} has type {col.type} without a fixed set of values; "
                "leave it out of `features` (datetime and free text are not encoded)"
            )
    return numeric, categorical


def default_features(contract: Contract) -> list[str]:
    """Every encodable contract column except the target and the keys (ids carry no signal)."""
    out = []
    skip = {contract.target, *(contract.keys or [])}
    for col in contract.columns:
        if col.name in skip:
            continue
        if col.type in ("int", "float", "bool", "category") or (col.type == "str" and col.values):
            out.append(col.name)
    return out


def build_pipeline(contract: Contract, features: list[str], estimator: Any) -> Pipeline:
    """Preprocessing for ``features`` followed by ``estimator``."""
    numeric, categorical = feature_kinds(contract, features)
    transformers = []
    if numeric:
        transformers.append(
            (
                "numeric",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                        ("scale", StandardScaler()),
                    ]
                ),
                numeric,
            )
        )
    if categorical:
        transformers.append(
            (
                "categorical",
                Pipeline(
                    [
                        (
                            "impute",
                            SimpleImputer(
                                strategy="constant",
                                fill_value=MISSING_CATEGORY,
                                keep_empty_features=True,
                            ),
                        ),
                        # Categories never seen in training (a new plan, a typo that passed the
                        # contract) encode as all zeros instead of failing the request.
                        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
                    ]
                ),
                categorical,
            )
        )
    pre = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
    return Pipeline([("preprocess", pre), ("model", estimator)])


def feature_frame(rows: pd.DataFrame, contract: Contract, features: list[str]) -> pd.DataFrame:
    """The model's input frame: numbers (and flags) as float64, categories as text.

    One dtype per kind, whatever nulls a batch happens to hold, so the logged signature and
    every request agree (an int column with a null would otherwise turn float on the fly).
    """
    numeric, _ = feature_kinds(contract, features)
    out = {}
    for name in features:
        values = rows[name] if name in rows else pd.Series([None] * len(rows))
        if name in numeric:
            out[name] = pd.to_numeric(values, errors="coerce").astype(np.float64)
        else:
            out[name] = values.astype(object).where(values.notna(), None)
    return pd.DataFrame(out, index=rows.index)
