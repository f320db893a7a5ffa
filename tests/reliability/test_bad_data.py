"""Suite case 7, bad data: broken files beside good ones in one `mlfleet data validate`.

Pass criterion: the run finishes (no traceback); each unreadable file gets one clear line
on stderr naming it and fails the version; a file with the wrong columns has its rows
quarantined; the good sources' rows are all there; per source, rows read = valid +
quarantined (duplicates included), in the manifest and in the files on disk.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.support.cli import run_cli

CONTRACT = """
name: payments
keys: [id]
columns:
  - {name: id, type: int}
  - {name: amount, type: float, min: 0}
  - {name: kind, type: category, values: [card, cash]}
"""

# file -> (rows read, valid, quarantined (duplicates included), duplicates, unreadable?)
EXPECTED = {
    "good.csv": (5, 4, 1, 0, False),  # row 3: amount below 0
    "good.parquet": (5, 3, 2, 1, False),  # row 3: not a kind; row 5 repeats good.csv id 1
    "truncated.parquet": (0, 0, 0, 0, True),
    "broken_quote.csv": (2, 2, 0, 0, True),  # rows 1-2 read; row 3 opens a quote
    "binary.csv": (0, 0, 0, 0, True),
    "empty.csv": (0, 0, 0, 0, True),
    "wrong_columns.csv": (3, 0, 3, 0, False),  # every row: missing and unknown columns
}
ERRORS = {
    "truncated.parquet": "cannot read as Parquet",
    "broken_quote.csv": "row 3 opens a quote that is never closed",
    "binary.csv": "not a text file",
    "empty.csv": "empty file",
}


def write_files(folder: Path) -> list[Path]:
    folder.mkdir()
    (folder / "good.csv").write_text(
        "id,amount,kind\n1,10.0,card\n2,5.5,cash\n3,-1,card\n4,7,cash\n5,8,card\n"
    )
    pq.write_table(
        pa.table(
            {
                "id": pa.array([6, 7, 8, 9, 1], pa.int64()),
                "amount": [1.0, 2.0, 3.0, 4.0, 10.0],
                "kind": ["card", "cash", "gift", "card", "card"],  # row 3: not a kind
            }
        ),
        folder / "good.parquet",
    )
    whole = folder / "whole.parquet"
    pq.write_table(pa.table({"id": list(range(100, 150)), "amount": [1.0] * 50}), whole)
    data = whole.read_bytes()
    whole.unlink()
    (folder / "truncated.parquet").write_bytes(data[: len(data) // 2])  # a copy cut short
    (folder / "broken_quote.csv").write_text(
        'id,amount,kind\n20,1,card\n21,2,cash\n22,3,"card\n23,4,cash\n24,5,card\n'
    )
    (folder / "binary.csv").write_bytes(random.Random(7).randbytes(4096))
    (folder / "empty.csv").write_bytes(b"")
    (folder / "wrong_columns.csv").write_text("user,total\n1,2\n3,4\n5,6\n")
    return [folder / name for name in EXPECTED]


def test_bad_files_are_reported_one_line_each_and_lose_no_good_row(tmp_path: Path) -> None:
    files = write_files(tmp_path / "sources")
    (tmp_path / "contract.yaml").write_text(CONTRACT)
    home = tmp_path / "home"
    env = {**os.environ, "MLFLEET_HOME": str(home), "MLFLEET_RAY_NUM_CPUS": "2"}
    args = ["data", "validate", "--contract", str(tmp_path / "contract.yaml")]
    proc = run_cli([*args, *map(str, files), "--json"], env, timeout=300)

    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stderr  # written, failed: sources were unreadable
    manifest = json.loads(proc.stdout)
    assert manifest["status"] == "failed"
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == len(ERRORS), proc.stderr
    for name, message in ERRORS.items():
        (line,) = [e for e in error_lines if f"{name}:" in e]
        assert message in line, line

    version = home / "datasets" / "payments" / manifest["version"]
    curated = pq.read_table(version / "data")
    quarantined = pq.read_table(version / "quarantine").to_pylist()
    on_disk = Counter(Path(r["_source"]).name for r in quarantined)
    dups_on_disk = Counter(
        Path(r["_source"]).name for r in quarantined if "duplicate" in r["_reasons"]
    )
    by_name = {Path(s["uri"]).name: s for s in manifest["sources"]}
    for name, (rows, valid, quarantine, dups, unreadable) in EXPECTED.items():
        s = by_name[name]
        measured = (s["rows"], s["rows_valid"], s["rows_quarantined"], s["rows_duplicate"])
        print(
            f"{name:18} read {s['rows']} = valid {s['rows_valid']} + quarantined "
            f"{s['rows_quarantined'] - s['rows_duplicate']} + duplicates {s['rows_duplicate']}"
            f"{'  [' + s['error'] + ']' if s['error'] else ''}"
        )
        assert measured == (rows, valid, quarantine, dups), (name, s)
        assert s["rows"] == s["rows_valid"] + s["rows_quarantined"]
        assert (on_disk[name], dups_on_disk[name]) == (quarantine, dups), name
        assert bool(s["error"]) is unreadable, (name, s["error"])
    # Every good row is curated, once: the good files' valid ids plus the rows read
    # before the broken quote.
    assert sorted(curated.column("id").to_pylist()) == [1, 2, 4, 5, 6, 7, 9, 20, 21]
    assert manifest["rows_in"] == manifest["rows_valid"] + manifest["rows_quarantined"]
    print(
        f"bad data: {len(ERRORS)} unreadable sources reported, rows in {manifest['rows_in']} = "
        f"valid {manifest['rows_valid']} + quarantined {manifest['rows_quarantined']}"
    )
