"""Dataset versions on disk: content-addressed ids, manifests and listing.

Layout: ``<home>/datasets/<name>/<version>/`` holding ``data/`` (curated Parquet),
``quarantine/`` (rejected rows), ``manifest.json``, ``report.json``, ``report.html`` and
``profile.json``. A version is written under a temporary name (``.staging-*``), synced to
disk and renamed into place, so a reader never sees half a version and a crash never leaves
one. A published version's files are never rewritten: validating it again with another
quarantine threshold adds a verdict record under ``verdicts/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from mlfleet.contract.schema import Contract
from mlfleet.data.sources import Source
from mlfleet.errors import NotFoundError

MANIFEST = "manifest.json"
VERDICTS = "verdicts"
VERSION_LENGTH = 16
STAGING_PREFIX = ".staging-"
OWNER = "owner.json"
# A staging folder this old is a leftover whatever its owner file says: a validation of
# 5M rows takes seconds, and a host's PIDs and clock can both be reused or reset.
STALE_STAGING_S = 24 * 3600


class SourceEntry(BaseModel):
    """One input of a dataset version."""

    uri: str
    kind: str
    rows: int
    rows_valid: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0  # of rows_quarantined: later occurrences of a key
    sha256: str
    # Why the source could not be read (whole or in part); rows read before it still count.
    error: str | None = None


class Manifest(BaseModel):
    """The counts and provenance of a dataset version (``manifest.json``).

    ``rows_in == rows_valid + rows_quarantined`` always holds.
    """

    name: str
    version: str
    status: Literal["passed", "failed"]
    rows_in: int
    rows_valid: int
    rows_quarantined: int
    quarantine_fraction: float
    max_quarantine_fraction: float
    reasons: dict[str, int] = Field(default_factory=dict)
    sources: list[SourceEntry]
    contract_sha: str
    keys: list[str] | None = None
    created_at: str
    mlfleet_version: str = ""


def version_id(contract: Contract, sources: list[Source], digests: list[str]) -> str:
    """Content hash of the contract and the sources' bytes, in their order.

    Paths are left out on purpose: the same bytes validated from another folder (or on a
    worker with another working directory) are the same dataset version. Order matters
    because de-duplication keeps the first occurrence.
    """
    h = hashlib.sha256()
    h.update(contract.sha.encode())
    for src, digest in zip(sources, digests, strict=True):
        h.update(f"\n{src.kind}:{src.table or ''}:{digest}".encode())
    return h.hexdigest()[:VERSION_LENGTH]


def dataset_dir(datasets_root: Path, name: str) -> Path:
    """Folder holding every version of dataset ``name``."""
    return datasets_root / name


def version_dir(datasets_root: Path, name: str, version: str) -> Path:
    """Folder of one dataset version."""
    return datasets_root / name / version


def status_for(
    fraction: float, limit: float, *, rows: int = 1, unreadable: bool = False
) -> Literal["passed", "failed"]:
    """A version passes while its quarantined fraction is within ``limit``, it has rows,
    and every source could be read."""
    return "passed" if rows and not unreadable and fraction <= limit else "failed"


def verdict(manifest: Manifest, limit: float) -> Manifest:
    """The manifest judged against another quarantine threshold (in memory only)."""
    status = status_for(
        manifest.quarantine_fraction,
        limit,
        rows=manifest.rows_in,
        unreadable=any(s.error for s in manifest.sources),
    )
    return manifest.model_copy(update={"status": status, "max_quarantine_fraction": limit})


def record_verdict(final: Path, judged: Manifest) -> Path:
    """Add a verdict record to a published version; the manifest itself is never edited.

    Each record is a new file (named by time and a random suffix), so concurrent
    validations of the same version never overwrite one another.
    """
    folder = final / VERDICTS
    folder.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = folder / f"{stamp}-{uuid.uuid4().hex[:8]}.json"
    write_json(
        path,
        {
            "version": judged.version,
            "status": judged.status,
            "quarantine_fraction": judged.quarantine_fraction,
            "max_quarantine_fraction": judged.max_quarantine_fraction,
            "decided_at": now_iso(),
        },
        durable=True,
    )
    return path


def now_iso() -> str:
    """Current UTC time, ISO 8601 with seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_manifest(path: Path) -> Manifest:
    """Load ``manifest.json`` from a version folder."""
    return Manifest.model_validate_json((path / MANIFEST).read_text())


def write_json(path: Path, data: object, *, durable: bool = False) -> None:
    """Write JSON atomically (temp file + rename) so readers never see half a file.

    ``durable`` also syncs the file and its folder, for a file written after publication.
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    if durable:
        _fsync(tmp)
    os.replace(tmp, path)
    if durable:
        _fsync(path.parent)


def _fsync(path: Path) -> None:
    """Flush a file's or a folder's contents (a folder's: its entries) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_tree(root: Path) -> None:
    """fsync every file, then every folder bottom-up, so a rename of ``root`` publishes
    bytes that are on disk (a crash after it cannot leave a manifest over empty files)."""
    folders: list[Path] = []
    for top, _dirs, files in os.walk(root):
        folders.append(Path(top))
        for name in files:
            _fsync(Path(top) / name)
    for folder in reversed(folders):
        _fsync(folder)


def new_staging(final: Path) -> Path:
    """A fresh staging folder beside ``final``, recording which process owns it."""
    staging = final.parent / f"{STAGING_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    write_json(staging / OWNER, {"host": socket.gethostname(), **_process_identity(os.getpid())})
    return staging


def _process_identity(pid: int) -> dict[str, float]:
    import psutil

    return {"pid": pid, "started": psutil.Process(pid).create_time()}


def _owner_alive(staging: Path) -> bool:
    """Whether the process that made ``staging`` still runs (a reused PID does not count).

    A folder made on another host (a shared disk) is taken as alive: only its age can
    retire it.
    """
    import psutil

    try:
        owner = json.loads((staging / OWNER).read_text())
    except (OSError, ValueError):
        return True  # Not written yet (or unreadable): only the age bound applies.
    if owner.get("host") != socket.gethostname():
        return True
    try:
        return bool(psutil.Process(int(owner["pid"])).create_time() == owner["started"])
    except (psutil.Error, KeyError, TypeError, ValueError):
        return False


def sweep_staging(dataset_root: Path, max_age_s: float = STALE_STAGING_S) -> list[Path]:
    """Remove staging folders left by crashed validations of one dataset; returns them.

    A folder goes when it is older than ``max_age_s`` or its owner process is gone. One
    that a live validation is writing stays.
    """
    if not dataset_root.is_dir():
        return []
    removed = []
    now = time.time()
    for path in dataset_root.glob(f"{STAGING_PREFIX}*"):
        try:
            age = now - path.stat().st_mtime
        except FileNotFoundError:
            continue  # Published or removed meanwhile.
        if age > max_age_s or not _owner_alive(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def publish(staging: Path, final: Path) -> bool:
    """Sync a finished staging folder to disk and move it into place.

    Returns False (and removes the staging folder) when the version already exists: a
    published version is never replaced.
    """
    (staging / OWNER).unlink(missing_ok=True)
    sync_tree(staging)
    try:
        os.rename(staging, final)
    except OSError:
        if (final / MANIFEST).exists():
            shutil.rmtree(staging, ignore_errors=True)
            return False
        raise
    _fsync(final.parent)  # the rename itself
    return True


def list_versions(datasets_root: Path, name: str) -> list[Manifest]:
    """Every complete version of ``name``, newest first.

    Raises:
        NotFoundError: when no dataset of that name exists.
    """
    root = dataset_dir(datasets_root, name)
    if not root.is_dir():
        raise NotFoundError(f"no dataset named {name!r} under {datasets_root}")
    manifests = [
        read_manifest(p)
        for p in root.iterdir()
        if not p.name.startswith(".") and (p / MANIFEST).is_file()
    ]
    return sorted(manifests, key=lambda m: (m.created_at, m.version), reverse=True)
