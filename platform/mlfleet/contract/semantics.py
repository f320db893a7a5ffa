"""Validation rules as pure, vectorised pyarrow functions (no Ray, no per-row Python).

A batch of raw values from any source (text from CSV/SQL, typed values from Parquet or
JSON) is normalised, parsed to the contract's types and checked. The result says, per
row, which (column, reason) pairs failed; callers split valid rows from quarantined ones.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlfleet.contract.schema import ColumnSpec, Contract

# Reason codes are part of the quarantine format; keep names stable.
MISSING = "missing"
TYPE = "type"
BELOW_MIN = "below_min"
ABOVE_MAX = "above_max"
NOT_IN_VALUES = "not_in_values"
PATTERN = "pattern"
DUPLICATE = "duplicate"
UNKNOWN_COLUMN = "unknown_column"
REASON_CODES = (
    MISSING,
    TYPE,
    BELOW_MIN,
    ABOVE_MAX,
    NOT_IN_VALUES,
    PATTERN,
    DUPLICATE,
    UNKNOWN_COLUMN,
)

ROW_COLUMN = "_row"
SOURCE_COLUMN = "_source"
REASONS_COLUMN = "_reasons"
DETAILS_COLUMN = "_details"
EXTRA_COLUMN = "_extra"

ARROW_TYPES: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "str": pa.string(),
    "bool": pa.bool_(),
    "category": pa.string(),
    "datetime": pa.timestamp("us"),
}

# Up to 18 digits always fits int64; an optional ".0" tail accepts integral floats that
# text exports (SQLite REAL, spreadsheets) write as "3.0".
INT_PATTERN = r"^[+-]?\d{1,18}(\.0*)?$"
FLOAT_PATTERN = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


def arrow_schema(contract: Contract) -> pa.Schema:
    """The Arrow schema of curated data for ``contract``."""
    return pa.schema([(c.name, ARROW_TYPES[c.type]) for c in contract.columns])


@lru_cache(maxsize=64)
def _case_variants(tokens: tuple[str, ...]) -> pa.Array:
    # is_in on every capitalisation of a few short tokens is ~5x cheaper than lower-casing
    # every value of every column just to compare it with them.
    out: set[str] = set()
    for token in tokens:
        if sum(ch.isalpha() for ch in token) > 6:
            out.update({token, token.upper(), token.title()})
            continue
        choices = [(ch.lower(), ch.upper()) if ch.isalpha() else (ch,) for ch in token]
        out.update("".join(p) for p in itertools.product(*choices))
    return pa.array(sorted(out), pa.string())


def normalize_text(values: pa.Array, ops: Iterable[str]) -> pa.Array:
    """Apply the contract's text normalisations in order."""
    for op in ops:
        if op == "strip":
            values = pc.utf8_trim_whitespace(values)
        elif op == "lower":
            values = pc.utf8_lower(values)
        elif op == "upper":
            values = pc.utf8_upper(values)
        elif op == "title":
            values = pc.utf8_title(values)
        elif op == "collapse_whitespace":
            values = pc.utf8_trim_whitespace(pc.replace_substring_regex(values, r"\s+", " "))
        else:  # pragma: no cover - the contract's Literal type forbids it
            raise ValueError(op)
    return values


def _null_where(values: pa.Array, mask: pa.Array) -> pa.Array:
    return pc.if_else(mask, pa.scalar(None, values.type), values)


def as_text(values: pa.Array) -> pa.Array:
    if pa.types.is_string(values.type):
        return values
    if pa.types.is_large_string(values.type) or pa.types.is_dictionary(values.type):
        return values.cast(pa.string())
    try:
        return values.cast(pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        # Nested JSON values (lists, objects) have no text cast: render them as JSON.
        return pa.array(
            [None if v is None else json.dumps(v, default=str) for v in values.to_pylist()],
            pa.string(),
        )


@dataclass
class ParsedColumn:
    """A column parsed to its contract type, with the rows that broke a rule."""

    values: pa.Array
    failures: dict[str, np.ndarray] = field(default_factory=dict)


def _mask(array: pa.Array) -> np.ndarray:
    return np.asarray(array.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _parse_text(text: pa.Array, col: ColumnSpec) -> tuple[pa.Array, pa.Array]:
    """Parse text to ``col``'s type; returns (typed values, type-failure mask)."""
    present = pc.is_valid(text)
    if col.type in ("str", "category"):
        return text, pc.scalar(False)
    if col.type == "int":
        ok = pc.match_substring_regex(text, INT_PATTERN)
        clean = _null_where(text, pc.invert(ok))
        if pc.any(pc.match_substring_regex(clean, r"[.+]")).as_py():
            # Arrow's cast takes neither a "+" sign nor an integral ".0" tail.
            clean = pc.replace_substring_regex(clean, r"^\+|\.0*$", "")
        return clean.cast(pa.int64()), pc.and_(present, pc.invert(ok))
    if col.type == "float":
        ok = pc.match_substring_regex(text, FLOAT_PATTERN)
        clean = _null_where(text, pc.invert(ok))
        return clean.cast(pa.float64()), pc.and_(present, pc.invert(ok))
    if col.type == "bool":
        lowered = pc.utf8_lower(text)
        is_true = pc.is_in(lowered, value_set=pa.array(_TRUE))
        is_false = pc.is_in(lowered, value_set=pa.array(_FALSE))
        ok = pc.or_(is_true, is_false)
        parsed = _null_where(is_true, pc.invert(ok))
        return parsed, pc.and_(present, pc.invert(ok))
    # datetime: the first listed format that matches wins.
    parsed = None
    for fmt in col.datetime_formats:
        attempt = pc.strptime(text, format=fmt, unit="us", error_is_null=True)
        parsed = attempt if parsed is None else pc.coalesce(parsed, attempt)
    assert parsed is not None
    return parsed, pc.and_(present, pc.is_null(parsed))


def _typed_fast_path(values: pa.Array, col: ColumnSpec) -> pa.Array | None:
    """Values already of a compatible Arrow type, converted without text; else None."""
    t = values.type
    if col.type == "int" and pa.types.is_integer(t):
        return values.cast(pa.int64())
    if col.type == "float" and (pa.types.is_integer(t) or pa.types.is_floating(t)):
        return values.cast(pa.float64())
    if col.type == "bool" and pa.types.is_boolean(t):
        return values
    if col.type == "datetime" and (pa.types.is_timestamp(t) or pa.types.is_date(t)):
        try:
            return values.cast(pa.timestamp("us"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
    return None


def parse_column(
    raw: pa.Array | None, col: ColumnSpec, null_tokens: tuple[str, ...], length: int
) -> ParsedColumn:
    """Normalise, parse and check one column of a batch.

    Args:
        raw: The source's values (any Arrow type), or None when the source lacks the column.
        col: The contract column.
        null_tokens: Text read as missing (lower-case).
        length: Rows in the batch (used when ``raw`` is None).
    """
    if isinstance(raw, pa.ChunkedArray):
        raw = raw.combine_chunks()
    if raw is None or pa.types.is_null(raw.type):
        values: pa.Array = pa.nulls(length, ARROW_TYPES[col.type])
        type_fail: pa.Array | pa.Scalar = pc.scalar(False)
    else:
        typed = _typed_fast_path(raw, col)
        if typed is not None:
            values, type_fail = typed, pc.scalar(False)
            if col.type == "float":
                # NaN in a typed column is how pandas and numpy spell "missing";
                # infinities are not a value any model can use.
                values = _null_where(values, pc.is_nan(values))
                type_fail = pc.is_inf(values)
                values = _null_where(values, type_fail)
        else:
            text = as_text(raw)
            if col.normalize:
                text = normalize_text(text, col.normalize)
            if col.type not in ("str", "category"):
                # Whitespace around a number, flag or date never carries meaning.
                text = pc.utf8_trim_whitespace(text)
            text = _null_where(text, pc.is_in(text, value_set=_case_variants(null_tokens)))
            if col.type in ("str", "category") and "strip" not in col.normalize:
                blank = pc.equal(pc.utf8_trim_whitespace(text), "")
                text = _null_where(text, blank)
            values, type_fail = _parse_text(text, col)

    failures: dict[str, np.ndarray] = {}
    type_mask = _mask(type_fail) if isinstance(type_fail, pa.Array) else None
    if type_mask is not None and type_mask.any():
        failures["type"] = type_mask
    if not col.nullable:
        missing = _mask(pc.is_null(values))
        if type_mask is not None:
            missing &= ~type_mask
        if missing.any():
            failures[MISSING] = missing
    if col.min is not None:
        below = _mask(pc.less(values, pa.scalar(col.min)))
        if below.any():
            failures[BELOW_MIN] = below
    if col.max is not None:
        above = _mask(pc.greater(values, pa.scalar(col.max)))
        if above.any():
            failures[ABOVE_MAX] = above
    if col.values is not None:
        known = pc.is_in(values, value_set=pa.array(col.values, pa.string()))
        unknown = _mask(pc.and_(pc.is_valid(values), pc.invert(known)))
        if unknown.any():
            failures[NOT_IN_VALUES] = unknown
    if col.pattern is not None:
        matches = pc.match_substring_regex(values, col.pattern)
        nomatch = _mask(pc.and_(pc.is_valid(values), pc.invert(matches)))
        if nomatch.any():
            failures[PATTERN] = nomatch
    return ParsedColumn(values=values, failures=failures)


def match_columns(
    source_names: Iterable[str], contract: Contract
) -> tuple[dict[str, str], list[str]]:
    """Map a source's column names to contract columns.

    Exact names win; otherwise names are compared on their letters and digits alone,
    ignoring case ("Monthly Spend ($)" finds ``monthly_spend``), which is the header drift
    spreadsheet exports and BI tools show.

    Returns:
        (contract name -> source name, source names that match no contract column).
    """

    def fold(name: str) -> str:
        return "".join(ch for ch in name.lower() if ch.isalnum())

    names = [n for n in source_names if n != ROW_COLUMN]
    mapping: dict[str, str] = {}
    folded = {fold(c): c for c in contract.column_names}
    for name in names:
        if name in contract.column_names and name not in mapping:
            mapping[name] = name
    for name in names:
        if name in mapping.values():
            continue
        target = folded.get(fold(name))
        if target is not None and target not in mapping:
            mapping[target] = name
    extras = [n for n in names if n not in mapping.values()]
    return mapping, extras


@dataclass
class CheckedBatch:
    """A batch after validation (all arrays have the batch's length)."""

    typed: pa.Table
    failures: dict[tuple[str, str], np.ndarray]
    bad: np.ndarray
    extras: list[str]


def check_batch(batch: pa.Table, contract: Contract) -> CheckedBatch:
    """Validate every row of ``batch`` against ``contract``.

    Columns the contract lacks make the rows where they hold a value ``unknown_column``;
    contract columns the source lacks read as missing values.
    """
    n = batch.num_rows
    mapping, extras = match_columns(batch.column_names, contract)
    tokens = contract.null_tokens
    columns: list[pa.Array] = []
    failures: dict[tuple[str, str], np.ndarray] = {}
    for col in contract.columns:
        source_name = mapping.get(col.name)
        raw = batch.column(source_name) if source_name is not None else None
        parsed = parse_column(raw, col, tokens, n)
        columns.append(parsed.values)
        for code, mask in parsed.failures.items():
            failures[(col.name, code)] = mask
    for name in extras:
        raw = batch.column(name)
        text = pc.utf8_trim_whitespace(as_text(raw))
        text = _null_where(text, pc.is_in(text, value_set=_case_variants(tokens)))
        present = _mask(pc.is_valid(text))
        if present.any():
            failures[(name, UNKNOWN_COLUMN)] = present
    bad = np.zeros(n, dtype=bool)
    for mask in failures.values():
        bad |= mask
    typed = pa.Table.from_arrays(columns, schema=arrow_schema(contract))
    return CheckedBatch(typed=typed, failures=failures, bad=bad, extras=extras)
