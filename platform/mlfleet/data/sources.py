"""Where data comes from: files (CSV, Parquet, JSON lines, globbed) and SQLite tables.

This module resolves SOURCE arguments, hashes their bytes and reads raw batches with a
1-based row number per source; it knows nothing about contracts.
"""

from __future__ import annotations

import glob
import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from mlfleet.contract import semantics
from mlfleet.contract.semantics import ROW_COLUMN
from mlfleet.errors import SourceError

T = TypeVar("T")
SourceKind = Literal["csv", "parquet", "jsonl", "sqlite"]

_SUFFIXES: dict[str, SourceKind] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_COMPRESSION = (".gz", ".bz2", ".zst", ".lz4")

# Rows per raw batch: large batches amortise per-batch work (one Parquet file written
# per batch, fixed costs of each compute call) while staying far below Ray's block cap.
BATCH_ROWS = 262_144
CSV_BLOCK_BYTES = 32 << 20


@dataclass(frozen=True)
class Source:
    """One resolved input: a file or a SQLite table."""

    index: int
    uri: str
    kind: SourceKind
    path: Path
    table: str | None = None

    @property
    def label(self) -> str:
        """How quarantined rows name their source."""
        return self.uri


def _kind_of(path: Path) -> SourceKind:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes = suffixes[:-1]
    kind = _SUFFIXES.get(suffixes[-1]) if suffixes else None
    if kind is None:
        raise SourceError(
            f"{path}: unsupported file type (use .csv, .parquet, .jsonl or sqlite:///file.db?table=T)"
        )
    return kind


def _sqlite_source(text: str, index: int) -> Source:
    parts = urlsplit(text)
    # sqlite:///relative.db and sqlite:////absolute.db, as SQLAlchemy spells them.
    raw_path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not raw_path:
        raise SourceError(f"{text}: no database file in the URL")
    tables = parse_qs(parts.query).get("table", [])
    if len(tables) != 1 or not tables[0]:
        raise SourceError(f"{text}: name exactly one table, e.g. sqlite:///file.db?table=orders")
    path = Path(raw_path).expanduser().resolve()
    if not path.is_file():
        raise SourceError(f"{text}: database file not found: {path}")
    table = tables[0]
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type IN ('table','view') AND name = ?", (table,)
        ).fetchone()
    if not found:
        raise SourceError(f"{text}: table {table!r} not found in {path.name}")
    return Source(
        index=index, uri=f"sqlite:///{path}?table={table}", kind="sqlite", path=path, table=table
    )


def resolve_sources(specs: list[str]) -> list[Source]:
    """Expand SOURCE arguments (paths, globs, SQLite URLs) in the order given.

    Raises:
        SourceError: when a path does not exist, a glob matches nothing or a type is unknown.
    """
    if not specs:
        raise SourceError("give at least one SOURCE (file, glob or sqlite:///file.db?table=T)")
    out: list[Source] = []
    seen: set[str] = set()
    for spec in specs:
        candidates: list[Source]
        if spec.startswith("sqlite:"):
            candidates = [_sqlite_source(spec, 0)]
        else:
            if any(ch in spec for ch in "*?["):
                matches = sorted(glob.glob(spec, recursive=True))
                paths = [Path(m) for m in matches if Path(m).is_file()]
                if not paths:
                    raise SourceError(f"{spec}: the pattern matches no file")
            else:
                paths = [Path(spec)]
                if not paths[0].is_file():
                    raise SourceError(f"{spec}: file not found")
            candidates = []
            for p in paths:
                resolved = p.expanduser().resolve()
                candidates.append(
                    Source(index=0, uri=str(resolved), kind=_kind_of(resolved), path=resolved)
                )
        for src in candidates:
            if src.uri in seen:
                continue  # The same file named twice is read once.
            seen.add(src.uri)
            out.append(Source(len(out), src.uri, src.kind, src.path, src.table))
    return out


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256_source(source: Source) -> str:
    if source.kind != "sqlite":
        return _sha256_file(source.path)
    # In WAL mode committed rows can sit in `-wal` until a checkpoint copies them into the
    # database file, which then has the old bytes: hash both, or new rows keep the old
    # version id. `-shm` is left out: it is an index that readers rewrite, not data.
    wal = source.path.with_name(source.path.name + "-wal")
    digest = _sha256_file(source.path)
    try:
        wal_digest = _sha256_file(wal) if wal.stat().st_size else None
    except FileNotFoundError:  # no WAL, or the last connection just closed and removed it
        wal_digest = None
    if wal_digest:
        digest = hashlib.sha256(f"{digest}:{wal_digest}".encode()).hexdigest()
    return digest


def hash_sources(sources: list[Source]) -> list[str]:
    """sha256 of each source's bytes (a SQLite table: its database file plus its write-ahead
    log), hashed in parallel."""
    with ThreadPoolExecutor(max_workers=min(8, len(sources))) as pool:
        return list(pool.map(_sha256_source, sources))


# --- raw readers: each yields pyarrow tables with a 1-based `_row` column ------------------


def _with_rows(table: pa.Table, first_row: int) -> pa.Table:
    rows = pa.array(range(first_row, first_row + table.num_rows), pa.int64())
    return table.append_column(ROW_COLUMN, rows)


def _in_batches(
    items: Iterator[T], first_row: int, build: Callable[[list[T], int], pa.Table]
) -> Iterator[pa.Table]:
    """Group parsed records into BATCH_ROWS tables; ``build`` gets each group's first row."""
    group: list[T] = []
    try:
        for item in items:
            group.append(item)
            if len(group) >= BATCH_ROWS:
                yield build(group, first_row)
                first_row += len(group)
                group = []
    except (SourceError, ValueError, OSError):
        # The records parsed before a fault are rows read: hand them on, then the fault.
        if group:
            yield build(group, first_row)
        raise
    if group:
        yield build(group, first_row)


def _rebatch(batches: Iterator[pa.RecordBatch | pa.Table], first_row: int) -> Iterator[pa.Table]:
    pending: list[pa.Table] = []
    size = 0
    row = first_row
    for batch in batches:
        table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
        if table.num_rows == 0:
            continue
        pending.append(table)
        size += table.num_rows
        if size >= BATCH_ROWS:
            merged = pa.concat_tables(pending, promote_options="permissive")
            yield _with_rows(merged, row)
            row += merged.num_rows
            pending, size = [], 0
    if pending:
        yield _with_rows(pa.concat_tables(pending, promote_options="permissive"), row)


def read_csv(path: Path) -> Iterator[pa.Table]:
    """Stream a CSV file as text columns (types are the contract's business).

    Arrow's fast reader handles well-formed files. A row with more or fewer fields than the
    header makes it stop; the rest of the file is then read by Python's csv module, which
    keeps such rows (extra fields become unknown columns, missing ones nulls) so the
    contract can quarantine them with their row numbers instead of losing them.
    """
    delimiter = "\t" if ".tsv" in [s.lower() for s in path.suffixes] else ","
    _check_text(path)
    parse = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True)
    # A small first block is enough to learn the header names (ragged rows are the
    # second reader's business).
    header_parse = pacsv.ParseOptions(
        delimiter=delimiter, newlines_in_values=True, invalid_row_handler=lambda _row: "skip"
    )
    with pa.input_stream(str(path), compression="detect") as stream:
        names = pacsv.open_csv(
            stream, read_options=pacsv.ReadOptions(block_size=1 << 20), parse_options=header_parse
        ).schema.names
    as_text = pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()))
    done = 0
    held: pa.Table | None = None  # the last batch is checked before it is handed on
    try:
        # Every column as text: the contract decides what a value means.
        with pa.input_stream(str(path), compression="detect") as stream:
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                parse_options=parse,
                convert_options=as_text,
            )
            for table in _rebatch(iter(reader), 1):
                if held is not None:
                    yield held
                    done += held.num_rows
                held = table
    except pa.ArrowInvalid:
        if held is not None:
            yield held
            done += held.num_rows
        yield from _csv_python(path, delimiter, names, skip=done)
        return
    if held is not None:
        yield from _unless_unterminated(held, path)


TEXT_PROBE_BYTES = 64 << 10


def _check_text(path: Path) -> None:
    """Refuse an empty file and one whose first bytes are not UTF-8 text (a binary file
    named ``.csv``) with one clear line, before a parser reads garbage into rows."""
    with pa.input_stream(str(path), compression="detect") as stream:
        head = stream.read(TEXT_PROBE_BYTES)
    if not head.strip():
        raise SourceError(f"{path}: empty file (not even a header row)")
    try:
        # A multi-byte character cut by the probe's end is fine: drop up to 3 bytes.
        head.decode("utf-8") if len(head) < TEXT_PROBE_BYTES else _decode_prefix(head)
    except UnicodeDecodeError:
        raise SourceError(f"{path}: not a text file (its bytes are not UTF-8)") from None
    if b"\0" in head:
        raise SourceError(f"{path}: not a text file (it holds NUL bytes)")


def _decode_prefix(head: bytes) -> str:
    for cut in range(4):
        try:
            return head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            if cut == 3:
                raise
    raise AssertionError("unreachable")


def _unless_unterminated(last: pa.Table, path: Path) -> Iterator[pa.Table]:
    """The file's last batch, short of a last row that opened a quote and never closed it.

    Arrow's reader takes such a quote as running to the end of the file, so every later
    line would become one value of that row (and, in a free-text column, a valid one):
    rows lost without a word. Only the last row can be one; only when one of its values
    holds a line break is the file's quote count (odd when a quote is left open) taken.
    """
    row = last.slice(last.num_rows - 1)
    multiline = any(
        isinstance(v, str) and "\n" in v
        for name in row.column_names
        if name != ROW_COLUMN
        for v in row.column(name).to_pylist()
    )
    if not multiline or _quote_count(path) % 2 == 0:
        yield last
        return
    yield last.slice(0, last.num_rows - 1)
    number = row.column(ROW_COLUMN)[0].as_py()
    raise SourceError(
        f"{path}: row {number} opens a quote that is never closed (the rest of the file "
        "would be one value); fix the quoting and validate again"
    )


def _quote_count(path: Path) -> int:
    count = 0
    with pa.input_stream(str(path), compression="detect") as stream:
        while chunk := stream.read(CSV_BLOCK_BYTES):
            count += chunk.count(b'"')
    return count


def _csv_python(path: Path, delimiter: str, names: list[str], skip: int) -> Iterator[pa.Table]:
    import csv
    import io

    width = len(names)

    def flush(records: list[list[str]], first: int) -> pa.Table:
        most = max(len(r) for r in records)
        columns = list(names) + [f"field_{i + 1}" for i in range(width, most)]
        data = {
            name: pa.array([r[i] if i < len(r) else None for r in records], pa.string())
            for i, name in enumerate(columns)
        }
        return _with_rows(pa.table(data), first)

    with pa.input_stream(str(path), compression="detect") as stream:
        text = io.TextIOWrapper(io.BytesIO(stream.read()), encoding="utf-8", newline="")
    # strict: a quote left open at the end of the file is an error, not one huge value.
    rows = csv.reader(text, delimiter=delimiter, strict=True)

    def data_records() -> Iterator[list[str]]:
        seen = 0
        try:
            next(rows, None)  # header
            for record in rows:
                if not record:
                    continue  # Arrow skips blank lines too; row numbers must agree.
                seen += 1
                if seen > skip:
                    yield record
        except csv.Error as exc:
            raise SourceError(f"{path}: CSV row {seen + 1}: {exc}") from None
        except UnicodeDecodeError:
            raise SourceError(f"{path}: CSV row {seen + 1} is not UTF-8 text") from None

    yield from _in_batches(data_records(), skip + 1, flush)


def read_parquet(
    path: Path, row_groups: list[int] | None = None, first_row: int = 1
) -> Iterator[pa.Table]:
    """Stream some (default all) row groups of a Parquet file, keeping their types."""
    pf = pq.ParquetFile(str(path))
    groups = row_groups if row_groups is not None else list(range(pf.num_row_groups))
    if not groups:
        return
    yield from _rebatch(
        pf.iter_batches(batch_size=BATCH_ROWS, row_groups=groups, use_threads=False), first_row
    )


def _jsonl_python(path: Path) -> Iterator[pa.Table]:
    # Slow path for files whose values change type between records (the fast Arrow reader
    # refuses them): each column is read as the gateway reads a request's rows.
    def flush(records: list[dict[str, object]], first: int) -> pa.Table:
        names: dict[str, None] = {}
        for rec in records:
            names.update(dict.fromkeys(rec))
        table = pa.table({n: semantics.json_column([r.get(n) for r in records]) for n in names})
        return _with_rows(table, first)

    def objects() -> Iterator[dict[str, object]]:
        with pa.input_stream(str(path), compression="detect") as stream:
            text = stream.read().decode("utf-8")
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SourceError(f"{path}: line {lineno} is not valid JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise SourceError(f"{path}: line {lineno} is not a JSON object")
            yield rec

    yield from _in_batches(objects(), 1, flush)


def read_jsonl(path: Path) -> Iterator[pa.Table]:
    """Stream a JSON-lines file; Arrow's reader first, a tolerant reader if types vary."""
    try:
        with pa.input_stream(str(path), compression="detect") as stream:
            table = pajson.read_json(stream, read_options=pajson.ReadOptions(block_size=16 << 20))
    except pa.ArrowInvalid:
        yield from _jsonl_python(path)
        return
    if not _read_faithfully(table):
        yield from _jsonl_python(path)
        return
    yield from _rebatch(iter(table.to_batches()), 1)


# Doubles at or beyond 2**53 may be integer literals Arrow's reader widened to double when
# one of them overflowed int64 (losing the last digits of every id in the column).
_EXACT_INTEGERS = 2.0**53


def _read_faithfully(table: pa.Table) -> bool:
    """Whether Arrow's JSON reader kept every value as written.

    It reads date-like strings as timestamps (``"2024-01-31"`` would come back as
    ``"2024-01-31 00:00:00"`` in a text column) and integers beyond int64 as doubles;
    such files take the exact reader, which reads them as the gateway reads a request.
    """
    for column in table.columns:
        if pa.types.is_timestamp(column.type):
            return False
        if pa.types.is_floating(column.type):
            largest = pc.max(pc.abs(column)).as_py()
            if largest is not None and largest >= _EXACT_INTEGERS:
                return False
    return True


def sqlite_text_query(source: Source) -> str:
    """SQL that reads a table as text columns with a 1-based row number.

    Text keeps a column that mixes integers and strings (SQLite allows it) from breaking
    Arrow conversion; the contract parses the values afterwards.
    """
    assert source.table is not None
    with sqlite3.connect(f"file:{source.path}?mode=ro", uri=True) as conn:
        cols = [row[1] for row in conn.execute(f'PRAGMA table_info("{_quote(source.table)}")')]
    select = ", ".join(f'CAST("{_quote(c)}" AS TEXT) AS "{_quote(c)}"' for c in cols)
    return (
        f'SELECT {select}, ROW_NUMBER() OVER (ORDER BY rowid) AS "{ROW_COLUMN}" '
        f'FROM "{_quote(source.table)}" ORDER BY rowid'
    )


def _quote(identifier: str) -> str:
    return identifier.replace('"', '""')


def count_rows(source: Source) -> int | None:
    """Rows in a source when known without reading it (Parquet metadata, SQL count)."""
    if source.kind == "parquet":
        try:
            return int(pq.ParquetFile(str(source.path)).metadata.num_rows)
        except (pa.ArrowException, OSError):
            return None  # unreadable: the validation reports it for this source alone
    return None


def read_sqlite(source: Source, limit: int | None = None, *, with_rows: bool = False) -> pa.Table:
    """Read a SQLite table as text columns in one process (samples, tests, and validation
    of small inputs, which also needs ``with_rows``: the 1-based row column)."""
    query = sqlite_text_query(source) + (f" LIMIT {int(limit)}" if limit else "")
    with sqlite3.connect(f"file:{source.path}?mode=ro", uri=True) as conn:
        cursor = conn.execute(query)
        names = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    columns = {
        n: pa.array([r[i] for r in rows], pa.string())
        for i, n in enumerate(names)
        if n != ROW_COLUMN
    }
    if with_rows:
        columns[ROW_COLUMN] = pa.array([r[names.index(ROW_COLUMN)] for r in rows], pa.int64())
    return pa.table(columns)


def read_sample(source: Source, limit: int) -> pa.Table:
    """The first ``limit`` raw rows of a source, without Ray (used by contract inference)."""
    if source.kind == "sqlite":
        return read_sqlite(source, limit)
    reader = {"csv": read_csv, "parquet": read_parquet, "jsonl": read_jsonl}[source.kind]
    parts: list[pa.Table] = []
    rows = 0
    for table in reader(source.path):
        parts.append(table.drop_columns([ROW_COLUMN]))
        rows += table.num_rows
        if rows >= limit:
            break
    if not parts:
        return pa.table({})
    return pa.concat_tables(parts, promote_options="permissive").slice(0, limit)
