"""Infer a first-draft contract from sample data; a person edits it afterwards."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

from mlfleet.contract import semantics
from mlfleet.contract.schema import ColumnSpec, Contract, parse_contract
from mlfleet.data.sources import Source, read_sample
from mlfleet.errors import SourceError

SAMPLE_ROWS = 200_000
MAX_CATEGORIES = 25
CANDIDATE_FORMATS = (
    "%Y-%m-%d",
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y/%m/%d",
    "%d.%m.%Y",
)
_ID_NAME = re.compile(r"(^id$|_id$|^id_|uuid|^key$)", re.IGNORECASE)


def _text(values: pa.Array) -> pa.Array:
    text = pc.utf8_trim_whitespace(semantics.as_text(values))
    nulls = semantics.is_null_token(text, semantics.null_tokens(None), trimmed=True)
    return pc.if_else(nulls, pa.scalar(None, pa.string()), text).drop_null()


def _infer_column(name: str, values: pa.ChunkedArray) -> dict[str, object]:
    arr = values.combine_chunks()
    nullable = False
    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        col_type = "int" if pa.types.is_integer(t) else "float"
        present = arr.drop_null()
        if col_type == "float":
            present = present.filter(pc.invert(pc.is_nan(present)))
        nullable = len(present) < len(arr)
        spec: dict[str, object] = {"name": name, "type": col_type}
        if len(present):
            mm = pc.min_max(present)
            spec["min"], spec["max"] = mm["min"].as_py(), mm["max"].as_py()
        spec["nullable"] = nullable
        return spec
    if pa.types.is_boolean(t):
        return {"name": name, "type": "bool", "nullable": arr.null_count > 0}
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return {"name": name, "type": "datetime", "nullable": arr.null_count > 0}

    text = _text(arr)
    nullable = len(text) < len(arr)
    spec = {"name": name, "nullable": nullable}
    if len(text) == 0:
        return {**spec, "type": "str", "nullable": True}
    if pc.all(pc.match_substring_regex(text, semantics.INT_PATTERN)).as_py():
        ints = pc.cast(pc.replace_substring_regex(text, r"\.0*$", ""), pa.int64())
        mm = pc.min_max(ints)
        return {
            "name": name,
            "type": "int",
            "min": mm["min"].as_py(),
            "max": mm["max"].as_py(),
            "nullable": nullable,
        }
    if pc.all(pc.match_substring_regex(text, semantics.FLOAT_PATTERN)).as_py():
        mm = pc.min_max(pc.cast(text, pa.float64()))
        return {
            "name": name,
            "type": "float",
            "min": mm["min"].as_py(),
            "max": mm["max"].as_py(),
            "nullable": nullable,
        }
    lowered = pc.utf8_lower(text)
    if pc.all(pc.is_in(lowered, value_set=pa.array(["true", "false", "yes", "no"]))).as_py():
        return {**spec, "type": "bool"}
    formats = [
        f
        for f in CANDIDATE_FORMATS
        if pc.any(pc.is_valid(pc.strptime(text, format=f, unit="us", error_is_null=True))).as_py()
    ]
    if formats:
        parsed = None
        for f in formats:
            attempt = pc.strptime(text, format=f, unit="us", error_is_null=True)
            parsed = attempt if parsed is None else pc.coalesce(parsed, attempt)
        if parsed is not None and parsed.null_count == 0:
            return {**spec, "type": "datetime", "formats": formats}
    distinct_raw = pc.unique(text)
    folded = pc.unique(lowered)
    if len(folded) <= MAX_CATEGORIES and len(folded) <= max(2, len(text) // 2):
        normalize = ["strip"]
        values = sorted(str(v) for v in distinct_raw.to_pylist())
        if len(folded) < len(distinct_raw) or any(v != v.lower() for v in values):
            # Case varies between sources: compare lower-cased values.
            normalize.append("lower")
            values = sorted(str(v) for v in folded.to_pylist())
        return {**spec, "type": "category", "values": values, "normalize": normalize}
    return {**spec, "type": "str"}


def infer_contract(
    name: str, sources: list[Source], *, target: str | None = None, sample_rows: int = SAMPLE_ROWS
) -> Contract:
    """Infer a contract from the first ``sample_rows`` rows of each source.

    Columns are typed from the data; integer and float ranges are the observed ones; text
    with few distinct values becomes a category (lower-cased when case varies); a unique,
    non-null integer or text column named like an id becomes the key.
    """
    tables = [read_sample(s, sample_rows) for s in sources]
    tables = [t for t in tables if t.num_columns]
    if not tables:
        raise SourceError("the sources hold no rows to infer a contract from")
    text_tables = [
        t
        if len({tuple(x.schema.names) for x in tables}) == 1
        and len({x.schema for x in tables}) == 1
        else pa.table({n: semantics.as_text(t.column(n).combine_chunks()) for n in t.column_names})
        for t in tables
    ]
    combined = pa.concat_tables(text_tables, promote_options="permissive")
    columns = [_infer_column(n, combined.column(n)) for n in combined.column_names]
    keys = None
    for spec in columns:
        col = combined.column(spec["name"])
        if (
            _ID_NAME.search(str(spec["name"]))
            and spec["type"] in ("int", "str")
            and not spec["nullable"]
            and pc.count_distinct(col).as_py() == len(col)
        ):
            keys = [str(spec["name"])]
            spec.pop("min", None)
            spec.pop("max", None)
            break
    if target is not None and target not in combined.column_names:
        raise SourceError(f"--target {target!r} is not a column of the sources")
    data = {
        "name": name,
        "target": target,
        "keys": keys,
        "columns": [{k: v for k, v in c.items() if v is not None} for c in columns],
    }
    return parse_contract(
        {k: v for k, v in data.items() if v is not None}, origin="inferred contract"
    )


__all__ = ["ColumnSpec", "infer_contract"]
