"""Turn raw sources into a dataset version: one pipeline around the pure semantics, run on
Ray Data or, for small inputs, in this process (no Ray at all; see :func:`choose_engine`).

One streaming pass sends every source through a ``map_batches`` transform that
normalises, parses and checks a batch (semantics.py), writes its valid rows (curated Parquet)
and its rejected rows (quarantine Parquet) and returns a small summary: counts, failure
examples, additive column statistics (fine-binned numbers, category counts) and the
valid rows' key hashes. The driver finds duplicates across all sources from the hashes
alone; Ray tasks then write a filtered copy of each file holding them and return the
statistics of the rows they moved, which are subtracted, so the profile stays exact without
reading the data again. No row ever travels to the driver. The local engine runs the very
same steps (read tasks, :func:`summarise_batch`, dedup, profile, publish) in the driver, on
a few threads (pyarrow and numpy release the GIL), so both write the same version.

Ray retries a task whose worker dies, so every task reads only inputs that no task
rewrites, and writes each output to a temporary name renamed into place: a retry after a
partial write finds the same input and writes the same output. A source that cannot be
read (a truncated or mislabelled file) is reported in the manifest beside the rows of the
others; it fails the version.

Every call also reports where its time went (:class:`Timings`): the driver's wall clock per
step, and the workers' CPU per part of a batch, summed in the same per-batch summaries.
"""

from __future__ import annotations

import os
import pickle
import shutil
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlfleet import __version__
from mlfleet.contract import semantics
from mlfleet.contract.schema import Contract
from mlfleet.data import dedup, profile, quarantine, report, versions
from mlfleet.data.reading import ERROR_COLUMN, SRC_COLUMN, local_batches, raw_datasets
from mlfleet.data.sources import Source, hash_sources, resolve_sources
from mlfleet.errors import SourceError, UsageError
from mlfleet.settings import Settings

DATA_DIR = "data"
QUARANTINE_DIR = "quarantine"
EXAMPLES_PER_RULE = 3
# Threads of the local engine: batches checked, and files stripped of duplicates, at once.
# Each holds one batch, so memory stays a few batches whatever the input's size.
LOCAL_THREADS = max(1, min(4, os.cpu_count() or 1))

Progress = Callable[[int], None]
Engine = Literal["local", "ray"]


class Clock:
    """Seconds per named part of the work, summed over calls; two clock reads a part.

    ``read`` is the clock: ``time.perf_counter`` for wall time, ``time.process_time`` for
    this process's CPU (validation's steps and training's both report through it).
    """

    def __init__(self, read: Callable[[], float]) -> None:
        self.read = read
        self.started = read()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        start = self.read()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + self.read() - start


@dataclass
class Timings:
    """Where one ``validate`` call spent its time: diagnostics, not part of the dataset version.

    Attributes:
        wall_s: Seconds on the driver's clock per step, in order: ``hash_sources``, ``ray``
            (connecting to it or starting it; Ray engine only), ``read_check`` (the
            streaming pass: read, check and write every batch), ``dedup``, ``profile``,
            ``report``, ``publish``; and ``total``. A reused version has only
            ``hash_sources`` and ``total``.
        cpu_s: CPU seconds of the Ray workers (every thread of each), summed over batches:
            ``check``, ``quarantine``, ``write`` (curated and quarantine Parquet),
            ``key_hashes``, ``sketches`` (profile statistics), ``batches`` (the whole
            transform, those parts included), ``between_batches`` (a worker's CPU between
            two of its batches: reading the next block and Ray Data's own work) and
            ``dedup`` (rewriting the files that held duplicates).
        batches: Batches validated.
        workers: Worker processes that validated them (the driver alone when local).
        engine: ``local`` (batches checked in this process) or ``ray`` (Ray Data); empty
            for a reused version.
    """

    wall_s: dict[str, float] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)
    batches: int = 0
    workers: int = 0
    engine: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, rounded to 0.1 ms."""
        return {
            "wall_s": {k: round(v, 4) for k, v in self.wall_s.items()},
            "cpu_s": {k: round(v, 4) for k, v in self.cpu_s.items()},
            "batches": self.batches,
            "workers": self.workers,
            "engine": self.engine,
        }


@dataclass
class BatchSummary:
    """What one validated batch reports back to the driver (small: no rows)."""

    src: int
    first_row: int
    rows_in: int
    rows_valid: int
    data_file: str | None
    reasons: Counter[str] = field(default_factory=Counter)
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    partials: dict[str, profile.ColumnPartial] = field(default_factory=dict)
    orders: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    hashes: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint64))
    cpu_s: dict[str, float] = field(default_factory=dict)
    worker: int = 0  # pid
    cpu_start: float = 0.0  # the worker's CPU clock when the batch came in and went out
    cpu_end: float = 0.0
    error: str | None = None  # the source could not be read from ``first_row`` on


@dataclass
class ValidationResult:
    """The outcome of ``validate``: the manifest, where the version lives, where time went."""

    manifest: versions.Manifest
    path: Path
    reused: bool = False
    timings: Timings = field(default_factory=Timings)


def _pack(obj: object) -> pa.Table:
    return pa.table({"summary": pa.array([pickle.dumps(obj, protocol=5)], pa.binary())})


def _unpack(table: pa.Table) -> list[Any]:
    return [pickle.loads(b) for b in table.column("summary").to_pylist()]


def _file_name(src: int, first_row: int) -> str:
    # Named by position in the input, so a retried task overwrites its own output.
    return f"part-{src:05d}-{first_row:012d}.parquet"


def _deduplicated_name(data_file: str) -> str:
    # Sorts right after the file it filters, so the curated rows keep their order.
    return data_file.removesuffix(".parquet") + "-dedup.parquet"


def write_parquet(table: pa.Table, path: Path | str) -> None:
    """Write a Parquet file under a temporary name and rename it into place.

    A task killed mid-write leaves a hidden temporary file (Parquet dataset readers skip
    names starting with a dot), never a truncated file under the real name.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def validate_batch(
    batch: pa.Table, *, contract: Contract, out_dir: str, labels: list[str]
) -> pa.Table:
    """Ray Data transform: :func:`summarise_batch`, its summary packed as a one-row table."""
    return _pack(summarise_batch(batch, contract=contract, out_dir=out_dir, labels=labels))


def summarise_batch(
    batch: pa.Table, *, contract: Contract, out_dir: str, labels: list[str]
) -> BatchSummary:
    """Validate one raw batch, write its outputs, return its summary (both engines' step)."""
    cpu = Clock(time.process_time)
    src = int(batch.column(SRC_COLUMN)[0].as_py())
    batch = batch.drop_columns([SRC_COLUMN])
    error = None
    if ERROR_COLUMN in batch.column_names:
        # Ray Data may have joined the source's last rows and its error row in one batch.
        marker = batch.column(ERROR_COLUMN).is_valid()
        error = str(batch.filter(marker).column(ERROR_COLUMN)[0].as_py())
        batch = batch.filter(pc.invert(marker)).drop_columns([ERROR_COLUMN])
        if batch.num_rows == 0:
            failed = BatchSummary(src=src, first_row=0, rows_in=0, rows_valid=0, data_file=None)
            failed.error = error
            failed.worker, failed.cpu_start, failed.cpu_end = os.getpid(), cpu.started, cpu.read()
            return failed
    row_numbers = batch.column(semantics.ROW_COLUMN).combine_chunks()
    first_row = int(row_numbers[0].as_py())
    with cpu.part("check"):
        checked = semantics.check_batch(batch, contract)
    name = _file_name(src, first_row)
    summary = BatchSummary(
        src=src, first_row=first_row, rows_in=batch.num_rows, rows_valid=0, data_file=None
    )
    summary.error = error

    bad_rows = np.nonzero(checked.bad)[0]
    if bad_rows.size:
        with cpu.part("quarantine"):
            quarantined = _quarantine(
                batch, checked, contract, bad_rows, row_numbers, labels[src], summary
            )
        with cpu.part("write"):
            write_parquet(quarantined, f"{out_dir}/{QUARANTINE_DIR}/{name}")

    good = ~checked.bad
    valid = checked.typed.filter(pa.array(good)) if bad_rows.size else checked.typed
    summary.rows_valid = valid.num_rows
    if valid.num_rows:
        with cpu.part("write"):
            write_parquet(valid, f"{out_dir}/{DATA_DIR}/{name}")
        summary.data_file = name
        with cpu.part("key_hashes"):
            valid_rows = row_numbers.filter(pa.array(good)) if bad_rows.size else row_numbers
            summary.orders = dedup.row_orders(src, valid_rows.to_numpy())
            summary.hashes = dedup.key_hashes(valid, contract.keys)
        with cpu.part("sketches"):
            summary.partials = _partials(valid, contract)
    summary.worker, summary.cpu_start, summary.cpu_end = os.getpid(), cpu.started, cpu.read()
    summary.cpu_s = {**cpu.seconds, "batches": summary.cpu_end - summary.cpu_start}
    return summary


def _quarantine(
    batch: pa.Table,
    checked: semantics.CheckedBatch,
    contract: Contract,
    bad_rows: np.ndarray,
    row_numbers: pa.Array,
    label: str,
    summary: BatchSummary,
) -> pa.Table:
    """The quarantine table of a batch's rejected rows; their counts and examples go to
    ``summary``."""
    quarantined = quarantine.quarantine_rows(batch, checked, contract, bad_rows, label, row_numbers)
    for (column, code), mask in checked.failures.items():
        hit = np.nonzero(mask)[0]
        summary.failures[(column, code)] += int(hit.size)
        raw_col = quarantined.column(column) if column in quarantined.column_names else None
        examples = []
        for pos in hit[:EXAMPLES_PER_RULE]:
            q_pos = int(np.searchsorted(bad_rows, pos))
            value = raw_col[q_pos].as_py() if raw_col is not None else None
            if raw_col is None:  # an unknown column: its value sits in _extra
                value = quarantined.column(semantics.EXTRA_COLUMN)[q_pos].as_py()
            examples.append(
                {"source": label, "row": int(row_numbers[int(pos)].as_py()), "value": value}
            )
        summary.examples[(column, code)] = examples
    codes: Counter[str] = Counter()
    for reasons in quarantined.column(semantics.REASONS_COLUMN).to_pylist():
        codes.update(reasons)
    summary.reasons = codes
    return quarantined


def _partials(table: pa.Table, contract: Contract) -> dict[str, profile.ColumnPartial]:
    return {c.name: profile.column_partial(table.column(c.name), c) for c in contract.columns}


@dataclass
class DroppedDuplicates:
    """What removing duplicates from one curated file took away."""

    rows: int
    partials: dict[str, profile.ColumnPartial]
    examples: list[dict[str, Any]]
    cpu_s: float = 0.0
    data_file: str | None = None  # the filtered copy; None when every row was a duplicate


def remove_duplicates_from_file(
    staging: str,
    data_file: str,
    positions: np.ndarray,
    places: list[tuple[str, int]],
    firsts: list[tuple[str, int]],
    contract: Contract,
) -> DroppedDuplicates:
    """Copy a curated file without the rows at ``positions``; quarantine those as duplicates.

    Idempotent, as a Ray retry needs: ``data_file`` is only read (the driver removes it
    once every task has returned), and both outputs are renamed into place whole, so a
    second run after a partial first one writes the same files.

    Args:
        places: (source, row) of each dropped row.
        firsts: (source, row) of the occurrence each dropped row repeats.
    """
    cpu_start = time.process_time()
    path = Path(staging) / DATA_DIR / data_file
    table = pq.read_table(path)
    keep = np.ones(table.num_rows, dtype=bool)
    keep[positions] = False
    dropped = table.take(pa.array(positions, pa.int64()))
    kept_file = _deduplicated_name(data_file) if keep.any() else None
    if kept_file is not None:
        write_parquet(table.filter(pa.array(keep)), path.with_name(kept_file))
    n = dropped.num_rows
    key_label = "+".join(contract.keys) if contract.keys else "*"
    arrays = [semantics.as_text(dropped.column(c.name).combine_chunks()) for c in contract.columns]
    arrays += [
        pa.nulls(n, pa.string()),
        pa.array([s for s, _ in places], pa.string()),
        pa.array([r for _, r in places], pa.int64()),
        pa.array([[semantics.DUPLICATE]] * n, pa.list_(pa.string())),
        pa.array([[f"{key_label}:{semantics.DUPLICATE}"]] * n, pa.list_(pa.string())),
    ]
    quarantined = pa.Table.from_arrays(arrays, schema=quarantine.quarantine_schema(contract))
    write_parquet(quarantined, Path(staging) / QUARANTINE_DIR / f"dup-{data_file}")
    examples = [
        {"source": s, "row": r, "value": f"repeats {fs} row {fr}"}
        for (s, r), (fs, fr) in zip(
            places[:EXAMPLES_PER_RULE], firsts[:EXAMPLES_PER_RULE], strict=False
        )
    ]
    partials = _partials(dropped, contract)
    return DroppedDuplicates(
        rows=n,
        partials=partials,
        examples=examples,
        cpu_s=time.process_time() - cpu_start,
        data_file=kept_file,
    )


def _remove_all(
    calls: list[tuple[str, str, np.ndarray, list[tuple[str, int]], list[tuple[str, int]]]],
    contract: Contract,
    engine: Engine,
) -> list[DroppedDuplicates]:
    """:func:`remove_duplicates_from_file` for each call: Ray tasks, or here in turn."""
    if engine == "local":
        with ThreadPoolExecutor(LOCAL_THREADS, thread_name_prefix="dedup") as pool:
            futures = [pool.submit(remove_duplicates_from_file, *call, contract) for call in calls]
            return [f.result() for f in futures]
    import ray

    remote = ray.remote(num_cpus=1)(remove_duplicates_from_file)
    contract_ref = ray.put(contract)
    return list(ray.get([remote.remote(*call, contract_ref) for call in calls]))


def _drop_duplicates(
    staging: Path,
    summaries: list[BatchSummary],
    contract: Contract,
    labels: list[str],
    engine: Engine,
) -> list[DroppedDuplicates]:
    """Move every later occurrence of a key into quarantine, one task per file."""
    with_rows = [s for s in summaries if s.data_file]
    if not with_rows:
        return []
    hashes = np.concatenate([s.hashes for s in with_rows])
    dups, firsts = dedup.duplicate_positions(hashes)
    if dups.size == 0:
        return []
    orders = np.concatenate([s.orders for s in with_rows])
    starts = np.cumsum([0] + [s.orders.size for s in with_rows])
    owner = np.searchsorted(starts, dups, side="right") - 1
    key_label = "+".join(contract.keys) if contract.keys else "*"

    def where(order: int) -> tuple[str, int]:
        source, row = dedup.split_order(order)
        return labels[source], row

    owners, calls = [], []
    for batch_idx in np.unique(owner):
        summary = with_rows[int(batch_idx)]
        assert summary.data_file is not None
        mine = owner == batch_idx
        places = [where(o) for o in orders[dups[mine]]]
        first_places = [where(o) for o in orders[firsts[mine]]]
        owners.append(summary)
        calls.append(
            (str(staging), summary.data_file, dups[mine] - starts[batch_idx], places, first_places)
        )
    results = _remove_all(calls, contract, engine)
    for summary, dropped in zip(owners, results, strict=True):
        summary.rows_valid -= dropped.rows
        summary.reasons[semantics.DUPLICATE] += dropped.rows
        summary.failures[(key_label, semantics.DUPLICATE)] += dropped.rows
        examples = summary.examples.setdefault((key_label, semantics.DUPLICATE), [])
        examples.extend(dropped.examples[: max(EXAMPLES_PER_RULE - len(examples), 0)])
    # Every task has returned, so none will be retried: the unfiltered files can go.
    for summary, dropped in zip(owners, results, strict=True):
        assert summary.data_file is not None
        (staging / DATA_DIR / summary.data_file).unlink()
        summary.data_file = dropped.data_file
    return results


def _curated_partials(
    staging: Path,
    summaries: list[BatchSummary],
    dropped: list[DroppedDuplicates],
    contract: Contract,
) -> dict[str, profile.ColumnPartial]:
    """Statistics of the curated rows: all valid rows' minus the duplicates'."""
    merged: dict[str, profile.ColumnPartial] = {}
    for s in summaries:
        for name, part in s.partials.items():
            merged[name] = merged[name].merge(part) if name in merged else part
    removed: dict[str, profile.ColumnPartial] = {}
    for d in dropped:
        for name, part in d.partials.items():
            removed[name] = removed[name].merge(part) if name in removed else part
    for name, part in removed.items():
        integral = contract.column(name).type in ("int", "bool")
        rest, stale = merged[name].remove(part, integral=integral)
        if stale and rest.rows > rest.nulls:
            # A dropped row held the extreme value: read that one column back for the truth.
            column = pq.read_table(staging / DATA_DIR, columns=[name]).column(name)
            exact = profile.column_partial(column, contract.column(name))
            rest.min, rest.max = exact.min, exact.max
            rest.at_min, rest.at_max = exact.at_min, exact.at_max
        merged[name] = rest
    return merged


def _existing(final: Path, limit: float, timings: Timings) -> ValidationResult:
    manifest = versions.read_manifest(final)
    judged = versions.verdict(manifest, limit)
    if judged.status != manifest.status or limit != manifest.max_quarantine_fraction:
        # Same data, new threshold: a new verdict is recorded beside the version; the
        # published manifest (what was decided when it was made) is never edited.
        versions.record_verdict(final, judged)
    return ValidationResult(manifest=judged, path=final, reused=True, timings=timings)


def _timings(
    wall: Clock,
    summaries: list[BatchSummary],
    dropped: list[DroppedDuplicates],
    engine: str = "",
) -> Timings:
    """The driver's steps and the workers' CPU, merged from the batch summaries."""
    cpu: dict[str, float] = {}
    by_worker: dict[int, list[BatchSummary]] = {}
    for s in summaries:
        for part, seconds in s.cpu_s.items():
            cpu[part] = cpu.get(part, 0.0) + seconds
        by_worker.setdefault(s.worker, []).append(s)
    # A worker reads its next block between two batches (Ray Data fuses the read with
    # this transform), so its CPU clock between them is reading plus Ray Data's own work.
    between = 0.0
    for batches in by_worker.values():
        batches.sort(key=lambda s: s.cpu_start)
        between += sum(max(b.cpu_start - a.cpu_end, 0.0) for a, b in pairwise(batches))
    cpu["between_batches"] = between
    cpu["dedup"] = sum(d.cpu_s for d in dropped)
    return Timings(
        wall_s={**wall.seconds, "total": wall.read() - wall.started},
        cpu_s=cpu,
        batches=len(summaries),
        workers=len(by_worker),
        engine=engine,
    )


def choose_engine(settings: Settings, sources: list[Source], engine: str = "auto") -> Engine:
    """Where the batches are checked: ``engine`` (or MLFLEET_VALIDATE_ENGINE) when it names
    one; otherwise Ray Data when MLFLEET_RAY_ADDRESS names a cluster or the sources hold more
    than MLFLEET_VALIDATE_LOCAL_MAX_BYTES, and this process for anything smaller.

    Raises:
        UsageError: ``engine`` is none of auto, local, ray.
    """
    if engine not in ("auto", "local", "ray"):
        raise UsageError(f"--engine {engine!r}: use auto, local or ray")
    chosen = engine if engine != "auto" else settings.validate_engine
    if chosen == "local":
        return "local"
    if chosen == "ray":
        return "ray"
    if settings.ray_address:
        return "ray"
    size = sum(s.path.stat().st_size for s in sources)
    return "local" if size <= settings.validate_local_max_bytes else "ray"


def validate(
    contract: Contract,
    source_specs: list[str],
    settings: Settings,
    *,
    max_quarantine_fraction: float = 0.05,
    progress: Progress | None = None,
    engine: str = "auto",
) -> ValidationResult:
    """Validate sources against a contract and write (or reuse) the dataset version.

    Both engines run the same steps (:func:`summarise_batch` per batch, then dedup, profile
    and publish) and write the same version; only where the batches are checked differs.

    Args:
        contract: The data contract.
        source_specs: SOURCE arguments (paths, globs, ``sqlite:///f.db?table=T``) in order.
        settings: Where datasets live and which Ray to use.
        max_quarantine_fraction: Above this fraction of rejected rows the version fails.
        progress: Called with the number of rows processed so far.
        engine: ``auto``, ``local`` or ``ray`` (see :func:`choose_engine`).

    Raises:
        SourceError: a source is missing or unreadable.
        UsageError: the threshold or the engine is out of range.
    """
    if not 0.0 <= max_quarantine_fraction <= 1.0:
        raise UsageError("--max-quarantine-fraction must be between 0 and 1")
    wall = Clock(time.perf_counter)
    with wall.part("hash_sources"):
        sources = resolve_sources(source_specs)
        digests = hash_sources(sources)
    version = versions.version_id(contract, sources, digests)
    final = versions.version_dir(settings.datasets_dir, contract.name, version)
    chosen = choose_engine(settings, sources, engine)
    if (final / versions.MANIFEST).is_file():
        return _existing(final, max_quarantine_fraction, _timings(wall, [], []))

    if chosen == "ray":
        from mlfleet.ray_runtime import ensure_ray

        with wall.part("ray"):
            ensure_ray(settings)
    # Leftovers of validations killed before they could clean up (kill -9, power loss).
    versions.sweep_staging(final.parent)
    staging = versions.new_staging(final)
    (staging / DATA_DIR).mkdir()
    (staging / QUARANTINE_DIR).mkdir()
    try:
        result = _run(
            contract,
            sources,
            digests,
            version,
            staging,
            final,
            max_quarantine_fraction,
            progress,
            wall,
            chosen,
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


# What a batch raises when its source holds what it cannot parse: reported as the source's
# error, one line, whichever engine met it.
_SOURCE_FAULTS = (SourceError, pa.ArrowInvalid, UnicodeDecodeError)


def _source_fault(exc: BaseException) -> SourceError:
    return SourceError(str(exc).splitlines()[0])


def _batch_summaries(
    engine: Engine, contract: Contract, sources: list[Source], staging: Path, labels: list[str]
) -> Iterator[BatchSummary]:
    """The streaming pass: :func:`summarise_batch` on every raw batch, as it completes.

    Ray: Ray Data's read tasks fused with :func:`validate_batch`. Local: the same read tasks
    and the same function in this process, no Ray import: batches are read here in order and
    checked on ``LOCAL_THREADS`` threads, at most that many in memory at once; summaries
    come back in read order.
    """
    kwargs: dict[str, Any] = {"contract": contract, "out_dir": str(staging), "labels": labels}
    if engine == "local":
        try:
            with ThreadPoolExecutor(LOCAL_THREADS, thread_name_prefix="validate") as pool:
                pending: deque[Future[BatchSummary]] = deque()
                for batch in local_batches(sources):
                    pending.append(pool.submit(summarise_batch, batch, **kwargs))
                    if len(pending) >= LOCAL_THREADS:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
        except _SOURCE_FAULTS as exc:
            raise _source_fault(exc) from None
        return
    import ray.data

    datasets = [
        ds.map_batches(
            validate_batch,  # type: ignore[arg-type]
            batch_format="pyarrow",
            batch_size=None,
            zero_copy_batch=True,
            fn_kwargs=kwargs,
        )
        for ds in raw_datasets(sources)
    ]
    pipeline = datasets[0].union(*datasets[1:]) if len(datasets) > 1 else datasets[0]
    try:
        for table in pipeline.iter_batches(batch_format="pyarrow", batch_size=None):
            yield from _unpack(table)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.as_instanceof_cause()
        if isinstance(cause, _SOURCE_FAULTS):
            raise _source_fault(cause) from None
        raise


def _run(
    contract: Contract,
    sources: list[Source],
    digests: list[str],
    version: str,
    staging: Path,
    final: Path,
    limit: float,
    progress: Progress | None,
    wall: Clock,
    engine: Engine,
) -> ValidationResult:
    labels = [s.label for s in sources]
    summaries: list[BatchSummary] = []
    done = 0
    with wall.part("read_check"):
        for summary in _batch_summaries(engine, contract, sources, staging, labels):
            summaries.append(summary)
            done += summary.rows_in
            if progress:
                progress(done)
    summaries.sort(key=lambda s: (s.src, s.first_row))

    with wall.part("dedup"):
        dropped = _drop_duplicates(staging, summaries, contract, labels, engine)
    duplicates = sum(d.rows for d in dropped)
    rows_valid = sum(s.rows_valid for s in summaries)
    with wall.part("profile"):
        partials = _curated_partials(staging, summaries, dropped, contract)

    rows_in = sum(s.rows_in for s in summaries)
    quarantined = rows_in - rows_valid
    reasons: Counter[str] = Counter()
    failures: Counter[tuple[str, str]] = Counter()
    examples: dict[tuple[str, str], list[dict[str, Any]]] = {}
    per_source: dict[int, list[int]] = {s.index: [0, 0, 0] for s in sources}
    errors: dict[int, str] = {}
    for s in summaries:
        reasons.update(s.reasons)
        failures.update(s.failures)
        per_source[s.src][0] += s.rows_in
        per_source[s.src][1] += s.rows_valid
        per_source[s.src][2] += s.reasons.get(semantics.DUPLICATE, 0)
        if s.error is not None:
            errors[s.src] = s.error
        for key, items in s.examples.items():
            room = EXAMPLES_PER_RULE - len(examples.setdefault(key, []))
            examples[key].extend(items[: max(room, 0)])
    fraction = quarantined / rows_in if rows_in else 0.0
    manifest = versions.Manifest(
        name=contract.name,
        version=version,
        status=versions.status_for(fraction, limit, rows=rows_in, unreadable=bool(errors)),
        rows_in=rows_in,
        rows_valid=rows_valid,
        rows_quarantined=quarantined,
        quarantine_fraction=round(fraction, 6),
        max_quarantine_fraction=limit,
        reasons=dict(sorted(reasons.items())),
        sources=[
            versions.SourceEntry(
                uri=s.uri,
                kind=s.kind,
                rows=per_source[s.index][0],
                rows_valid=per_source[s.index][1],
                rows_quarantined=per_source[s.index][0] - per_source[s.index][1],
                rows_duplicate=per_source[s.index][2],
                sha256=d,
                error=errors.get(s.index),
            )
            for s, d in zip(sources, digests, strict=True)
        ],
        contract_sha=contract.sha,
        keys=contract.keys,
        created_at=versions.now_iso(),
        mlfleet_version=__version__,
    )
    assert manifest.rows_in == manifest.rows_valid + manifest.rows_quarantined
    with wall.part("report"):
        prof = profile.profile_document(
            contract, partials, name=contract.name, version=version, rows=rows_valid
        )
        doc = report.report_document(manifest, contract, partials, failures, examples, duplicates)
        versions.write_json(staging / "profile.json", prof)
        versions.write_json(staging / "report.json", doc)
        (staging / "report.html").write_text(report.render_html(doc))
        (staging / "contract.yaml").write_text(contract.to_yaml())
        versions.write_json(staging / versions.MANIFEST, manifest.model_dump(mode="json"))
    with wall.part("publish"):
        published = versions.publish(staging, final)
    timings = _timings(wall, summaries, dropped, engine)
    if not published:
        return _existing(final, limit, timings)
    return ValidationResult(manifest=manifest, path=final, timings=timings)
