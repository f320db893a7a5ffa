"""Request and response shapes, and request rows checked against the data contract.

The checks mirror the batch rules (same normalisation, null tokens, ranges, categories,
patterns) but run per value in plain Python: a request holds a handful of rows, where
pyarrow's per-call overhead would cost more than the work.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from mlfleet.contract.schema import ColumnSpec, Contract
from mlfleet.errors import MlfleetError

MAX_ERRORS = 5
_INT = re.compile(r"^[+-]?\d{1,18}(\.0*)?$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


class RequestInvalid(MlfleetError):
    """A request's rows break the model's contract (HTTP 422)."""

    code = "invalid_input"
    http_status = 422


class PredictRequest(BaseModel):
    """``{"instances": [...]}``, or MLflow's ``dataframe_records`` / ``dataframe_split``."""

    model_config = ConfigDict(extra="forbid")

    instances: list[dict[str, Any]] | None = Field(default=None, description="Rows as objects.")
    dataframe_records: list[dict[str, Any]] | None = Field(default=None)
    dataframe_split: dict[str, Any] | None = Field(
        default=None, description='{"columns": [...], "data": [[...], ...]}'
    )

    def rows(self) -> list[dict[str, Any]]:
        """The request's rows, whichever of the three shapes it used."""
        given = [
            x
            for x in (self.instances, self.dataframe_records, self.dataframe_split)
            if x is not None
        ]
        if len(given) != 1:
            raise RequestInvalid(
                "give exactly one of instances, dataframe_records, dataframe_split"
            )
        if self.dataframe_split is not None:
            split = self.dataframe_split
            columns, data = split.get("columns"), split.get("data")
            if not isinstance(columns, list) or not isinstance(data, list):
                raise RequestInvalid("dataframe_split needs 'columns' and 'data' lists")
            out = []
            for i, row in enumerate(data):
                if not isinstance(row, list) or len(row) != len(columns):
                    raise RequestInvalid(f"row {i}: expected {len(columns)} values")
                out.append(dict(zip(columns, row, strict=True)))
            return out
        rows = self.instances if self.instances is not None else self.dataframe_records
        assert rows is not None
        return rows


class PredictResponse(BaseModel):
    """What a prediction returns."""

    model: str
    version: str
    predictions: list[Any]
    probabilities: list[list[float]] | None = None
    classes: list[Any] | None = None
    request_id: str


class _Invalid(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


Checker = Callable[[Any], Any]


def _text_normalizer(col: ColumnSpec) -> Callable[[str], str]:
    ops = list(col.normalize)

    def apply(value: str) -> str:
        for op in ops:
            if op == "strip":
                value = value.strip()
            elif op == "lower":
                value = value.lower()
            elif op == "upper":
                value = value.upper()
            elif op == "title":
                value = value.title()
            else:
                value = " ".join(value.split())
        return value

    return apply


def _checker(col: ColumnSpec, null_tokens: frozenset[str]) -> Checker:
    norm = _text_normalizer(col)
    values = frozenset(col.values) if col.values is not None else None
    pattern = re.compile(col.pattern) if col.pattern else None
    lo, hi = col.min, col.max

    def parse(value: Any) -> Any:
        if isinstance(value, str):
            text = norm(value)
            if (
                text if col.type in ("str", "category") else text.strip()
            ).strip().lower() in null_tokens:
                return None
            value = text
        if col.type == "int":
            if isinstance(value, bool):
                raise _Invalid("expected an integer, got a boolean")
            if isinstance(value, int):
                return value
            if isinstance(value, float) and math.isfinite(value) and value.is_integer():
                return int(value)
            if isinstance(value, str) and _INT.match(value.strip()):
                return int(float(value)) if "." in value else int(value)
            raise _Invalid("expected an integer")
        if col.type == "float":
            if isinstance(value, bool):
                raise _Invalid("expected a number, got a boolean")
            if isinstance(value, int | float) or (
                isinstance(value, str) and _FLOAT.match(value.strip())
            ):
                number = float(value)
            else:
                raise _Invalid("expected a number")
            if not math.isfinite(number):
                raise _Invalid("NaN and infinity are not allowed")
            return number
        if col.type == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            raise _Invalid("expected true/false")
        if col.type == "datetime":
            if isinstance(value, str):
                for fmt in col.datetime_formats:
                    try:
                        return datetime.strptime(value.strip(), fmt)
                    except ValueError:
                        continue
                try:
                    return datetime.fromisoformat(value.strip())
                except ValueError:
                    pass
            raise _Invalid(
                "expected a date in one of the formats " + ", ".join(col.datetime_formats)
            )
        if isinstance(value, bool | dict | list):
            raise _Invalid("expected text")
        return value if isinstance(value, str) else norm(str(value))

    def check(value: Any) -> Any:
        parsed = None if value is None else parse(value)
        if parsed is None:
            if not col.nullable:
                raise _Invalid("a value is required")
            return None
        if lo is not None and parsed < lo:
            raise _Invalid(f"below the minimum {lo}")
        if hi is not None and parsed > hi:
            raise _Invalid(f"above the maximum {hi}")
        if values is not None and parsed not in values:
            shown = ", ".join(sorted(values)[:10])
            raise _Invalid(f"not one of the allowed values ({shown})")
        if pattern is not None and not pattern.search(parsed):
            raise _Invalid("does not match the required pattern")
        return parsed

    return check


class RowValidator:
    """Checks request rows against the contract columns a model uses as features."""

    def __init__(self, contract: Contract, features: list[str], *, allow_extra: bool = False):
        self.features = list(features)
        self.allow_extra = allow_extra
        tokens = frozenset(contract.null_tokens)
        self._checks = {name: _checker(contract.column(name), tokens) for name in features}
        self._numeric = {
            name for name in features if contract.column(name).type in ("int", "float", "bool")
        }
        self._known = set(features)

    def frame(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        """The model's input frame for ``rows``.

        Raises:
            RequestInvalid: naming the row and field of the first problems found.
        """
        if not isinstance(rows, list) or not rows:
            raise RequestInvalid("the request holds no rows")
        columns: dict[str, list[Any]] = {name: [] for name in self.features}
        errors: list[str] = []
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                errors.append(f"row {i}: expected an object of feature values")
                continue
            if not self.allow_extra:
                extra = [k for k in row if k not in self._known]
                if extra:
                    errors.append(f"row {i}: unknown field {str(extra[0])[:64]!r}")
            for name, check in self._checks.items():
                try:
                    columns[name].append(check(row.get(name)))
                except _Invalid as exc:
                    errors.append(f"row {i}, field {name!r}: {exc.message}")
                    columns[name].append(None)
            if len(errors) >= MAX_ERRORS:
                break
        if errors:
            raise RequestInvalid("; ".join(errors[:MAX_ERRORS]))
        data = {}
        for name, vals in columns.items():
            if name in self._numeric:
                data[name] = np.array(
                    [np.nan if v is None else float(v) for v in vals], dtype=np.float64
                )
            else:
                data[name] = pd.Series(vals, dtype=object)
        return pd.DataFrame(data)
