"""Whole processes, as a user waits for them: mlfleet's CLI against the scripts it replaces.

Every measurement is one fresh process, timed from its start to its end with its whole
process tree (``harness.run_measured``); imports, Ray start-up or joining, writing and
exiting are all inside. Contenders run in turn within each round (A B C D, A B C D, ...),
medians over rounds.

Validation, for each dataset and size (Parquet files):
  embedded  ``mlfleet data validate --engine ray``, no head running: Ray starts with the
            command and stops with it.
  warm      ``--engine ray`` with mlfleet's own head running (``cluster.start_head``, as
            ``mlfleet serve up`` starts it): the command joins it.
  auto      ``--engine auto`` with that head running: in process below
            MLFLEET_VALIDATE_LOCAL_MAX_BYTES, on the head above it.
  pandera   the pandera script of bench_validate.py (read, parse, lazy checks, split, write
            valid + invalid + failure cases), as its own process, imports included.
  Datasets: ``messy``, bench_validate.py's 20 columns with faults of every kind; ``plain``,
  6 clean numeric columns with a few range faults and duplicate keys.
  Each mlfleet run gets a fresh MLFLEET_HOME (so no run reuses another's version); the head
  is recorded in each.

Training, ``specs/penguins`` on the warm head:
  train     ``mlfleet train specs/penguins/model.yaml --json``, run by the head's warm
            trainer (untimed runs first: the dataset version and MLflow's store exist, as for
            any later training, and the first training started the trainer); its own step
            timings give the search time, so ``over_search = wall - search``.
  local     the same with MLFLEET_WARM_TRAINER=false: the command trains in its own process.
  plain     benchmarks/plain_train.py: RandomizedSearchCV, 8 configurations, 3-fold,
            n_jobs=2, on the same three sources, imports included.

Targets (issue 13): validation wall <= 1.2 x pandera's at every size (auto), a 10k-row file
under 1.5 s (auto), train <= 2 s over its search and <= 1.5 x the plain script.

Usage:
  python benchmarks/bench_cli.py --quick        # 1k, 10k, 100k rows; 2 rounds (a smoke run)
  python benchmarks/bench_cli.py                # 1k, 10k, 100k, 1M, 5M rows; 3 rounds
  python benchmarks/bench_cli.py --rows 1000 10000 --datasets plain --no-train
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import bench_validate
import harness
import yaml

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / "data"
RESULTS = HERE / "results" / "bench_cli.json"
PY = sys.executable
MLFLEET = [PY, "-m", "mlfleet.cli.main"]  # what the `mlfleet` console script runs
PENGUINS = harness.REPO / "specs" / "penguins" / "model.yaml"
VALIDATORS = ["embedded", "warm", "auto", "pandera"]
TARGET_VALIDATE_RATIO = 1.2
TARGET_10K_S = 1.5
TARGET_OVER_SEARCH_S = 2.0
TARGET_TRAIN_RATIO = 1.5

PLAIN_CONTRACT: dict[str, Any] = {
    "name": "plain",
    "keys": ["id"],
    "columns": [
        {"name": "id", "type": "int"},
        {"name": "quantity", "type": "int", "min": 0, "max": 1000},
        {"name": "price", "type": "float", "min": 0},
        {"name": "ratio", "type": "float", "min": 0, "max": 1},
        {"name": "delta", "type": "int", "min": -1000, "max": 1000, "nullable": True},
        {"name": "weight", "type": "float", "nullable": True},
    ],
}


# ----------------------------------------------------------------------------------------
# Data: bench_validate.py's messy set, and a plain numeric one
# ----------------------------------------------------------------------------------------


def plain_path(rows: int) -> Path:
    return DATA_DIR / f"plain_{rows}.parquet"


def generate_plain(rows: int, seed: int = 42) -> None:
    """6 numeric columns: ~0.1% out-of-range values per checked column, ~0.2% repeated ids."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = plain_path(rows)
    if path.exists():
        return
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = np.arange(1, rows + 1, dtype=np.int64)
    dup = rng.random(rows) < 0.002
    dup[0] = False
    ids[dup] = rng.integers(1, max(rows // 2, 2), int(dup.sum()))
    quantity = rng.integers(0, 1001, rows)
    quantity[rng.random(rows) < 0.001] = 5000
    price = np.round(rng.gamma(2.0, 20.0, rows), 2)
    price[rng.random(rows) < 0.001] = -1.0
    ratio = rng.random(rows)
    ratio[rng.random(rows) < 0.001] = 1.5
    delta = rng.integers(-1000, 1001, rows)
    weight = rng.normal(70, 10, rows)
    table = pa.table(
        {
            "id": ids,
            "quantity": quantity.astype(np.int64),
            "price": price,
            "ratio": ratio,
            "delta": pa.array(delta.astype(np.int64), mask=rng.random(rows) < 0.05),
            "weight": pa.array(weight, mask=rng.random(rows) < 0.05),
        }
    )
    pq.write_table(table, path)


def build_plain_schema() -> Any:
    """The pandera schema of the plain set: the same checks as PLAIN_CONTRACT."""
    import pandera.pandas as pa

    C = pa.Check
    return pa.DataFrameSchema(
        {
            "id": pa.Column("int64", unique=True, report_duplicates="exclude_first"),
            "quantity": pa.Column("int64", C.in_range(0, 1000)),
            "price": pa.Column("float64", C.ge(0)),
            "ratio": pa.Column("float64", C.in_range(0, 1)),
            "delta": pa.Column("Int64", C.in_range(-1000, 1000), nullable=True, coerce=True),
            "weight": pa.Column("float64", nullable=True),
        },
        strict=True,
    )


def dataset(name: str, rows: int) -> tuple[Path, dict[str, Any]]:
    """(Parquet file, contract) of a dataset, generated on first use."""
    if name == "plain":
        generate_plain(rows)
        return plain_path(rows), PLAIN_CONTRACT
    bench_validate.generate(rows)
    return bench_validate.data_paths(rows)["parquet"], bench_validate.CONTRACT


# ----------------------------------------------------------------------------------------
# One process per measurement
# ----------------------------------------------------------------------------------------


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLEET_")}
    env.pop("RAY_ADDRESS", None)
    return env


def fresh_home(root: Path, head_record: Path | None) -> Path:
    """An empty MLFLEET_HOME; with ``head_record``, one that knows the warm head."""
    home = Path(tempfile.mkdtemp(prefix="home-", dir=root))
    if head_record is not None:
        (home / "cluster").mkdir()
        shutil.copy(head_record, home / "cluster" / head_record.name)
    return home


def validate_once(
    who: str, data: Path, contract: Path, root: Path, head_record: Path
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"{who}-", dir=root))
    try:
        if who == "pandera":
            plain = "--plain" if data.name.startswith("plain_") else "--messy"
            cmd = [PY, __file__, "--one-pandera", str(data), str(work), plain]
            proc, usage = harness.run_measured(cmd, env=base_env(), cwd=harness.REPO)
            engine = "pandera"
        else:
            home = fresh_home(work, None if who == "embedded" else head_record)
            engine_flag = "auto" if who == "auto" else "ray"
            cmd = [*MLFLEET, "data", "validate", "--contract", str(contract), str(data)]
            cmd += ["--max-quarantine-fraction", "1", "--json", "--engine", engine_flag]
            env = {**base_env(), "MLFLEET_HOME": str(home)}
            proc, usage = harness.run_measured(cmd, env=env, cwd=harness.REPO)
            engine = json.loads(proc.stdout)["timings"]["engine"] if proc.returncode == 0 else "?"
        if proc.returncode != 0:
            raise RuntimeError(f"{who} failed: {proc.stderr[-2000:]}")
        return {"wall_s": usage.wall_s, "engine": engine, "noise": usage.foreign_cpu_frac}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def train_once(who: str, home: Path) -> dict[str, Any]:
    """One training: ``train`` on the warm head (the warm trainer when it is up), ``local``
    the same command with MLFLEET_WARM_TRAINER=false (in its own process), or ``plain``."""
    if who == "plain":
        cmd = [PY, str(HERE / "plain_train.py")]
        proc, usage = harness.run_measured(cmd, env=base_env(), cwd=harness.REPO)
        if proc.returncode != 0:
            raise RuntimeError(f"plain_train failed: {proc.stderr[-2000:]}")
        return {"wall_s": usage.wall_s, "noise": usage.foreign_cpu_frac}
    env = {**base_env(), "MLFLEET_HOME": str(home)}
    env["MLFLEET_WARM_TRAINER"] = "false" if who == "local" else "true"
    cmd = [*MLFLEET, "train", str(PENGUINS), "--json"]
    proc, usage = harness.run_measured(cmd, env=env, cwd=harness.REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"mlfleet train failed: {proc.stderr[-2000:]}")
    result = json.loads(proc.stdout)
    steps = result["steps_s"]
    return {
        "trainer": result["trainer"],
        "wall_s": usage.wall_s,
        "search_s": steps["search"],
        "over_search_s": usage.wall_s - steps["search"],
        "steps_s": steps,
        "noise": usage.foreign_cpu_frac,
    }


# ----------------------------------------------------------------------------------------
# The warm head
# ----------------------------------------------------------------------------------------


def start_head(root: Path) -> tuple[Any, Any, Path]:
    """mlfleet's own head (as `serve up` starts it), recorded under ``root/head-home``."""
    from mlfleet import cluster
    from mlfleet.ray_runtime import prepare_ray_env
    from mlfleet.settings import get_settings

    prepare_ray_env()
    settings = get_settings(home=root / "head-home")
    state = cluster.start_head(settings)
    return cluster, state, settings.home / "cluster" / cluster.STATE_FILE


# ----------------------------------------------------------------------------------------
# Summary
# ----------------------------------------------------------------------------------------


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    med = harness.median
    table = []
    keys = sorted({(r["dataset"], r["rows"]) for r in runs if r["kind"] == "validate"})
    for name, rows in keys:
        mine = [r for r in runs if (r.get("dataset"), r.get("rows")) == (name, rows)]
        entry: dict[str, Any] = {"dataset": name, "rows": rows}
        for who in VALIDATORS:
            entry[f"{who}_s"] = round(med(r["wall_s"] for r in mine if r["who"] == who), 3)
        entry["auto_engine"] = sorted({r["engine"] for r in mine if r["who"] == "auto"})
        pairs = harness.per_round(mine, "wall_s", "auto", "pandera", who="who")
        entry["auto_over_pandera"] = round(med(a / b for a, b in pairs), 3)
        entry["target_met"] = entry["auto_over_pandera"] <= TARGET_VALIDATE_RATIO
        if rows == 10_000:
            entry["target_10k_met"] = entry["auto_s"] < TARGET_10K_S
        table.append(entry)
    train = [r for r in runs if r["kind"] == "train"]
    out: dict[str, Any] = {"validate": table}
    if train:
        pairs = harness.per_round(train, "wall_s", "train", "plain", who="who")
        mine = [r for r in train if r["who"] == "train"]
        local = [r for r in train if r["who"] == "local"]
        over = med(r["over_search_s"] for r in mine)
        ratio = med(a / b for a, b in pairs)
        out["train"] = {
            "trainers": sorted({r["trainer"] for r in mine}),
            "train_s": round(med(r["wall_s"] for r in mine), 3),
            "search_s": round(med(r["search_s"] for r in mine), 3),
            "over_search_s": round(over, 3),
            "steps_s": {
                k: round(med(r["steps_s"][k] for r in mine), 3) for k in mine[0]["steps_s"]
            },
            "local_s": round(med(r["wall_s"] for r in local), 3),
            "local_search_s": round(med(r["search_s"] for r in local), 3),
            "local_over_search_s": round(med(r["over_search_s"] for r in local), 3),
            "plain_s": round(med(r["wall_s"] for r in train if r["who"] == "plain"), 3),
            "train_over_plain": round(ratio, 3),
            "target_over_search_met": over <= TARGET_OVER_SEARCH_S,
            "target_ratio_met": ratio <= TARGET_TRAIN_RATIO,
        }
    return out


def print_summary(summary: dict[str, Any]) -> None:
    print("\n| dataset | rows | pandera | embedded | warm head | auto (engine) | auto / pandera |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for e in summary["validate"]:
        ok = "ok" if e["target_met"] else "MISSED"
        print(
            f"| {e['dataset']} | {e['rows']:,} | {e['pandera_s']:.2f} s | {e['embedded_s']:.2f} s "
            f"| {e['warm_s']:.2f} s | {e['auto_s']:.2f} s ({'/'.join(e['auto_engine'])}) "
            f"| {e['auto_over_pandera']:.2f}x {ok} |"
        )
    t = summary.get("train")
    if t:
        print(
            f"\ntrain (warm head, {'/'.join(t['trainers'])} trainer) {t['train_s']:.2f} s, search "
            f"{t['search_s']:.2f} s, over the search {t['over_search_s']:.2f} s (target <= "
            f"{TARGET_OVER_SEARCH_S}); in the command's process {t['local_s']:.2f} s, over its "
            f"search {t['local_over_search_s']:.2f} s; plain "
            f"script {t['plain_s']:.2f} s, ratio {t['train_over_plain']:.2f}x (target <= "
            f"{TARGET_TRAIN_RATIO}); steps {t['steps_s']}"
        )


# ----------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument(
        "--rows", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000, 5_000_000]
    )
    ap.add_argument("--datasets", nargs="+", choices=["plain", "messy"], default=["plain", "messy"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1k, 10k, 100k rows, 2 rounds")
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--no-wait", action="store_true", help="do not wait for a quiet host")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--one-pandera", nargs=2, type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--messy", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one_pandera:  # a child process: the pandera script, imports included
        data, work = args.one_pandera
        bench_validate.run_pandera(data, work, build_plain_schema if args.plain else None)
        return
    if args.quick:
        args.rows, args.rounds = [1_000, 10_000, 100_000], 2
    out = args.out or (RESULTS.with_name("bench_cli_quick.json") if args.quick else RESULTS)

    root = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    cluster, head, record = start_head(root)
    runs: list[dict[str, Any]] = []
    try:
        contracts = {}
        for name in args.datasets:
            contract = PLAIN_CONTRACT if name == "plain" else bench_validate.CONTRACT
            contracts[name] = root / f"{name}.yaml"
            contracts[name].write_text(yaml.safe_dump(contract))
        for name in args.datasets:
            for rows in args.rows:
                data, _ = dataset(name, rows)
                # Untimed: the head's first driver gets prestarted workers; page cache.
                validate_once("warm", data, contracts[name], root, record)
                for rnd, who in harness.rounds(VALIDATORS, args.rounds):
                    if not args.no_wait:
                        harness.wait_quiet()
                    r = validate_once(who, data, contracts[name], root, record)
                    runs.append(
                        {
                            "kind": "validate",
                            "dataset": name,
                            "rows": rows,
                            "round": rnd,
                            "who": who,
                            **r,
                        }
                    )
                    print(
                        f"{name} {rows:>9,} round {rnd} {who:<8} {r['wall_s']:6.2f} s "
                        f"({r['engine']}, noise {r['noise']:.0%})",
                        flush=True,
                    )
        if not args.no_train:
            home = fresh_home(root, record)
            # Untimed: the dataset version and MLflow's store exist, and the first training
            # on the head starts the warm trainer, which takes the next ones once it is up.
            for _ in range(10):
                if train_once("train", home)["trainer"] == "warm":
                    break
            for rnd, who in harness.rounds(["train", "local", "plain"], args.rounds):
                if not args.no_wait:
                    harness.wait_quiet()
                r = train_once(who, home)
                runs.append({"kind": "train", "round": rnd, "who": who, **r})
                extra = "" if who == "plain" else f", search {r['search_s']:.2f} s ({r['trainer']})"
                print(
                    f"train round {rnd} {who:<6} {r['wall_s']:6.2f} s{extra} "
                    f"(noise {r['noise']:.0%})",
                    flush=True,
                )
    finally:
        cluster.stop_head(head)
        shutil.rmtree(root, ignore_errors=True)
    summary = summarise(runs)
    print_summary(summary)
    doc = {
        "environment": harness.environment(
            ["mlfleet", "ray", "mlflow", "pandera", "pandas", "scikit-learn"]
        ),
        "quick": args.quick,
        "rounds": args.rounds,
        "targets": {
            "validate_over_pandera": TARGET_VALIDATE_RATIO,
            "validate_10k_s": TARGET_10K_S,
            "train_over_search_s": TARGET_OVER_SEARCH_S,
            "train_over_plain": TARGET_TRAIN_RATIO,
        },
        "summary": summary,
        "runs": runs,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
