"""Dataset versions on disk: content-addressed ids, manifests and listing.

Layout: ``<home>/datasets/<name>/<version>/`` holding ``data/`` (curated Parquet),
``quarantine/`` (rejected rows), ``manifest.json``, ``report.json``, ``report.html`` and
``profile.json``. A version is written under a temporary name and renamed into place, so
a reader never sees half a version.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from mlfleet.contract.schema import Contract
from mlfleet.data.sources import Source
from mlfleet.errors import NotFoundError

MANIFEST = "manifest.json"
VERSION_LENGTH = 16


class SourceEntry(BaseModel):
    """One input of a dataset version."""

    uri: str
    kind: str
    rows: int
    rows_valid: int = 0
    rows_quarantined: int = 0
    sha256: str


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


def status_for(fraction: float, limit: float) -> Literal["passed", "failed"]:
    """A version passes while its quarantined fraction is within ``limit``."""
    return "passed" if fraction <= limit else "failed"


def now_iso() -> str:
    """Current UTC time, ISO 8601 with seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_manifest(path: Path) -> Manifest:
    """Load ``manifest.json`` from a version folder."""
    return Manifest.model_validate_json((path / MANIFEST).read_text())


def write_json(path: Path, data: object) -> None:
    """Write JSON atomically (temp file + rename) so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def publish(staging: Path, final: Path) -> bool:
    """Move a finished staging folder into place; False if the version already exists."""
    try:
        os.rename(staging, final)
    except OSError:
        if (final / MANIFEST).exists():
            shutil.rmtree(staging, ignore_errors=True)
            return False
        raise
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
