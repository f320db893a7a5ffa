"""Side-by-side benchmark: mlfleet's drift computation vs Evidently's data drift report.

The same two Parquet files go to both: a reference and a current frame of 100k rows × 20
features (13 numeric, 7 categorical; generated with numpy, seeded), where some features
are shifted by known amounts and some are not (``TRUTH`` below, also written beside the
data). Each measurement is one fresh subprocess, run alternately (Evidently, mlfleet) for
``--repeats`` rounds; figures are medians over rounds.

mlfleet (``--one mlfleet``, this project's venv):
  reference (timed apart; done once at training time): the profile of the reference
    Parquet through ``mlfleet.data.profile`` (``column_partial`` per 25k-row batch,
    ``ColumnPartial.merge``, ``profile_document``: equal-frequency edges with exact counts),
    the predictions' class frequencies, then ``monitoring.reference.build_reference``;
  frame (timed apart): the current rows as the model's input frame
    (``contract.semantics.model_frame``) and the model's predictions: a serving replica
    has both already when it sketches;
  drift (the timed figure): ``Binner.count`` of the current frame and predictions, every
    statistic of ``monitoring.stats`` per feature, the PSI verdicts and the model status.
    Timed on its first call in the fresh process (``run_s``, the headline) and as the
    median of 5 more calls (``warm_s``: the monitor is a long-lived actor).

Evidently (``benchmarks/evidently_drift.py`` in its own environment, since it needs
pandas < 3): ``Report([DataDriftPreset()]).run(current, reference)`` with its defaults,
and reading the per-column verdicts from the snapshot.

Imports and reading Parquet are timed apart on both sides. ``speedup`` is Evidently's run
time over mlfleet's drift time, per round, median over rounds. Each subprocess's whole tree
(uv's included on Evidently's side) is measured with ``harness.run_measured``: CPU seconds
and peak memory (``cpu_s``, ``peak_mb``).

Usage:
  python benchmarks/bench_drift.py                 # 100k × 100k × 20, 3 rounds
  python benchmarks/bench_drift.py --quick         # 20k rows, 1 round (smoke)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / "data" / "drift"
RESULTS_FILE = HERE / "results" / "bench_drift.json"
MARK = "@@BENCH@@ "
EVIDENTLY_REQUIREMENTS = ["evidently", "pandas<3", "pyarrow"]

# What each feature does between the reference and the current frame, and whether that is
# a shift the verdicts should call drift. Sizes are chosen to be meaningful (PSI ≳ 0.25,
# normed Wasserstein ≳ 0.5) or negligible, plus one moderate shift (n12, +0.3 sd) that
# PSI's default thresholds rate a warning, not drift.
FEATURES: list[tuple[str, str, bool, str]] = [
    ("n00_normal", "float", False, "N(50, 10), unchanged"),
    ("n01_mean_shift", "float", True, "N(50, 10) -> N(57.5, 10): +0.75 sd"),
    ("n02_lognormal", "float", False, "lognormal(3, 0.5), 2% nulls, unchanged"),
    ("n03_scale", "float", True, "lognormal(3, 0.5) -> x1.5"),
    ("n04_uniform", "float", False, "U(0, 100), unchanged"),
    ("n05_spread", "float", True, "N(0, 1) -> N(0, 1.6)"),
    ("n06_poisson", "int", False, "Poisson(3), unchanged"),
    ("n07_rate", "int", True, "Poisson(3) -> Poisson(4)"),
    ("n08_exponential", "float", False, "Exp(20), unchanged"),
    ("n09_unit_error", "float", True, "N(70, 8) kg; 20% of current rows in grams (x1000)"),
    ("n10_tiny_shift", "float", False, "N(100, 15) -> N(100.75, 15): +0.05 sd, negligible"),
    ("n11_bimodal", "float", False, "N(-2, 1) | N(3, 1) half each, unchanged"),
    ("n12_moderate", "float", True, "N(0, 1) -> N(0.3, 1): +0.3 sd, moderate"),
    ("c01_mix", "category", True, "5 values, 20% each -> 45% / 13.75%"),
    ("c02_zipf", "category", False, "20 values, Zipf-like shares, unchanged"),
    ("c03_new_value", "category", True, "v20 (allowed, absent from the reference) at 25%"),
    ("c04_binary", "category", False, "yes 70% / no 30%, unchanged"),
    ("c05_binary_shift", "category", True, "yes 70% -> 45%"),
    ("c06_ten", "category", False, "10 values, fixed random shares, 2% nulls, unchanged"),
    ("c07_slight", "category", False, "8 values, one share +1 point, negligible"),
]
TRUTH = {name: shifted for name, _, shifted, _ in FEATURES}


# ----------------------------------------------------------------------------------------
# Data (numpy, seeded; Parquet through pyarrow)
# ----------------------------------------------------------------------------------------


def data_paths(rows: int) -> dict[str, Path]:
    stem = DATA_DIR / f"drift_{rows}"
    return {
        "reference": stem.with_name(stem.name + "_reference.parquet"),
        "current": stem.with_name(stem.name + "_current.parquet"),
        "truth": stem.with_name(stem.name + "_truth.json"),
    }


def _categories(name: str) -> list[str]:
    sizes = {"c01": 5, "c02": 20, "c03": 21, "c04": 2, "c05": 2, "c06": 10, "c07": 8}
    size = sizes[name[:3]]
    return ["yes", "no"] if size == 2 else [f"v{i}" for i in range(size)]


def contract_data() -> dict[str, Any]:
    """The benchmark's data contract (what a team would have inferred and edited)."""
    columns: list[dict[str, Any]] = []
    for name, kind, _, _ in FEATURES:
        column: dict[str, Any] = {"name": name, "type": kind}
        if kind == "category":
            column["values"] = _categories(name)
        if name in ("n02_lognormal", "c06_ten"):
            column["nullable"] = True
        columns.append(column)
    return {"name": "drift-bench", "columns": columns}


def generate(rows: int, seed: int = 20261128) -> dict[str, Path]:
    """Write the reference and current Parquet files and the truth (skipped if present)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = data_paths(rows)
    if all(p.exists() for p in paths.values()):
        return paths
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = rows

    def pick(values: list[str], shares: list[float]) -> pa.Array:
        p = np.asarray(shares, dtype=np.float64)
        idx = rng.choice(len(values), size=n, p=p / p.sum())
        return pa.array(values, pa.string()).take(pa.array(idx))

    def with_nulls(values: np.ndarray | pa.Array, share: float) -> pa.Array:
        mask = rng.random(n) < share
        if isinstance(values, np.ndarray):
            return pa.array(values, mask=mask)
        return pa.array(
            [None if m else v for v, m in zip(values.to_pylist(), mask, strict=True)], pa.string()
        )

    zipf = [1 / (i + 1) for i in range(20)]
    ten = list(np.random.default_rng(7).dirichlet(np.ones(10) * 2))
    eight = [1 / 8] * 8

    def frame(current: bool) -> pa.Table:
        c = current
        cols: dict[str, pa.Array] = {}
        cols["n00_normal"] = pa.array(rng.normal(50, 10, n))
        cols["n01_mean_shift"] = pa.array(rng.normal(57.5 if c else 50, 10, n))
        cols["n02_lognormal"] = with_nulls(rng.lognormal(3, 0.5, n), 0.02)
        cols["n03_scale"] = pa.array(rng.lognormal(3, 0.5, n) * (1.5 if c else 1.0))
        cols["n04_uniform"] = pa.array(rng.uniform(0, 100, n))
        cols["n05_spread"] = pa.array(rng.normal(0, 1.6 if c else 1.0, n))
        cols["n06_poisson"] = pa.array(rng.poisson(3, n).astype(np.int64))
        cols["n07_rate"] = pa.array(rng.poisson(4 if c else 3, n).astype(np.int64))
        cols["n08_exponential"] = pa.array(rng.exponential(20, n))
        kg = rng.normal(70, 8, n)
        if c:
            kg = np.where(rng.random(n) < 0.2, kg * 1000, kg)
        cols["n09_unit_error"] = pa.array(kg)
        cols["n10_tiny_shift"] = pa.array(rng.normal(100.75 if c else 100, 15, n))
        mode = rng.random(n) < 0.5
        cols["n11_bimodal"] = pa.array(np.where(mode, rng.normal(-2, 1, n), rng.normal(3, 1, n)))
        cols["n12_moderate"] = pa.array(rng.normal(0.3 if c else 0.0, 1, n))
        five = _categories("c01")
        cols["c01_mix"] = pick(five, [0.45] + [0.1375] * 4 if c else [0.2] * 5)
        cols["c02_zipf"] = pick(_categories("c02"), zipf)
        new = _categories("c03")
        cols["c03_new_value"] = pick(new, [0.75 * z for z in zipf] + [0.25] if c else [*zipf, 0])
        cols["c04_binary"] = pick(["yes", "no"], [0.7, 0.3])
        cols["c05_binary_shift"] = pick(["yes", "no"], [0.45, 0.55] if c else [0.7, 0.3])
        cols["c06_ten"] = with_nulls(pick(_categories("c06"), ten), 0.02)
        slight = [eight[0] + 0.01, *eight[1:7], eight[7] - 0.01] if c else eight
        cols["c07_slight"] = pick(_categories("c07"), slight)
        return pa.table(cols)

    pq.write_table(frame(current=False), paths["reference"])
    pq.write_table(frame(current=True), paths["current"])
    truth = {name: {"shifted": s, "what": what} for name, _, s, what in FEATURES}
    paths["truth"].write_text(json.dumps({"seed": seed, "rows": rows, "features": truth}, indent=2))
    return paths


# ----------------------------------------------------------------------------------------
# mlfleet (child process)
# ----------------------------------------------------------------------------------------


def predict(frame: Any) -> Any:
    """The benchmark's 'model': a fixed rule on two features (its output gets sketched too)."""
    import numpy as np

    score = frame["n00_normal"].to_numpy() + 0.5 * frame["n01_mean_shift"].to_numpy()
    return np.where(score > 75, "high", "low")


def run_mlfleet(reference_path: Path, current_path: Path, warm_calls: int = 5) -> dict[str, Any]:
    start = time.perf_counter()
    import numpy as np
    import pyarrow.parquet as pq

    from mlfleet.contract.schema import parse_contract
    from mlfleet.contract.semantics import model_frame
    from mlfleet.data.profile import column_partial, profile_document
    from mlfleet.monitoring.reference import PREDICTION, build_reference, categorical_reference
    from mlfleet.monitoring.sketch import Binner
    from mlfleet.monitoring.stats import feature_verdict, model_status
    from mlfleet.monitoring.stats import statistics as all_statistics

    import_s = time.perf_counter() - start

    start = time.perf_counter()
    reference_table = pq.read_table(reference_path)
    current_table = pq.read_table(current_path)
    read_s = time.perf_counter() - start

    # Training time: the profile (streamed in batches and merged, as Ray Data blocks are),
    # the predictions on the reference rows, the monitor's reference.
    start = time.perf_counter()
    contract = parse_contract(contract_data())
    features = contract.column_names
    partials: dict[str, Any] = {}
    for batch in reference_table.to_batches(max_chunksize=25_000):
        for col in contract.columns:
            part = column_partial(batch.column(col.name), col)
            partials[col.name] = partials[col.name].merge(part) if col.name in partials else part
    profile = profile_document(
        contract, partials, name="drift-bench", version="1", rows=reference_table.num_rows
    )
    ref_frame = reference_table.to_pandas()
    ref_frame = model_frame({f: ref_frame[f] for f in features}, contract, features)
    labels, freq = np.unique(predict(ref_frame), return_counts=True)
    prediction_ref = categorical_reference(
        PREDICTION, dict(zip(labels.tolist(), freq.tolist(), strict=True))
    )
    monitoring = {"task": "classification", "prediction": prediction_ref.to_json()}
    reference = build_reference("drift-bench", "1", profile, monitoring, features)
    reference_s = time.perf_counter() - start

    # Serving time: the model's input frame and its predictions exist before sketching.
    start = time.perf_counter()
    current = current_table.to_pandas()
    frame = model_frame({f: current[f] for f in features}, contract, features)
    predictions = predict(frame)
    frame_s = time.perf_counter() - start

    def drift() -> tuple[Any, dict[str, Any], Any, str]:
        counts = Binner(reference).count(frame, predictions)
        judged: dict[str, Any] = {}
        for col in reference.features:
            vector = counts.columns[col.name]
            judged[col.name] = (
                feature_verdict(col.counts, vector, kind=col.kind),
                all_statistics(col.counts, vector, col.kind),
            )
        pred = feature_verdict(
            reference.prediction.counts, counts.columns[PREDICTION], kind="categorical"
        )
        status = model_status([v.verdict for v, _ in judged.values()], pred.verdict)
        return counts, judged, pred, status

    start = time.perf_counter()
    counts, judged, pred, status = drift()
    run_s = time.perf_counter() - start
    warm = []
    for _ in range(warm_calls):
        start = time.perf_counter()
        drift()
        warm.append(time.perf_counter() - start)

    # Monitor state: the count vectors (int64) and the null counter of each feature, for
    # this window of all current rows and for a window of 1,000 of them.
    small = Binner(reference).count(frame.head(1000), predictions[:1000])
    state = {
        col.name: {
            "slots": col.slots,
            "bytes": int(counts.columns[col.name].nbytes) + 8,
            "bytes_1k_rows": int(small.columns[col.name].nbytes) + 8,
        }
        for col in reference.features
    }
    return {
        "import_s": import_s,
        "read_s": read_s,
        "reference_s": reference_s,
        "frame_s": frame_s,
        "run_s": run_s,
        "warm_s": harness.median(warm),
        "rows": [reference_table.num_rows, current_table.num_rows],
        "status": status,
        "prediction": {"value": pred.value, "verdict": pred.verdict},
        "columns": {
            name: {
                "method": v.method,
                "value": v.value,
                "verdict": v.verdict,
                "drift": v.verdict == "drift",
                "statistics": values,
            }
            for name, (v, values) in judged.items()
        },
        "state": state,
    }


# ----------------------------------------------------------------------------------------
# Parent: alternate the two sides, summarise
# ----------------------------------------------------------------------------------------


def find_uv(explicit: str | None) -> str:
    for candidate in (explicit, shutil.which("uv"), str(HERE.parent / ".tools" / "bin" / "uv")):
        if candidate and Path(candidate).exists():
            return candidate
    sys.exit("uv not found: pass --uv or run `make setup` (it installs .tools/bin/uv)")


def evidently_python(uv: str, *args: str) -> list[str]:
    """A command running Python in Evidently's own environment (kept in uv's cache)."""
    cmd = [uv, "run", "--no-project", "--isolated"]
    for requirement in EVIDENTLY_REQUIREMENTS:
        cmd += ["--with", requirement]
    return [*cmd, "python", *args]


def run_side(
    side: str, paths: dict[str, Path], uv: str, work: Path, max_wait: float
) -> dict[str, Any]:
    out = work / f"{side}.json"
    if side == "evidently":
        script = [str(HERE / "evidently_drift.py"), str(paths["reference"]), str(paths["current"])]
        cmd = evidently_python(uv, *script, str(out))
    else:
        cmd = [sys.executable, __file__, "--one", "mlfleet"]
        cmd += ["--reference", str(paths["reference"]), "--current", str(paths["current"])]
        cmd += ["--result", str(out)]
    busy = harness.wait_quiet(25.0, max_wait)
    proc, usage = harness.run_measured(cmd, cwd=work)
    if proc.returncode != 0:
        sys.exit(f"{side} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    result["wall_s"] = usage.wall_s
    result["host_busy_before_pct"] = busy
    result.update(
        {"cpu_s": usage.cpu_s, "peak_mb": usage.peak_mb, "foreign_cpu_s": usage.foreign_cpu_s}
    )
    return result


def agreement(a: dict[str, bool], b: dict[str, bool]) -> dict[str, Any]:
    names = sorted(a)
    same = [n for n in names if a[n] == b.get(n)]
    return {
        "agree": len(same),
        "of": len(names),
        "share": len(same) / len(names),
        "differ": [n for n in names if n not in same],
    }


def shifted_found(truth: dict[str, bool], verdicts: dict[str, bool]) -> dict[str, Any]:
    """Recall on the shifted features and specificity on the others."""
    shifted = [n for n, s in truth.items() if s]
    steady = [n for n, s in truth.items() if not s]
    return {
        "shifted_found": sum(verdicts[n] for n in shifted),
        "shifted": len(shifted),
        "steady_kept": sum(not verdicts[n] for n in steady),
        "steady": len(steady),
    }


def method_agreement(columns: dict[str, Any]) -> dict[str, Any]:
    """Each registered method at its default thresholds, on the same statistics, vs truth."""
    from mlfleet.monitoring.stats import get_method, method_names

    out: dict[str, Any] = {}
    for name in method_names():
        method = get_method(name)
        verdicts = {
            feature: method.verdict(c["statistics"][name]) == "drift"
            for feature, c in columns.items()
            if c["statistics"].get(name) is not None
        }
        truth = {feature: TRUTH[feature] for feature in verdicts}
        out[name] = {**agreement(truth, verdicts), **shifted_found(truth, verdicts)}
    return out


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    def med(side: str, key: str) -> float:
        return harness.median([r[side][key] for r in rounds])

    def per_round(fn: Any) -> list[float]:
        return [fn(r["evidently"], r["mlfleet"]) for r in rounds]

    speedups = per_round(lambda e, m: e["run_s"] / m["run_s"])
    warm = per_round(lambda e, m: e["run_s"] / m["warm_s"])
    with_imports = per_round(
        lambda e, m: (e["import_s"] + e["run_s"]) / (m["import_s"] + m["run_s"])
    )
    last = rounds[-1]
    ml = {n: c["drift"] for n, c in last["mlfleet"]["columns"].items()}
    ev = {n: bool(c["drift"]) for n, c in last["evidently"]["columns"].items()}
    stable = all(
        {n: c["drift"] for n, c in r["mlfleet"]["columns"].items()} == ml
        and {n: bool(c["drift"]) for n, c in r["evidently"]["columns"].items()} == ev
        for r in rounds
    )
    state = last["mlfleet"]["state"]
    return {
        "speedup": harness.median(speedups),
        "speedup_per_round": speedups,
        "speedup_warm": harness.median(warm),
        "speedup_with_imports": harness.median(with_imports),
        "mlfleet_drift_s": med("mlfleet", "run_s"),
        "mlfleet_drift_warm_s": med("mlfleet", "warm_s"),
        "mlfleet_import_s": med("mlfleet", "import_s"),
        "mlfleet_reference_s": med("mlfleet", "reference_s"),
        "mlfleet_frame_s": med("mlfleet", "frame_s"),
        "evidently_run_s": med("evidently", "run_s"),
        "evidently_import_s": med("evidently", "import_s"),
        # The whole process (imports and Parquet reads included), as harness.py measures it.
        "mlfleet_peak_mb": med("mlfleet", "peak_mb"),
        "evidently_peak_mb": med("evidently", "peak_mb"),
        "mlfleet_process_cpu_s": med("mlfleet", "cpu_s"),
        "evidently_process_cpu_s": med("evidently", "cpu_s"),
        "verdicts_stable_across_rounds": stable,
        "mlfleet_vs_truth": agreement(TRUTH, ml),
        "evidently_vs_truth": agreement(TRUTH, ev),
        "mlfleet_vs_evidently": agreement(ev, ml),
        "mlfleet_shifts": shifted_found(TRUTH, ml),
        "evidently_shifts": shifted_found(TRUTH, ev),
        "mlfleet_by_method": method_agreement(last["mlfleet"]["columns"]),
        "mlfleet_status": last["mlfleet"]["status"],
        "evidently_dataset": last["evidently"]["dataset"],
        "state_bytes_per_feature_max": max(s["bytes"] for s in state.values()),
        "state_bytes_per_feature_mean": statistics.fmean(s["bytes"] for s in state.values()),
        "state_same_at_1k_rows": all(s["bytes"] == s["bytes_1k_rows"] for s in state.values()),
        "state_bytes_per_feature_10_buckets_max": 10 * max(s["bytes"] for s in state.values()),
    }


def _drift_word(drift: Any) -> str:
    return "drift" if drift else "ok"


def print_report(summary: dict[str, Any], last: dict[str, Any]) -> None:
    ml, ev = last["mlfleet"]["columns"], last["evidently"]["columns"]
    print(f"\n{'feature':18} {'truth':>6} {'psi':>8} {'mlfleet':>9}   {'evidently':>24} {'':>6}")
    for name, _, shifted, _ in FEATURES:
        m, e = ml[name], ev.get(name, {})
        method = str(e.get("method", "?")).split(" (")[0][:16]
        print(
            f"{name:18} {'shift' if shifted else '-':>6} {m['value']:8.4f} {m['verdict']:>9}   "
            f"{method:>16} {e.get('value', float('nan')):7.4f} {_drift_word(e.get('drift')):>6}"
        )
    s = summary
    print(
        f"\nmlfleet drift {s['mlfleet_drift_s'] * 1000:.1f} ms"
        f" (warm {s['mlfleet_drift_warm_s'] * 1000:.1f} ms;"
        f" reference built once in {s['mlfleet_reference_s']:.2f} s;"
        f" import {s['mlfleet_import_s']:.2f} s)"
    )
    print(f"evidently run {s['evidently_run_s']:.2f} s (+ import {s['evidently_import_s']:.2f} s)")
    print(
        f"whole process: mlfleet peak {s['mlfleet_peak_mb']:,.0f} MB, "
        f"{s['mlfleet_process_cpu_s']:.1f} CPU s; evidently peak {s['evidently_peak_mb']:,.0f} MB,"
        f" {s['evidently_process_cpu_s']:.1f} CPU s"
    )
    print(
        f"speedup {s['speedup']:.0f}x (warm {s['speedup_warm']:.0f}x; with imports "
        f"{s['speedup_with_imports']:.1f}x)"
    )
    for key in ("mlfleet_vs_truth", "evidently_vs_truth", "mlfleet_vs_evidently"):
        a = s[key]
        print(f"{key:22} {a['agree']}/{a['of']}  differ: {', '.join(a['differ']) or '-'}")
    for key in ("mlfleet_shifts", "evidently_shifts"):
        f = s[key]
        print(
            f"{key:22} shifted found {f['shifted_found']}/{f['shifted']},"
            f" unshifted kept {f['steady_kept']}/{f['steady']}"
        )
    for name, a in s["mlfleet_by_method"].items():
        print(
            f"  method {name:14} vs truth {a['agree']}/{a['of']}"
            f"  differ: {', '.join(a['differ']) or '-'}"
        )
    print(
        f"state per feature: max {s['state_bytes_per_feature_max']} B "
        f"(10 one-minute buckets: {s['state_bytes_per_feature_10_buckets_max']} B)"
    )


def versions_info() -> dict[str, str]:
    from importlib.metadata import version

    modules = ("numpy", "pandas", "pyarrow", "scipy", "scikit-learn")
    return {"python": sys.version.split()[0], **{m: version(m) for m in modules}}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=100_000, help="rows in each frame")
    ap.add_argument("--repeats", type=int, default=3, help="rounds of (Evidently, mlfleet)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 20k rows, 1 round")
    ap.add_argument("--uv", help="the uv that runs Evidently's environment")
    ap.add_argument(
        "--max-wait", type=float, default=120.0, help="wait up to this long (s) for a quiet host"
    )
    ap.add_argument("--out", type=Path, help="results JSON (default: results/bench_drift.json)")
    ap.add_argument("--one", choices=["mlfleet"], help=argparse.SUPPRESS)
    ap.add_argument("--reference", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--current", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.one == "mlfleet":
        args.result.write_text(json.dumps(run_mlfleet(args.reference, args.current)))
        return
    if args.quick:
        args.rows, args.repeats = 20_000, 1
    # Quick (smoke) results stay beside the generated data, out of git.
    out = args.out or (DATA_DIR / "bench_drift_quick.json" if args.quick else RESULTS_FILE)
    uv = find_uv(args.uv)
    paths = generate(args.rows)
    print(f"data: {paths['reference'].name}, {paths['current'].name} ({args.rows} rows each)")
    print(f"versions: {versions_info()}; cpus={os.cpu_count()}; git {harness.git_head()}")
    # Evidently's environment: created (or found in uv's cache) before anything is timed.
    subprocess.run(
        evidently_python(uv, "-c", "import evidently"), check=True, cwd=tempfile.gettempdir()
    )
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_drift_") as tmp:
        for i, side in harness.rounds(("evidently", "mlfleet"), args.repeats):
            if len(rounds) < i:
                rounds.append({})
            work = Path(tmp) / f"{i}"
            work.mkdir(exist_ok=True)
            r = rounds[-1][side] = run_side(side, paths, uv, work, args.max_wait)
            print(
                f"round {i} {side:9} run {r['run_s']:.3f} s import {r['import_s']:.2f} s, "
                f"peak {r['peak_mb']:,.0f} MB (host busy before: {r['host_busy_before_pct']:.0f}%)"
            )
    summary = summarise(rounds)
    print_report(summary, rounds[-1])
    last = rounds[-1]
    result = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "environment": {
            "mlfleet": versions_info(),
            "evidently": {k: last["evidently"][k] for k in ("evidently", "pandas", "python")},
            "cpus": os.cpu_count(),
            "git_head": harness.git_head(),
        },
        "shape": {"rows": args.rows, "features": len(FEATURES), "repeats": args.repeats},
        "time_method": (
            "fresh process per measurement, alternating Evidently / mlfleet; medians over rounds."
            " mlfleet = Binner.count of the current model frame + predictions, all statistics,"
            " PSI verdicts and model status (first call; warm = median of 5 more); Evidently ="
            " Report([DataDriftPreset()]).run + snapshot.dict(). Imports and Parquet reads apart;"
            " mlfleet's reference (profile + build_reference) timed apart, as training does it."
        ),
        "state_method": "int64 count vector + null counter per feature in one window",
        "summary": summary,
        "truth": {name: {"shifted": s, "what": w} for name, _, s, w in FEATURES},
        "verdicts": {
            name: {
                "truth": TRUTH[name],
                "mlfleet": last["mlfleet"]["columns"][name],
                "evidently": last["evidently"]["columns"].get(name),
            }
            for name in TRUTH
        },
        "rounds": [
            {
                side: {k: v for k, v in r[side].items() if k not in ("columns", "state")}
                for side in r
            }
            for r in rounds
        ],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
