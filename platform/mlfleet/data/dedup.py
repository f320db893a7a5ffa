"""Duplicate detection across sources as pure numpy: hash keys per batch, keep the first.

Each valid row gets a 64-bit key hash and an *order* (source index, then row number);
the first occurrence in that order is kept, every later one is a duplicate. A single
integer key is used as its own hash, so the common "id column" case is exact; other keys
are hashed with pandas' vectorised row hash (collision odds ~n²/2⁶⁵, about 1e-6 at 5M rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

ORDER_SHIFT = 40  # rows per source up to 2^40; sources up to 2^23


def row_orders(source_index: int, row_numbers: np.ndarray) -> np.ndarray:
    """Global order of rows: by source as given on the command line, then row number."""
    return (np.int64(source_index) << np.int64(ORDER_SHIFT)) + row_numbers.astype(np.int64)


def split_order(order: int) -> tuple[int, int]:
    """(source index, row number) of an order value."""
    return int(order) >> ORDER_SHIFT, int(order) & ((1 << ORDER_SHIFT) - 1)


def key_hashes(table: pa.Table, keys: Sequence[str] | None) -> np.ndarray:
    """A uint64 per row identifying its key (or whole row when ``keys`` is None)."""
    columns = list(keys) if keys else table.column_names
    if len(columns) == 1 and pa.types.is_integer(table.schema.field(columns[0]).type):
        col = table.column(columns[0])
        if col.null_count == 0:
            return col.to_numpy().astype(np.int64).view(np.uint64)
    frame = table.select(columns).to_pandas(types_mapper=pd.ArrowDtype)
    return pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)


def duplicate_positions(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of duplicates in ``hashes`` (which must be in global row order).

    Returns:
        (positions of every non-first occurrence, position of the first occurrence each
        of them repeats), both ascending by the duplicate's position.
    """
    if hashes.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    series = pd.Series(hashes)
    dup_mask = series.duplicated(keep="first").to_numpy()
    dups = np.nonzero(dup_mask)[0]
    if dups.size == 0:
        return dups.astype(np.int64), dups.astype(np.int64)
    firsts_index = pd.Series(np.arange(hashes.size)[~dup_mask], index=hashes[~dup_mask])
    firsts = firsts_index.loc[hashes[dups]].to_numpy()
    return dups.astype(np.int64), firsts.astype(np.int64)
