"""Evidently's default data drift report on two Parquet files: per-column verdicts and timings.

Runs in Evidently's own environment (it needs pandas < 3), started by bench_drift.py:

    uv run --no-project --isolated --with evidently --with "pandas<3" --with pyarrow \\
        python benchmarks/evidently_drift.py ref.parquet cur.parquet out.json

Timed apart: the imports (pandas, Evidently), reading the Parquet files, and the run:
``Report([DataDriftPreset()]).run(current, reference)`` with its defaults, plus reading the
per-column results from the snapshot. A column has drifted when its score is at or above
the threshold for distances, or below it for p-values (Evidently's own rule).
"""

from __future__ import annotations

import json
import sys
import time


def main(reference_path: str, current_path: str, out_path: str) -> None:
    """Run the report and write the verdicts and timings as JSON."""
    start = time.perf_counter()
    import pandas as pd
    from evidently import Report
    from evidently import __version__ as evidently_version
    from evidently.presets import DataDriftPreset

    import_s = time.perf_counter() - start

    start = time.perf_counter()
    reference = pd.read_parquet(reference_path)
    current = pd.read_parquet(current_path)
    read_s = time.perf_counter() - start

    start = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current, reference)
    result = snapshot.dict()
    run_s = time.perf_counter() - start

    columns: dict[str, dict[str, object]] = {}
    dataset: dict[str, object] = {}
    for metric in result["metrics"]:
        config = metric["config"]
        if config["type"].endswith(":ValueDrift"):
            method, threshold, value = config["method"], config["threshold"], metric["value"]
            p_value = "p_value" in method
            drifted = value < threshold if p_value else value >= threshold
            columns[config["column"]] = {
                "method": method,
                "threshold": threshold,
                "value": value,
                "drift": bool(drifted),
            }
        elif config["type"].endswith(":DriftedColumnsCount"):
            dataset = {"drift_share": config["drift_share"], **metric["value"]}
    out = {
        "evidently": evidently_version,
        "pandas": pd.__version__,
        "python": sys.version.split()[0],
        "rows": [len(reference), len(current)],
        "import_s": import_s,
        "read_s": read_s,
        "run_s": run_s,
        "dataset": dataset,
        "columns": columns,
    }
    with open(out_path, "w") as fh:
        json.dump(out, fh, indent=2)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: evidently_drift.py REFERENCE.parquet CURRENT.parquet OUT.json")
    main(*sys.argv[1:])
