"""Request and response shapes, and request rows checked against the data contract."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from mlfleet.contract import semantics
from mlfleet.contract.schema import ColumnSpec, Contract
from mlfleet.errors import MlfleetError

MAX_ERRORS = 5


class RequestInvalid(MlfleetError):
    """A request's rows break the model's contract (HTTP 422)."""

    code = "invalid_input"
    http_status = 422


PREDICT_FORMS = ("instances", "dataframe_records", "dataframe_split")
MAX_LABELS = 10_000  # labels per feedback request
MAX_LABEL_TEXT = 1_000
_INT64 = (-(2**63), 2**63 - 1)
_FLOAT_MAX = sys.float_info.max


class TooManyInstances(RequestInvalid):
    """A predict request with more rows than MLFLEET_MAX_INSTANCES (HTTP 422)."""

    code = "too_many_instances"


class DataframeSplit(BaseModel):
    """MLflow's pandas ``split`` orient: column names once, then rows of values."""

    model_config = ConfigDict(extra="forbid")

    columns: list[StrictStr] = Field(
        min_length=1,
        json_schema_extra={"uniqueItems": True},
        description="Column names, each once.",
    )
    data: list[list[Any]] = Field(
        min_length=1, description="Rows, each with one value per column, in column order."
    )
    index: list[Any] | None = Field(default=None, description="Row labels (ignored).")

    @field_validator("columns")
    @classmethod
    def _unique(cls, columns: list[str]) -> list[str]:
        if len(set(columns)) != len(columns):
            raise ValueError("column names must be unique")
        return columns


class PredictRequest(BaseModel):
    """Exactly one of ``{"instances": [...]}``, or MLflow's ``dataframe_records`` /
    ``dataframe_split``."""

    model_config = ConfigDict(extra="forbid")

    instances: list[dict[str, Any]] | None = Field(
        default=None, min_length=1, description="Rows as objects."
    )
    dataframe_records: list[dict[str, Any]] | None = Field(
        default=None, min_length=1, description="Rows as objects (MLflow's name)."
    )
    dataframe_split: DataframeSplit | None = Field(
        default=None, description='{"columns": [...], "data": [[...], ...]}'
    )

    @model_validator(mode="before")
    @classmethod
    def _exactly_one(cls, payload: Any) -> Any:
        if isinstance(payload, dict):
            unknown = [k for k in payload if k not in PREDICT_FORMS]
            if unknown:
                raise ValueError(
                    f"unknown field {str(unknown[0])[:64]!r}: give exactly one of "
                    "instances, dataframe_records, dataframe_split"
                )
            if len(payload) != 1:
                raise ValueError(
                    "give exactly one of instances, dataframe_records, dataframe_split"
                )
            form = next(iter(payload))
            if payload[form] is None:
                raise ValueError(f"{form} must not be null")
        return payload

    def count(self) -> int:
        """How many rows the request carries."""
        if self.dataframe_split is not None:
            return len(self.dataframe_split.data)
        return len(self.instances or self.dataframe_records or ())

    def check_count(self, most: int) -> None:
        """Refuse more than ``most`` rows (MLFLEET_MAX_INSTANCES)."""
        if self.count() > most:
            raise TooManyInstances(
                f"the request holds {self.count()} rows; at most {most} are allowed "
                "(MLFLEET_MAX_INSTANCES): split it"
            )

    def rows(self) -> list[dict[str, Any]]:
        """The request's rows, whichever of the three shapes it used."""
        split = self.dataframe_split
        if split is not None:
            width = len(split.columns)
            out = []
            for i, row in enumerate(split.data):
                if len(row) != width:
                    raise RequestInvalid(
                        f"dataframe_split row {i}: expected {width} values, got {len(row)}"
                    )
                out.append(dict(zip(split.columns, row, strict=True)))
            return out
        rows = self.instances if self.instances is not None else self.dataframe_records
        assert rows is not None
        return rows

    @classmethod
    def openapi_schema(cls, max_instances: int) -> dict[str, Any]:
        """The body's JSON schema as the handler enforces it (exactly one form, bounded)."""
        # Values are scalars: the contract refuses anything nested (422, naming the field).
        scalar = {"type": ["string", "number", "integer", "boolean", "null"]}
        rows = {
            "type": "array",
            "minItems": 1,
            "maxItems": max_instances,
            "items": {"type": "object", "additionalProperties": scalar},
        }
        split = DataframeSplit.model_json_schema()
        split["properties"]["data"]["maxItems"] = max_instances
        split["properties"]["data"]["items"] = {"type": "array", "items": scalar}
        split["properties"]["index"] = {
            "anyOf": [{"type": "array", "items": scalar}, {"type": "null"}],
            "description": "Row labels (ignored).",
        }
        forms: list[dict[str, Any]] = [
            {
                "type": "object",
                "title": form,
                "properties": {form: schema},
                "required": [form],
                "additionalProperties": False,
            }
            for form, schema in (
                ("instances", rows),
                ("dataframe_records", rows),
                ("dataframe_split", split),
            )
        ]
        return {"title": cls.__name__, "description": cls.__doc__, "oneOf": forms}


class ErrorBody(BaseModel):
    """What went wrong, in a client's words (never a stack trace or an echo of the body)."""

    code: str = Field(description="Stable machine-readable code, e.g. `invalid_input`.")
    message: str = Field(description="What was wrong and, where it helps, how to fix it.")
    request_id: str | None = Field(
        default=None, description="For internal errors: the id to look for in the logs."
    )


class ErrorEnvelope(BaseModel):
    """The body of every error answer."""

    error: ErrorBody


class Readiness(BaseModel):
    """``/readyz``: whether every champion answers (details only for a valid key)."""

    ready: bool
    models: dict[str, dict[str, Any]] | None = Field(
        default=None,
        description="Per model: its champion version, whether it is ready, and the error "
        "type when not (with a valid key, or in keyless mode).",
    )


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
    # Bounded like a contract value: a 400-digit integer, NaN or a megabyte of text is
    # no label, and would only fail later, inside the monitor.
    label: (
        StrictBool
        | Annotated[StrictInt, Field(ge=_INT64[0], le=_INT64[1])]
        | Annotated[StrictFloat, Field(allow_inf_nan=False, ge=-_FLOAT_MAX, le=_FLOAT_MAX)]
        | Annotated[StrictStr, Field(max_length=MAX_LABEL_TEXT)]
    ) = Field(description="The true class (classifiers) or value (regressors).")
    row: int = Field(
        default=0, ge=0, le=1_000_000, description="Which row of that request (0 for the first)."
    )


class FeedbackRequest(BaseModel):
    """``{"labels": [{"request_id": "...", "label": ..., "row": 0}, ...]}``."""

    model_config = ConfigDict(extra="forbid")

    labels: list[FeedbackLabel] = Field(
        min_length=1, max_length=MAX_LABELS, description="Labels, in any order."
    )


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
