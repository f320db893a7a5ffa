"""Quarantine files: every rejected row with its raw values, provenance and reasons."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pyarrow as pa

from mlfleet.contract.schema import Contract
from mlfleet.contract.semantics import (
    DETAILS_COLUMN,
    EXTRA_COLUMN,
    REASONS_COLUMN,
    ROW_COLUMN,
    SOURCE_COLUMN,
    CheckedBatch,
    as_text,
    match_columns,
)


def quarantine_schema(contract: Contract) -> pa.Schema:
    """The Arrow schema of quarantine files: raw values as text plus provenance."""
    fields = [(c.name, pa.string()) for c in contract.columns]
    fields += [
        (EXTRA_COLUMN, pa.string()),
        (SOURCE_COLUMN, pa.string()),
        (ROW_COLUMN, pa.int64()),
        (REASONS_COLUMN, pa.list_(pa.string())),
        (DETAILS_COLUMN, pa.list_(pa.string())),
    ]
    return pa.schema(fields)


def reason_lists(
    failures: dict[tuple[str, str], np.ndarray], rows: np.ndarray
) -> tuple[pa.Array, pa.Array]:
    """Per selected row, the list of reason codes and of ``column:code`` details.

    Built with numpy over the (row, failure) matrix instead of a Python loop per row.
    """
    keys = list(failures)
    if not keys or rows.size == 0:
        empty = pa.array([[] for _ in range(rows.size)], pa.list_(pa.string()))
        return empty, empty
    matrix = np.stack([failures[k][rows] for k in keys], axis=1)  # rows x failures
    codes = np.array([code for _, code in keys], dtype=object)
    details = np.array([f"{column}:{code}" for column, code in keys], dtype=object)
    row_idx, key_idx = np.nonzero(matrix)
    offsets = np.zeros(rows.size + 1, dtype=np.int32)
    np.cumsum(np.bincount(row_idx, minlength=rows.size), out=offsets[1:])
    detail_list = pa.ListArray.from_arrays(offsets, pa.array(details[key_idx], pa.string()))
    # The same code can fail in several columns; _reasons lists each code once.
    unique_codes = []
    for start, stop in itertools.pairwise(offsets):
        unique_codes.append(list(dict.fromkeys(codes[key_idx[start:stop]])))
    return pa.array(unique_codes, pa.list_(pa.string())), detail_list


def quarantine_rows(
    batch: pa.Table,
    checked: CheckedBatch,
    contract: Contract,
    rows: np.ndarray,
    source_uri: str,
    row_numbers: pa.Array,
) -> pa.Table:
    """Rejected rows with their raw values (as text), provenance and reasons."""
    mapping, _ = match_columns(batch.column_names, contract)
    picked = batch.take(pa.array(rows, pa.int64())) if rows.size != batch.num_rows else batch
    arrays: list[pa.Array] = []
    for col in contract.columns:
        name = mapping.get(col.name)
        if name is None:
            arrays.append(pa.nulls(rows.size, pa.string()))
        else:
            arrays.append(as_text(picked.column(name).combine_chunks()))
    if checked.extras:
        extra_values = {n: picked.column(n).to_pylist() for n in checked.extras}
        extra = [
            json.dumps(
                {n: extra_values[n][i] for n in checked.extras if extra_values[n][i] is not None},
                default=str,
            )
            or None
            for i in range(rows.size)
        ]
        arrays.append(pa.array([None if e == "{}" else e for e in extra], pa.string()))
    else:
        arrays.append(pa.nulls(rows.size, pa.string()))
    reasons, details = reason_lists(checked.failures, rows)
    arrays += [
        pa.array(np.full(rows.size, source_uri, dtype=object), pa.string()),
        row_numbers.take(pa.array(rows, pa.int64())),
        reasons,
        details,
    ]
    return pa.Table.from_arrays(arrays, schema=quarantine_schema(contract))
