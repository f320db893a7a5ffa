"""The preprocessing pipeline derived from a data contract.

Imputation, scaling and one-hot encoding live inside the logged sklearn Pipeline, so the
served model takes raw, contract-typed rows and needs nothing else.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlfleet.contract import semantics
from mlfleet.contract.schema import Contract
from mlfleet.errors import SpecError

MISSING_CATEGORY = "__missing__"


def feature_kinds(contract: Contract, features: list[str]) -> tuple[list[str], list[str]]:
    """Split features into (numeric, categorical) by their contract types.

    Raises:
        SpecError: for a feature type the pipeline cannot encode (datetime, free text).
    """
    numeric, categorical = [], []
    for name in features:
        col = contract.column(name)
        found = semantics.kind(col)
        if found == "numeric":
            numeric.append(name)
        elif found == "categorical":
            categorical.append(name)
        else:
            raise SpecError(
                f"feature {name!r} has type {col.type} without a fixed set of values; "
                "leave it out of `features` (datetime and free text are not encoded)"
            )
    return numeric, categorical


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
    """The model's input frame for curated rows (the contract's one reading of it)."""
    return semantics.model_frame(
        {name: rows[name] for name in features if name in rows},
        contract,
        features,
        rows=len(rows),
        index=rows.index,
    )
