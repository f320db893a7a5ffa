"""Request and response shapes, and request rows checked against the data contract."""

from __future__ import annotations

from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from mlfleet.contract import semantics
from mlfleet.contract.schema import ColumnSpec, Contract
from mlfleet.errors import MlfleetError

MAX_ERRORS = 5


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


class FeedbackLabel(BaseModel):
    """The true outcome of one predicted row."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(
        min_length=1, max_length=128, description="The request id a prediction answered with."
    )
    label: StrictBool | StrictInt | StrictFloat | StrictStr = Field(
        description="The true class (classifiers) or value (regressors)."
    )
    row: int = Field(
        default=0, ge=0, le=1_000_000, description="Which row of that request (0 for the first)."
    )


class FeedbackRequest(BaseModel):
    """``{"labels": [{"request_id": "...", "label": ..., "row": 0}, ...]}``."""

    model_config = ConfigDict(extra="forbid")

    labels: list[FeedbackLabel] = Field(min_length=1, description="Labels, in any order.")


class FeedbackResponse(BaseModel):
    """What became of the labels."""

    matched: int = Field(description="Labels joined to a logged prediction.")
    unknown: list[str] = Field(
        description="Request ids the monitor does not (or no longer) know of."
    )
    written: str | None = Field(
        default=None, description="The Parquet file the labelled rows were written to."
    )


def _messages(col: ColumnSpec) -> dict[str, str]:
    """What each reason code means for this column, in a client's words."""
    expected = {
        "int": "expected an integer",
        "float": "expected a finite number",
        "bool": "expected true/false",
        "datetime": "expected a date in one of the formats " + ", ".join(col.datetime_formats),
    }.get(col.type, "expected text")
    shown = ", ".join(sorted(col.values or [])[:10])
    return {
        semantics.TYPE: expected,
        semantics.MISSING: "a value is required",
        semantics.BELOW_MIN: f"below the minimum {col.min}",
        semantics.ABOVE_MAX: f"above the maximum {col.max}",
        semantics.NOT_IN_VALUES: f"not one of the allowed values ({shown})",
        semantics.PATTERN: "does not match the required pattern",
    }


class RowValidator:
    """Checks request rows against the contract: the model's features, and any other
    contract column a row carries (an id, a timestamp) — never the target.

    Values are read by the contract's one reading (:class:`semantics.RowChecker`, the
    batch kernels' per-row twin), so a request is valid exactly when the same row in a
    training file would be. Only the features reach the model; the other columns are kept
    beside them for the prediction log, so that labelled rows make complete training rows.
    """

    def __init__(self, contract: Contract, features: list[str], *, allow_extra: bool = False):
        self.contract = contract
        self.features = list(features)
        self.allow_extra = allow_extra
        self.others = [
            c.name for c in contract.columns if c.name not in features and c.name != contract.target
        ]
        self._checker = semantics.RowChecker(contract, self.features + self.others)
        self._columns = {c.name: c for c in self._checker.columns}
        self._messages = {c.name: _messages(c) for c in self._checker.columns}
        self._known = set(self.features) | set(self.others)

    def frame(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        """The model's input frame for ``rows`` (see :meth:`read`)."""
        return self.read(rows)[0]

    def read(self, rows: list[dict[str, Any]]) -> tuple[pd.DataFrame, dict[str, list[Any]]]:
        """The model's input frame for ``rows``, and the same rows with every contract
        column they carry (the features first) as lists of parsed values, None when missing
        (what the prediction log keeps; a second frame would cost more than the logging).

        Raises:
            RequestInvalid: naming the row and field of the first problems found.
        """
        if not isinstance(rows, list) or not rows:
            raise RequestInvalid("the request holds no rows")
        columns: dict[str, list[Any]] = {name: [] for name in self.features}
        given = [
            name for name in self.others if any(name in r for r in rows if isinstance(r, dict))
        ]
        others: dict[str, list[Any]] = {name: [] for name in given}
        errors: list[str] = []
        check = self._checker.check
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                errors.append(f"row {i}: expected an object of feature values")
                continue
            if not self.allow_extra:
                extra = [k for k in row if k not in self._known]
                if extra:
                    errors.append(f"row {i}: unknown field {str(extra[0])[:64]!r}")
            for name in self.features:
                value, codes = check(self._columns[name], row.get(name))
                if codes:
                    errors.append(f"row {i}, field {name!r}: {self._messages[name][codes[0]]}")
                columns[name].append(value)
            for name in given:
                if name not in row:
                    others[name].append(None)
                    continue
                value, codes = check(self._columns[name], row[name])
                if codes:
                    errors.append(f"row {i}, field {name!r}: {self._messages[name][codes[0]]}")
                others[name].append(value)
            if len(errors) >= MAX_ERRORS:
                break
        if errors:
            raise RequestInvalid("; ".join(errors[:MAX_ERRORS]))
        frame = semantics.model_frame(columns, self.contract, self.features, rows=len(rows))
        return frame, {**columns, **others}
