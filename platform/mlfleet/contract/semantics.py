"""The one reading of a data contract: what each column's values mean, everywhere.

Every reader of a contract asks this module: batch validation (Ray Data, one Arrow batch
at a time), the gateway (one request's rows), the reference profile, the training
pipeline, the MLflow signature and the drift monitor. It owns:

- each column's **kind** (numeric, categorical, text, time): how a model and the drift
  statistics treat it;
- the **normalisers**, **null tokens** and **bool tokens**;
- **number and date parsing** (text and typed values read the same: ``"3"`` and ``3``
  are one integer, a NaN number and the token ``"nan"`` are both missing);
- the **regex engine**: RE2 (through pyarrow), linear in the input, so no pattern can
  freeze a worker; a pattern RE2 cannot compile is refused when the contract loads.

The kernels are vectorised pyarrow. :class:`RowChecker` answers a request's few rows
without paying pyarrow's per-call cost: it handles the plain cases (typed numbers, flags,
printable ASCII categories) in Python and hands every other value to the same kernels,
and the conformance tests hold the two to identical verdicts and parsed values.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:  # the schema imports this module for its defaults and the regex check
    import pandas as pd

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

# Up to 19 digits (int64's width; the 19-digit ones are range-checked before the cast);
# an optional ".0" tail accepts integral floats that text exports (SQLite REAL,
# spreadsheets) write as "3.0". RE2's \d is ASCII: Unicode digits are not numbers here.
INT_PATTERN = r"^[+-]?\d{1,19}(\.0*)?$"
FLOAT_PATTERN = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"

Kind = Literal["numeric", "categorical", "text", "time"]

DEFAULT_DATETIME_FORMATS = ("%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S")
# Tokens that mean "no value" in text sources (CSV, JSON strings, SQL text), compared
# case-insensitively after normalisation and trimming; a contract can replace the list
# with `null_values`.
DEFAULT_NULL_VALUES = ("", "na", "n/a", "null", "none", "nan")
TRUE_TOKENS = ("true", "1", "yes")
FALSE_TOKENS = ("false", "0", "no")


def kind(col: ColumnSpec) -> Kind:
    """How models and drift statistics treat a column.

    Numbers and flags are numeric (a flag is 0 or 1: pandas reads it as bool, scikit-learn
    scales it, the profile bins it); categories and text with a fixed list of values are
    categorical; other text is free text; datetimes are time.
    """
    if col.type in ("int", "float", "bool"):
        return "numeric"
    if col.type == "category" or (col.type == "str" and col.values):
        return "categorical"
    if col.type == "datetime":
        return "time"
    return "text"


def datetime_formats(col: ColumnSpec) -> tuple[str, ...]:
    """The formats tried, in order, when parsing a datetime column."""
    return tuple(col.formats) if col.formats else DEFAULT_DATETIME_FORMATS


def null_tokens(null_values: Iterable[str] | None) -> tuple[str, ...]:
    """A contract's null tokens, lower-cased (the defaults when it names none)."""
    tokens = DEFAULT_NULL_VALUES if null_values is None else null_values
    return tuple(t.strip().lower() for t in tokens)


def regex_error(pattern: str) -> str | None:
    """Why RE2 cannot compile ``pattern`` (lookarounds, backreferences…), or None."""
    try:
        pc.match_substring_regex(pa.array([""], pa.string()), pattern)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        return str(exc).removeprefix("Invalid regular expression: ")
    return None


def regex_search(values: pa.Array, pattern: str) -> pa.Array:
    """Whether each text contains a match of ``pattern`` (RE2: linear in the input)."""
    return pc.match_substring_regex(values, pattern)


def arrow_schema(contract: Contract) -> pa.Schema:
    """The Arrow schema of curated data for ``contract``."""
    return pa.schema([(c.name, ARROW_TYPES[c.type]) for c in contract.columns])


# Tokens with at most this many letters are matched through every capitalisation of
# themselves (is_in on a few short strings is ~5x cheaper than lower-casing every value);
# longer ones by lower-casing the values.
_VARIANT_LETTERS = 6


@lru_cache(maxsize=64)
def _case_variants(tokens: tuple[str, ...]) -> tuple[pa.Array, pa.Array | None]:
    short: set[str] = set()
    long: list[str] = []
    for token in tokens:
        if sum(ch.isalpha() for ch in token) > _VARIANT_LETTERS:
            long.append(token)
            continue
        choices = [(ch.lower(), ch.upper()) if ch.isalpha() else (ch,) for ch in token]
        short.update("".join(p) for p in itertools.product(*choices))
    return (
        pa.array(sorted(short), pa.string()),
        pa.array(long, pa.string()) if long else None,
    )


def is_null_token(text: pa.Array, tokens: tuple[str, ...], *, trimmed: bool) -> pa.Array:
    """Whether each text is a null token: any case, surrounding whitespace ignored."""
    if not trimmed:
        text = pc.utf8_trim_whitespace(text)
    short, long = _case_variants(tokens)
    found = pc.is_in(text, value_set=short)
    if long is not None:
        found = pc.or_(found, pc.is_in(pc.utf8_lower(text), value_set=long))
    return found


def normalize_text(values: pa.Array, ops: Iterable[str]) -> pa.Array:
    """Apply the contract's text normalisations in order."""
    for op in ops:
        values = _NORMALIZERS[op][0](values)
    return values


# Each normaliser once, as the batch kernel and as the per-value function the row checker
# uses on printable ASCII (where the two agree: the conformance tests hold them to it).
_NORMALIZERS: dict[str, tuple[Any, Any]] = {
    "strip": (pc.utf8_trim_whitespace, str.strip),
    "lower": (pc.utf8_lower, str.lower),
    "upper": (pc.utf8_upper, str.upper),
    "title": (pc.utf8_title, str.title),
    "collapse_whitespace": (
        lambda v: pc.utf8_trim_whitespace(pc.replace_substring_regex(v, r"\s+", " ")),
        lambda v: " ".join(v.split()),
    ),
}


def _null_where(values: pa.Array, mask: pa.Array) -> pa.Array:
    return pc.if_else(mask, pa.scalar(None, values.type), values)


def as_text(values: pa.Array) -> pa.Array:
    """Any Arrow values as text: numbers as Arrow prints them, NaN as null, nested as JSON."""
    if pa.types.is_string(values.type):
        return values
    if pa.types.is_large_string(values.type) or pa.types.is_dictionary(values.type):
        return values.cast(pa.string())
    if pa.types.is_floating(values.type):
        # A NaN number is a missing value whatever the column (pandas writes them so).
        values = _null_where(values, pc.is_nan(values))
    try:
        return values.cast(pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        # Nested JSON values (lists, objects) have no text cast: render them as JSON.
        return pa.array(
            [None if v is None else json.dumps(v, default=str) for v in values.to_pylist()],
            pa.string(),
        )


def json_column(values: Sequence[Any]) -> pa.Array:
    """Arrow values of one column of parsed JSON (a request's rows, a JSON-lines file).

    Uniform values keep their type; a column whose values change type (``3`` and
    ``"3"``), or hold integers beyond int64, becomes text: numbers as Arrow prints them,
    flags as ``true``/``false``, objects and lists as JSON. Either way the kernels read a
    value the same.
    """
    try:
        return pa.array(values, from_pandas=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        pass
    floats = [i for i, v in enumerate(values) if type(v) is float]
    printed = pa.array([values[i] for i in floats], pa.float64()) if floats else None
    text: list[str | None] = [None] * len(values)
    for i, v in enumerate(values):
        if v is None or type(v) is float:
            continue
        if isinstance(v, bool):
            text[i] = "true" if v else "false"
        elif isinstance(v, dict | list):
            text[i] = json.dumps(v)
        else:
            text[i] = str(v)
    if printed is not None:
        for i, t in zip(floats, as_text(printed).to_pylist(), strict=True):
            text[i] = t
    return pa.array(text, pa.string())


@dataclass
class ParsedColumn:
    """A column parsed to its contract type, with the rows that broke a rule."""

    values: pa.Array
    failures: dict[str, np.ndarray] = field(default_factory=dict)


def _mask(array: pa.Array) -> np.ndarray:
    return np.asarray(array.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


_INT64_MAX_DIGITS = "9223372036854775807"
_INT64_MIN_DIGITS = "9223372036854775808"


def _parse_int_text(text: pa.Array) -> tuple[pa.Array, pa.Array]:
    ok = pc.match_substring_regex(text, INT_PATTERN)
    clean = _null_where(text, pc.invert(ok))
    if pc.any(pc.match_substring_regex(clean, r"[.+]")).as_py():
        # Arrow's cast takes neither a "+" sign nor an integral ".0" tail.
        clean = pc.replace_substring_regex(clean, r"^\+|\.0*$", "")
    if (pc.max(pc.utf8_length(clean)).as_py() or 0) >= len(_INT64_MAX_DIGITS):
        # 19 digits may not fit int64: compare them with its limits as equal-width text.
        digits = pc.replace_substring_regex(clean, r"^-", "")
        lengths = pc.utf8_length(digits)
        limit = pc.if_else(pc.starts_with(clean, "-"), _INT64_MIN_DIGITS, _INT64_MAX_DIGITS)
        over = pc.and_(pc.equal(lengths, len(_INT64_MAX_DIGITS)), pc.greater(digits, limit))
        ok = pc.and_(ok, pc.invert(over.fill_null(False)))
        clean = _null_where(clean, over)
    return clean.cast(pa.int64()), pc.and_(pc.is_valid(text), pc.invert(ok))


def _numbers(text: pa.Array) -> pa.Array:
    """The runs of digits in each text, without leading zeros, joined ("2024-1-05" → "2024-1-5")."""
    parts = pc.split_pattern_regex(text, r"[^0-9]+")
    flat = pc.replace_substring_regex(pc.list_flatten(parts), r"^0+", "")
    flat = pc.if_else(pc.equal(flat, ""), "0", flat)
    return pc.binary_join(pa.ListArray.from_arrays(parts.offsets, flat, mask=parts.is_null()), "-")


def _exact_dates(text: pa.Array, parsed: pa.Array, fmt: str) -> pa.Array:
    """``parsed`` without the dates Arrow's strptime rolled over (Feb 30 → Mar 1, 23:59:60).

    A rolled-over date lands on day 1-3 of the next month, a leap second on second 0, so
    only those rows are checked: their numbers must survive the round trip through the
    format (leading zeros aside, so "2024-1-5" stays valid).
    """
    maybe = pc.less_equal(pc.day(parsed), 3)
    if "%S" in fmt:
        maybe = pc.or_(maybe, pc.equal(pc.second(parsed), 0))
    rows = pc.indices_nonzero(maybe.fill_null(False))
    if len(rows) == 0:
        return parsed
    seconds = parsed.take(rows).cast(pa.timestamp("s"), safe=False)  # %S prints fractions
    printed = pc.strftime(seconds, format=fmt)
    written = text.take(rows)
    # Most texts print back exactly; only the others need their numbers compared.
    differ = pc.indices_nonzero(pc.not_equal(written, printed).fill_null(False))
    if len(differ) == 0:
        return parsed
    wrong = pc.not_equal(_numbers(written.take(differ)), _numbers(printed.take(differ))).fill_null(
        False
    )
    if not pc.any(wrong).as_py():
        return parsed
    mask = np.zeros(len(parsed), dtype=bool)
    mask[rows.take(differ.filter(wrong)).to_numpy()] = True
    return _null_where(parsed, pa.array(mask))


def _parse_text(text: pa.Array, col: ColumnSpec) -> tuple[pa.Array, pa.Array]:
    """Parse text to ``col``'s type; returns (typed values, type-failure mask)."""
    present = pc.is_valid(text)
    if col.type in ("str", "category"):
        return text, pc.scalar(False)
    if col.type == "int":
        return _parse_int_text(text)
    if col.type == "float":
        ok = pc.match_substring_regex(text, FLOAT_PATTERN)
        parsed = _null_where(text, pc.invert(ok)).cast(pa.float64())
        # "1e309" is well-formed but overflows to infinity: as unusable as a typed inf.
        bad = pc.or_(pc.invert(ok), pc.is_inf(parsed).fill_null(False))
        return _null_where(parsed, bad), pc.and_(present, bad)
    if col.type == "bool":
        lowered = pc.utf8_lower(text)
        is_true = pc.is_in(lowered, value_set=pa.array(TRUE_TOKENS))
        is_false = pc.is_in(lowered, value_set=pa.array(FALSE_TOKENS))
        ok = pc.or_(is_true, is_false)
        parsed = _null_where(is_true, pc.invert(ok))
        return parsed, pc.and_(present, pc.invert(ok))
    # datetime: the first listed format that matches wins.
    parsed = None
    for fmt in datetime_formats(col):
        attempt = _exact_dates(
            text, pc.strptime(text, format=fmt, unit="us", error_is_null=True), fmt
        )
        parsed = attempt if parsed is None else pc.coalesce(parsed, attempt)
    assert parsed is not None
    return parsed, pc.and_(present, pc.is_null(parsed))


def _typed_fast_path(values: pa.Array, col: ColumnSpec) -> pa.Array | None:
    """Values already of a compatible Arrow type, converted without text; else None."""
    t = values.type
    if col.type == "int" and pa.types.is_integer(t):
        return values.cast(pa.int64())
    if col.type == "float" and (pa.types.is_integer(t) or pa.types.is_floating(t)):
        # Integers beyond 2**53 round to the nearest double, as float() does; Arrow's safe
        # cast would refuse the whole batch instead.
        return values.cast(pa.float64(), safe=False)
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
            trimmed = col.type not in ("str", "category") or "strip" in col.normalize
            text = _null_where(text, is_null_token(text, null_tokens, trimmed=trimmed))
            if col.type in ("str", "category") and "strip" not in col.normalize:
                blank = pc.equal(pc.utf8_trim_whitespace(text), "")
                text = _null_where(text, blank)
            values, type_fail = _parse_text(text, col)

    failures: dict[str, np.ndarray] = {}
    type_mask = _mask(type_fail) if isinstance(type_fail, pa.Array) else None
    if type_mask is not None and type_mask.any():
        failures[TYPE] = type_mask
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
        matches = regex_search(values, col.pattern)
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
        text = _null_where(text, is_null_token(text, tokens, trimmed=True))
        present = _mask(pc.is_valid(text))
        if present.any():
            failures[(name, UNKNOWN_COLUMN)] = present
    bad = np.zeros(n, dtype=bool)
    for mask in failures.values():
        bad |= mask
    typed = pa.Table.from_arrays(columns, schema=arrow_schema(contract))
    return CheckedBatch(typed=typed, failures=failures, bad=bad, extras=extras)


# --- one request's rows -----------------------------------------------------------------

_DEFER = object()  # the fast path's "ask the kernel" answer
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class RowChecker:
    """Reads a request's values exactly as :func:`parse_column` reads a batch.

    pyarrow costs ~5-20 µs per compute call, so a one-row request through the batch
    kernels takes ~0.5 ms for a few columns and several ms for thirty. The plain cases
    (typed numbers and flags, printable ASCII categories without a pattern) are answered
    here with the same tokens, normalisers and limits; every other value (text numbers,
    dates, patterns, Unicode, nested values, huge integers) goes through the kernels as a
    one-value batch. The conformance tests hold both paths to identical verdicts.
    """

    def __init__(self, contract: Contract, columns: Sequence[str]) -> None:
        self.columns = [contract.column(name) for name in columns]
        self._tokens = contract.null_tokens
        self._token_set = frozenset(self._tokens)
        self._values = {c.name: frozenset(c.values) for c in self.columns if c.values is not None}

    def check(self, col: ColumnSpec, value: Any) -> tuple[Any, tuple[str, ...]]:
        """The parsed value and the reason codes it fails (empty when valid)."""
        parsed = self._fast(col, value)
        if parsed is _DEFER:
            return self.kernel(col, value)
        if isinstance(parsed, tuple):  # an answer that is already a verdict
            return parsed
        return parsed, self._limits(col, parsed)

    def kernel(self, col: ColumnSpec, value: Any) -> tuple[Any, tuple[str, ...]]:
        """The batch kernel's reading of one value."""
        parsed = parse_column(json_column([value]), col, self._tokens, 1)
        codes = tuple(code for code, mask in parsed.failures.items() if mask[0])
        return parsed.values[0].as_py(), codes

    def _fast(self, col: ColumnSpec, value: Any) -> Any:
        if value is None:
            return None
        kind_of = type(value)
        if col.type == "int":
            if kind_of is int and _INT64_MIN <= value <= _INT64_MAX:
                return value
            return _DEFER
        if col.type == "float":
            if kind_of is float:
                if math.isnan(value):
                    return None  # a NaN number is a missing value
                if math.isinf(value):
                    return None, (TYPE,)
                return value
            if kind_of is int and _INT64_MIN <= value <= _INT64_MAX:
                return float(value)
            return _DEFER
        if col.type == "bool":
            return value if kind_of is bool else _DEFER
        if col.type in ("str", "category"):
            if kind_of is not str or col.pattern is not None:
                return _DEFER
            if not (value.isascii() and value.isprintable()):
                return _DEFER  # Unicode whitespace and case rules: the kernels decide
            text = value
            for op in col.normalize:
                text = _NORMALIZERS[op][1](text)
            if text.strip().lower() in self._token_set:
                return None
            if "strip" not in col.normalize and not text.strip():
                return None
            return text
        return _DEFER

    def _limits(self, col: ColumnSpec, parsed: Any) -> tuple[str, ...]:
        if parsed is None:
            return () if col.nullable else (MISSING,)
        codes: list[str] = []
        if col.min is not None and parsed < col.min:
            codes.append(BELOW_MIN)
        if col.max is not None and parsed > col.max:
            codes.append(ABOVE_MAX)
        allowed = self._values.get(col.name)
        if allowed is None and col.values is not None:
            allowed = self._values[col.name] = frozenset(col.values)
        if allowed is not None and parsed not in allowed:
            codes.append(NOT_IN_VALUES)
        return tuple(codes)


# --- what a model is given ---------------------------------------------------------------


def signature_type(col: ColumnSpec, read_as: Any) -> str:
    """The MLflow signature type of a feature column, given the dtype pandas read it as.

    A pandas reader turns an int column holding nulls into float64: its signature type is
    then ``double`` (MLflow refuses float input for ``long`` and int64 input for
    ``double``). Flags are ``boolean``, categories and text ``string``.
    """
    if col.type == "int":
        return "long" if getattr(read_as, "kind", "O") in ("i", "u") else "double"
    return {"float": "double", "bool": "boolean", "datetime": "datetime"}.get(col.type, "string")


def model_frame(
    columns: Mapping[str, Any],
    contract: Contract,
    features: Sequence[str],
    *,
    rows: int | None = None,
    index: Any = None,
) -> pd.DataFrame:
    """The model's input frame: numeric kinds as float64 (NaN when missing), categorical
    ones as text (None when missing).

    One dtype per kind, whatever nulls a batch happens to hold, so training, the gateway
    and the pool hand a model the same frame. ``columns`` maps feature names to pandas
    Series (training) or lists of parsed values (a request); a missing feature reads as
    all-missing.
    """
    import pandas as pd

    if rows is None:
        rows = next((len(v) for v in columns.values()), 0)
    out: dict[str, Any] = {}
    for name in features:
        values = columns.get(name)
        numeric = kind(contract.column(name)) == "numeric"
        if values is None:
            out[name] = np.full(rows, np.nan) if numeric else pd.Series([None] * rows, dtype=object)
        elif isinstance(values, pd.Series):
            if numeric:
                out[name] = pd.to_numeric(values, errors="coerce").to_numpy(
                    dtype=np.float64, na_value=np.nan
                )
            else:
                out[name] = pd.Series(
                    values.astype(object).where(values.notna(), None).to_numpy(), dtype=object
                )
        elif numeric:
            out[name] = np.array(
                [np.nan if v is None else float(v) for v in values], dtype=np.float64
            )
        else:
            # An object Series: a bare object array would be inferred as pandas' str dtype,
            # which turns None into NaN.
            out[name] = pd.Series(list(values), dtype=object)
    return pd.DataFrame(out, index=index)
