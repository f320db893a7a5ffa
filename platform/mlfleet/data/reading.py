"""Readers for resolved sources: Ray Data's (a file datasource, SQLite via ``read_sql``) and
the same read tasks run in this process (:func:`local_batches`, for small inputs).

Every block carries ``_row`` (1-based row within its source) and ``_src`` (the source's
index), so rows can be traced back and ordered across sources however Ray schedules them.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from mlfleet.contract.semantics import ROW_COLUMN
from mlfleet.data import sources as src_mod
from mlfleet.data.sources import Source
from mlfleet.errors import SourceError

if TYPE_CHECKING:
    import ray.data

SRC_COLUMN = "_src"
# A one-row batch carrying this column says its source could not be read (any further):
# the message is the source's error, the row column the first row not read.
ERROR_COLUMN = "_error"
ERROR_MESSAGE_CHARS = 300
# What a corrupt, truncated or mislabelled file raises while being read.
READ_ERRORS = (pa.ArrowException, OSError, ValueError, EOFError, SourceError)
# A single large Parquet file is split by row groups so both cores validate it.
PARQUET_ROWS_PER_TASK = 1_000_000


def _tag(tables: Iterator[pa.Table], index: int) -> Iterator[pa.Table]:
    for table in tables:
        yield table.append_column(SRC_COLUMN, pa.array([index] * table.num_rows, pa.int32()))


def _file_tasks(source: Source) -> list[tuple[Source, list[int] | None, int, int | None]]:
    """(source, row groups, first row, rows) per read task for one file."""
    if source.kind != "parquet":
        return [(source, None, 1, None)]
    try:
        meta = pq.ParquetFile(str(source.path)).metadata
    except READ_ERRORS:
        return [(source, None, 1, None)]  # the read task reports why, for this source alone
    tasks: list[tuple[Source, list[int] | None, int, int | None]] = []
    groups: list[int] = []
    first, rows = 1, 0
    for g in range(meta.num_row_groups):
        groups.append(g)
        rows += meta.row_group(g).num_rows
        if rows >= PARQUET_ROWS_PER_TASK:
            tasks.append((source, groups, first, rows))
            first, groups, rows = first + rows, [], 0
    if groups or not tasks:
        tasks.append((source, groups, first, rows))
    return tasks


def _read(source: Source, groups: list[int] | None, first_row: int) -> Iterator[pa.Table]:
    """Raw batches of one read task; a read error ends them with an error batch."""
    next_row = first_row
    try:
        if source.path.stat().st_size == 0:
            raise SourceError(f"{source.path}: empty file")
        if source.kind == "csv":
            tables = src_mod.read_csv(source.path)
        elif source.kind == "jsonl":
            tables = src_mod.read_jsonl(source.path)
        else:
            tables = src_mod.read_parquet(source.path, groups, first_row)
        for table in tables:
            next_row = int(table.column(ROW_COLUMN)[-1].as_py()) + 1
            yield table
    except READ_ERRORS as exc:
        # One bad file must not sink the others: the rows read so far stay, and the
        # source is reported as unreadable from ``next_row`` on.
        yield error_batch(source, exc, next_row)


def error_message(source: Source, exc: BaseException) -> str:
    """One printable line naming the source and what is wrong with it."""
    kind = {"csv": "CSV", "jsonl": "JSON lines", "parquet": "Parquet", "sqlite": "SQLite"}
    text = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = "".join(ch if ch.isprintable() else "?" for ch in text)[:ERROR_MESSAGE_CHARS]
    if isinstance(exc, SourceError):
        return text.removeprefix(f"{source.path}: ")
    return f"cannot read as {kind[source.kind]}: {text}"


def error_batch(source: Source, exc: BaseException, next_row: int) -> pa.Table:
    """The one-row batch that reports a source's read error (see ``ERROR_COLUMN``)."""
    return pa.table(
        {
            ERROR_COLUMN: pa.array([error_message(source, exc)], pa.string()),
            ROW_COLUMN: pa.array([next_row], pa.int64()),
        }
    )


def file_dataset(files: list[Source]) -> ray.data.Dataset:
    """A Ray Dataset of raw batches from CSV, Parquet and JSON-lines sources."""
    import ray.data
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class RawFiles(Datasource):
        def estimate_inmemory_data_size(self) -> int | None:
            return sum(s.path.stat().st_size for s in files)

        def get_name(self) -> str:
            return "MlfleetSources"

        def get_read_tasks(
            self,
            parallelism: int,
            per_task_row_limit: int | None = None,
            data_context: object = None,
        ) -> list[ReadTask]:
            out = []
            for source in files:
                size = source.path.stat().st_size
                specs = _file_tasks(source)
                for src, groups, first, rows in specs:

                    def read_fn(
                        src: Source = src, groups: list[int] | None = groups, first: int = first
                    ) -> Iterable[pa.Table]:
                        return _tag(_read(src, groups, first), src.index)

                    meta = BlockMetadata(
                        num_rows=rows,
                        size_bytes=math.ceil(size / len(specs)),
                        input_files=(str(src.path),),
                        exec_stats=None,
                    )
                    out.append(ReadTask(read_fn, meta))
            return out

    # One block per read task: by default Ray Data splits every read into at least 200
    # blocks, which cut 5M rows into 400 batches of 12.5k and doubled the run time.
    tasks = sum(len(_file_tasks(s)) for s in files)
    return ray.data.read_datasource(RawFiles(), override_num_blocks=tasks)


def sqlite_dataset(source: Source) -> ray.data.Dataset:
    """A Ray Dataset of one SQLite table, read with Ray Data's SQL reader."""
    import ray.data

    path = str(source.path)
    query = src_mod.sqlite_text_query(source)

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    ds = ray.data.read_sql(query, connect)
    index = source.index
    return ds.map_batches(
        lambda t: t.append_column(SRC_COLUMN, pa.array([index] * t.num_rows, pa.int32())),
        batch_format="pyarrow",
        batch_size=None,
        zero_copy_batch=True,
    )


def local_batches(sources: list[Source]) -> Iterator[pa.Table]:
    """The raw batches of :func:`raw_datasets`, read here, one source after the other: the
    same read tasks and tags, so a batch means the same to the checks either way."""
    for source in sources:
        if source.kind == "sqlite":
            tables: Iterator[pa.Table] = iter([src_mod.read_sqlite(source, with_rows=True)])
            batches = _tag(tables, source.index)
        else:
            batches = (
                table
                for src, groups, first, _ in _file_tasks(source)
                for table in _tag(_read(src, groups, first), src.index)
            )
        # Ray Data hands no empty block to a transform.
        yield from (b for b in batches if b.num_rows)


def raw_datasets(sources: list[Source]) -> list[ray.data.Dataset]:
    """One dataset for all files plus one per SQLite table."""
    files = [s for s in sources if s.kind != "sqlite"]
    out = [file_dataset(files)] if files else []
    out += [sqlite_dataset(s) for s in sources if s.kind == "sqlite"]
    return out
