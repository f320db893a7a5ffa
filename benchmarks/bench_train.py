"""Side-by-side benchmark: mlfleet's Tune search vs scikit-learn's own searches.

The same concrete candidate configurations (``sample_configs`` of one model spec: 16 by
default, mixing HistGradientBoosting, RandomForest and LogisticRegression) on the same
classification data (50k rows x 20 features, Parquet, with a contract and a model spec),
searched by three contenders in one process, alternately, round after round:

  mlfleet   ``run_search`` (Ray Tune, ASHA on 1/8 .. 1 of the fit split, scored on the inner
            validation split, 2 concurrent trials of 1 CPU) + ``best_outcome`` + refit of the
            best on the full training split + holdout score. This is the like-for-like part.
  rscv      ``RandomizedSearchCV(n_iter=N, cv=3, n_jobs=2)`` over the same N configurations
            (a list of N single-point dicts: all-list distributions are sampled WITHOUT
            replacement, so it tries exactly those N), refit=True, holdout score.
  halving   ``HalvingRandomSearchCV(n_candidates=N, resource="n_samples", factor=2, cv=3,
            n_jobs=2, min_resources="exhaust")`` over the same list (N, N/2, ... candidates on
            growing subsamples, the last one on the whole training split), refit, holdout.
  train     (information only) mlfleet's whole ``train()``: data validation (Ray Data),
            the same search, refit, holdout, MLflow logging + registration + promotion gate,
            with a fresh MLFLEET home per run (no data-version cache, empty registry).

Every contender runs the same sklearn Pipeline (``build_pipeline`` of the contract), is handed
the same training split and scored on the same holdout split (``split`` of training/run.py
with the spec's seed and test fraction, on the same ``feature_frame``), so the holdout scores
compare. Imports and data loading are outside the timings; Ray's start-up (``ensure_ray``,
once per process, before the first round) is timed and reported apart. The first mlfleet run
pays for Tune's worker processes warming up, the first peer run for joblib's loky workers:
both are inside their timings (round 1), the medians are over all rounds.

Usage:
  python benchmarks/bench_train.py --quick          # smoke: 5k rows, 4 configs, 1 round
  python benchmarks/bench_train.py                  # 50k rows, 16 configs, 3 rounds
  python benchmarks/bench_train.py --rounds 5 --no-train

Each run also records what this process tree (the embedded Ray and joblib's workers
included) used meanwhile: CPU seconds, peak memory and the CPU the rest of the host took
(``harness.TreeMonitor``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import harness

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / "data"
RESULTS_DIR = HERE / "results"
SEED = 7
N_FEATURES = 20
TARGET_SCORE_GAP = 0.005
TARGET_TIME_RATIO = 1.0
CONTENDERS = ("mlfleet", "rscv", "halving")
LABELS = {
    "mlfleet": "mlfleet run_search+refit",
    "rscv": "RandomizedSearchCV(n_jobs=2)",
    "halving": "HalvingRandomSearchCV(n_jobs=2)",
    "train": "mlfleet train() [info]",
}

# The search space of the benchmark spec; sample_configs draws the concrete configurations
# (candidates taken in turn, so 16 samples = 6 HGB + 5 RF + 5 LR).
CANDIDATES: list[dict[str, Any]] = [
    {
        "estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
        "params": {
            "learning_rate": {"loguniform": [0.02, 0.3]},
            "max_depth": {"choice": [3, 6, None]},
            "max_iter": {"randint": [100, 300]},
            "early_stopping": False,  # max_iter is the number of trees actually grown
        },
    },
    {
        "estimator": "sklearn.ensemble.RandomForestClassifier",
        "params": {
            "n_estimators": {"randint": [50, 200]},
            "max_depth": {"choice": [8, 16, None]},
            "min_samples_leaf": {"choice": [1, 5]},
        },
    },
    {
        "estimator": "sklearn.linear_model.LogisticRegression",
        "params": {"C": {"loguniform": [0.001, 10.0]}, "max_iter": 1000},
    },
]


# --------------------------------------------------------------------------------------------
# Data, contract and spec
# --------------------------------------------------------------------------------------------


def make_dataset(folder: Path, rows: int, num_samples: int, metric: str) -> Path:
    """Write data.parquet, contract.yaml and model.yaml into ``folder``; returns the spec path.

    make_classification (seeded): 20 features, 8 informative, 4 redundant, 2 clusters per
    class, 3% flipped labels; two informative columns binned into categories (one of them
    nullable), ~1% NaN in three numeric columns.
    """
    import numpy as np
    import pandas as pd
    import yaml
    from sklearn.datasets import make_classification

    spec_path = folder / "model.yaml"
    stamp = folder / ".params.json"
    wanted = {"rows": rows, "num_samples": num_samples, "metric": metric, "seed": SEED, "v": 2}
    if spec_path.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        return spec_path
    folder.mkdir(parents=True, exist_ok=True)
    X, y = make_classification(
        n_samples=rows,
        n_features=N_FEATURES,
        n_informative=8,
        n_redundant=4,
        n_repeated=0,
        n_clusters_per_class=2,
        class_sep=0.8,
        flip_y=0.03,
        shuffle=True,
        random_state=SEED,
    )
    rng = np.random.default_rng(SEED)
    frame = pd.DataFrame({"id": np.arange(rows, dtype=np.int64)})
    # shuffle=True puts the informative columns at random positions; find two of them
    # (largest |corr| with y) to bin into categories so the categories carry signal.
    corr = np.abs([np.corrcoef(X[:, j], y)[0, 1] for j in range(N_FEATURES)])
    cat_cols = [int(j) for j in np.argsort(-corr)[:2]]
    region_values = ["north", "south", "east", "west", "central"]
    tier_values = ["bronze", "silver", "gold", "platinum"]
    columns: list[dict[str, Any]] = [{"name": "id", "type": "int"}]
    for j in range(N_FEATURES):
        if j == cat_cols[0]:
            bins = np.quantile(X[:, j], [0.2, 0.4, 0.6, 0.8])
            frame["region"] = np.asarray(region_values)[np.digitize(X[:, j], bins)]
            columns.append({"name": "region", "type": "category", "values": region_values})
        elif j == cat_cols[1]:
            bins = np.quantile(X[:, j], [0.25, 0.5, 0.75])
            tier = pd.Series(np.asarray(tier_values)[np.digitize(X[:, j], bins)], dtype=object)
            tier[rng.random(rows) < 0.01] = None
            frame["tier"] = tier
            columns.append(
                {"name": "tier", "type": "category", "values": tier_values, "nullable": True}
            )
        else:
            name = f"x{j:02d}"
            values = X[:, j].astype(np.float64)
            nullable = j % 6 == 1  # three numeric columns with ~1% NaN
            if nullable:
                values[rng.random(rows) < 0.01] = np.nan
            frame[name] = values
            col = {"name": name, "type": "float"}
            if nullable:
                col["nullable"] = True
            columns.append(col)
    frame["label"] = np.where(y == 1, "yes", "no")
    columns.append({"name": "label", "type": "category", "values": ["no", "yes"]})
    frame.to_parquet(folder / "data.parquet", index=False)

    contract = {"name": "bench-train", "target": "label", "keys": ["id"], "columns": columns}
    (folder / "contract.yaml").write_text(
        "# Generated by benchmarks/bench_train.py\n" + yaml.safe_dump(contract, sort_keys=False)
    )
    spec = {
        "name": "bench-train",
        "contract": "contract.yaml",
        "sources": ["data.parquet"],
        "task": "classification",
        "split": {"test_fraction": 0.25, "seed": SEED, "stratify": True},
        "search": {
            "metric": metric,
            "mode": "max",
            "num_samples": num_samples,
            "max_concurrent": 2,
            "scheduler": "asha",
            "candidates": CANDIDATES,
        },
        "promotion": {"min_improvement": 0.0},
    }
    spec_path.write_text(
        "# Generated by benchmarks/bench_train.py\n" + yaml.safe_dump(spec, sort_keys=False)
    )
    stamp.write_text(json.dumps(wanted))
    return spec_path


def load_splits(loaded: Any) -> dict[str, Any]:
    """Training / fit / validation / holdout splits exactly as ``train()`` cuts them.

    The generated data is clean (nothing is quarantined), so reading the source Parquet
    gives the rows ``validate()`` would publish; ``train()`` itself reads the validated copy.
    """
    import pandas as pd

    from mlfleet.training.features import feature_frame
    from mlfleet.training.run import INNER_VALIDATION_FRACTION, split

    spec = loaded.spec
    raw = pd.read_parquet(loaded.sources[0])
    raw = raw[raw[loaded.target].notna()].reset_index(drop=True)
    X = feature_frame(raw, loaded.contract, loaded.features)
    y = raw[loaded.target]
    strat = spec.split.stratify and spec.task == "classification"
    X_train, X_hold, y_train, y_hold = split(X, y, spec.split.test_fraction, spec.split.seed, strat)
    X_fit, X_val, y_fit, y_val = split(
        X_train, y_train, INNER_VALIDATION_FRACTION, spec.split.seed + 1, strat
    )
    return {
        "X_train": X_train,
        "y_train": y_train,
        "X_hold": X_hold,
        "y_hold": y_hold,
        "X_fit": X_fit,
        "y_fit": y_fit,
        "X_val": X_val,
        "y_val": y_val,
    }


# --------------------------------------------------------------------------------------------
# Contenders
# --------------------------------------------------------------------------------------------


def describe(estimator: str, params: dict[str, Any]) -> str:
    """Short human name of a configuration."""
    short = estimator.rpartition(".")[2].replace("Classifier", "").replace("HistGradient", "HG")
    inner = ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in params.items()
        if k not in ("random_state", "early_stopping")
    )
    return f"{short}({inner})"


def run_mlfleet(
    loaded: Any, configs: list[dict[str, Any]], splits: dict[str, Any], storage: Path, tag: str
) -> dict[str, Any]:
    """run_search + best_outcome + refit on the training split + holdout score."""
    from mlfleet.training.evaluate import score
    from mlfleet.training.features import build_pipeline
    from mlfleet.training.search import run_search
    from mlfleet.training.trials import best_outcome, make_estimator

    spec = loaded.spec
    finished_at: dict[int, float] = {}
    t0 = time.perf_counter()

    def done(outcome: Any) -> None:
        finished_at[outcome.index] = time.perf_counter() - t0

    outcomes = run_search(
        contract=loaded.contract,
        features=loaded.features,
        search=spec.search,
        configs=configs,
        X_fit=splits["X_fit"],
        y_fit=splits["y_fit"],
        X_val=splits["X_val"],
        y_val=splits["y_val"],
        storage=storage,
        name=f"bench-{tag}",
        on_trial_done=done,
    )
    t_search = time.perf_counter() - t0
    best = best_outcome(outcomes, spec.search.mode)
    model = build_pipeline(
        loaded.contract,
        loaded.features,
        make_estimator({"estimator": best.estimator, "params": best.params}),
    )
    t1 = time.perf_counter()
    model.fit(splits["X_train"], splits["y_train"])
    t_refit = time.perf_counter() - t1
    holdout = score(model, splits["X_hold"], splits["y_hold"], spec.search.metric)
    wall = time.perf_counter() - t0
    rung_fits = sum(len(o.scores) for o in outcomes)
    trial_work = sum(o.seconds for o in outcomes)  # fit + validation scoring inside trials
    slots = spec.search.max_concurrent
    return {
        "wall_s": wall,
        "holdout": holdout,
        "best": describe(best.estimator, best.params),
        "best_index": best.index,
        "val_score": best.final_score,
        "search_s": t_search,
        "refit_s": t_refit,
        "score_s": wall - t_search - t_refit,
        "rung_fits": rung_fits,
        "trial_work_s": trial_work,
        # Wall of the search beyond perfectly packed trial work on `slots` workers.
        "tune_overhead_s": t_search - trial_work / slots,
        "trials_full": sum(1 for o in outcomes if o.final_fraction == 1.0),
        "errors": [o.error for o in outcomes if o.error],
        "trials": [
            {
                "index": o.index,
                "config": describe(o.estimator, o.params),
                "scores": o.scores,
                "work_s": round(o.seconds, 3),
                "done_at_s": round(finished_at.get(o.index, float("nan")), 3),
            }
            for o in outcomes
        ],
    }


def peer_space(configs: list[dict[str, Any]]) -> list[dict[str, list[Any]]]:
    """One single-point dict per configuration: the pipeline's ``model`` step itself."""
    from mlfleet.training.search import make_estimator

    return [{"model": [make_estimator(c)]} for c in configs]


def run_peer(
    kind: str, loaded: Any, configs: list[dict[str, Any]], splits: dict[str, Any]
) -> dict[str, Any]:
    """RandomizedSearchCV or HalvingRandomSearchCV over exactly ``configs``; refit; holdout."""
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import HalvingRandomSearchCV, RandomizedSearchCV

    from mlfleet.training.evaluate import score
    from mlfleet.training.features import build_pipeline
    from mlfleet.training.search import make_estimator

    spec = loaded.spec
    base = build_pipeline(loaded.contract, loaded.features, make_estimator(configs[0]))
    space = peer_space(configs)
    common = {
        "scoring": spec.search.metric,
        "cv": 3,
        "n_jobs": 2,
        "refit": True,
        "random_state": spec.split.seed,
        "error_score": "raise",
    }
    if kind == "rscv":
        search = RandomizedSearchCV(base, space, n_iter=len(configs), **common)
    else:
        search = HalvingRandomSearchCV(
            # min_resources="exhaust": the last iteration trains on the whole training split.
            # The default ("smallest": cv * 2 * n_classes = 12 samples) would end the halving
            # at 12 * 2**4 = 192 samples with 16 candidates, and pick its winner there.
            base,
            space,
            n_candidates=len(configs),
            factor=2,
            resource="n_samples",
            min_resources="exhaust",
            **common,
        )
    t0 = time.perf_counter()
    search.fit(splits["X_train"], splits["y_train"])
    t_search = time.perf_counter() - t0
    holdout = score(search.best_estimator_, splits["X_hold"], splits["y_hold"], spec.search.metric)
    wall = time.perf_counter() - t0
    tried = {repr(p["model"]) for p in search.cv_results_["params"]}
    if len(tried) != len(configs):
        raise RuntimeError(f"{kind} tried {len(tried)} distinct configurations, not {len(configs)}")
    best_index = [repr(m["model"][0]) for m in space].index(repr(search.best_params_["model"]))
    res = search.cv_results_
    fit_total = float(sum(res["mean_fit_time"])) * 3  # per-fold mean x 3 folds
    out = {
        "wall_s": wall,
        "holdout": holdout,
        "best": describe(configs[best_index]["estimator"], configs[best_index]["params"]),
        "best_index": best_index,
        "cv_score": float(search.best_score_),
        "search_s": t_search,  # includes sklearn's refit
        "refit_s": float(search.refit_time_),
        "score_s": wall - t_search,
        "fits": len(res["params"]) * 3,
        "fit_work_s": fit_total,
    }
    if kind == "halving":
        out["n_resources"] = [int(r) for r in search.n_resources_]
        out["n_candidates"] = [int(c) for c in search.n_candidates_]
    return out


def run_train(spec_path: Path, base: Path, tag: str) -> dict[str, Any]:
    """mlfleet's whole train() with a fresh home (no cached data version, empty registry)."""
    from mlfleet.settings import get_settings
    from mlfleet.spec import load_spec
    from mlfleet.training.run import train

    home = base / f"home-{tag}"
    settings = get_settings(home=home, ray_num_cpus=2)
    loaded = load_spec(spec_path)
    stages: list[tuple[str, float]] = []
    t0 = time.perf_counter()
    result = train(loaded, settings, on_stage=lambda m: stages.append((m, time.perf_counter())))
    wall = time.perf_counter() - t0
    marks = [(m, t - t0) for m, t in stages] + [("end", wall)]
    phases = {marks[i][0]: round(marks[i + 1][1] - marks[i][1], 3) for i in range(len(marks) - 1)}
    phases["before first stage"] = round(marks[0][1], 3)
    return {
        "wall_s": wall,
        "holdout": result.score,
        "best": describe(result.best["estimator"], result.best["params"]),
        "val_score": result.best["val_score"],
        "phases_s": phases,
        "trials_full": result.trials_completed,
    }


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5k rows, 4 configs, 1 round")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3; quick 1)")
    parser.add_argument("--rows", type=int, default=None, help="rows (default 50000)")
    parser.add_argument("--configs", type=int, default=None, help="configurations (default 16)")
    parser.add_argument("--metric", default="roc_auc", help="sklearn scorer (default roc_auc)")
    parser.add_argument("--no-train", action="store_true", help="skip the full train() runs")
    parser.add_argument(
        "--no-wait", action="store_true", help="do not wait for a quiet host (CPU < 25%%) first"
    )
    parser.add_argument(
        "--max-wait", type=float, default=600.0, help="longest wait for a quiet host (s)"
    )
    parser.add_argument("--out", type=Path, default=None, help="results JSON path")
    args = parser.parse_args(argv)

    rows = args.rows or (5_000 if args.quick else 50_000)
    n_configs = args.configs or (4 if args.quick else 16)
    rounds = args.rounds or (1 if args.quick else 3)
    out_path = args.out or RESULTS_DIR / (
        "bench_train_quick.json" if args.quick else "bench_train.json"
    )
    skip_wait = args.quick or args.no_wait
    busy_before = float("nan") if skip_wait else harness.wait_quiet(max_wait=args.max_wait)

    # Never join another cluster on this host: an embedded Ray of our own.
    os.environ.setdefault("RAY_ADDRESS", "local")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.getLogger("ray.tune").setLevel(logging.ERROR)

    # Imports first, outside every timing.
    import mlflow  # noqa: F401
    import ray  # noqa: F401
    import sklearn  # noqa: F401
    from ray import tune  # noqa: F401
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import HalvingRandomSearchCV  # noqa: F401

    from mlfleet.ray_runtime import ensure_ray
    from mlfleet.settings import get_settings
    from mlfleet.spec import load_spec
    from mlfleet.training import run as _run  # noqa: F401
    from mlfleet.training.space import sample_configs

    folder = DATA_DIR / ("train_quick" if args.quick else "train")
    if args.rows or args.configs:
        folder = DATA_DIR / f"train_{rows}_{n_configs}"
    spec_path = make_dataset(folder, rows, n_configs, args.metric)
    loaded = load_spec(spec_path)
    configs = sample_configs(loaded.spec.search, loaded.spec.split.seed)
    splits = load_splits(loaded)
    print(
        f"data: {rows} rows x {len(loaded.features)} features ({folder}); "
        f"train {len(splits['X_train'])} (fit {len(splits['X_fit'])} + val "
        f"{len(splits['X_val'])}), holdout {len(splits['X_hold'])}; metric "
        f"{loaded.spec.search.metric}",
        flush=True,
    )
    for i, c in enumerate(configs):
        print(f"  config {i:2d}: {describe(c['estimator'], c['params'])}")

    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    t0 = time.perf_counter()
    ensure_ray(get_settings(home=work / "home-ray", ray_num_cpus=2))
    ray_start = time.perf_counter() - t0
    print(f"Ray start-up (ensure_ray, once, not in any timing): {ray_start:.1f} s\n", flush=True)

    order = list(CONTENDERS) + ([] if args.no_train else ["train"])
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in order}
    print(f"{'round':>5}  {'contender':<34}{'wall s':>8}{'holdout':>9}  best / details")
    try:
        with harness.TreeMonitor(os.getpid(), interval=0.2) as monitor:
            for r, kind in harness.rounds(order, rounds):
                tag = f"r{r}-{kind}"
                monitor.begin()
                if kind == "mlfleet":
                    res = run_mlfleet(loaded, configs, splits, work / "tune", tag)
                    detail = (
                        f"{res['best']}; search {res['search_s']:.1f} (trial work "
                        f"{res['trial_work_s']:.1f} in {res['rung_fits']} rung fits, "
                        f"{res['trials_full']} to 1.0, overhead "
                        f"{res['tune_overhead_s']:.1f}) + refit {res['refit_s']:.1f}"
                    )
                elif kind == "train":
                    res = run_train(spec_path, work, tag)
                    detail = f"{res['best']}; " + ", ".join(
                        f"{k} {v:.1f}" for k, v in res["phases_s"].items()
                    )
                else:
                    res = run_peer(kind, loaded, configs, splits)
                    detail = (
                        f"{res['best']}; cv {res['cv_score']:.4f}, {res['fits']} fits "
                        f"({res['fit_work_s']:.1f} s fit work), refit {res['refit_s']:.1f}"
                    )
                res["round"] = r
                usage = res["usage"] = monitor.end().as_dict()
                detail += (
                    f"; cpu ours {usage['cpu_s']:.0f} s "
                    f"({100 * usage['cpu_s'] / (harness.CPUS * usage['wall_s']):.0f}% of "
                    f"{harness.CPUS} cores), foreign {usage['foreign_cpu_s']:.0f} s, "
                    f"peak {usage['peak_mb']:,.0f} MB"
                )
                runs[kind].append(res)
                print(
                    f"{r:>5}  {LABELS[kind]:<34}{res['wall_s']:>8.1f}{res['holdout']:>9.4f}"
                    f"  {detail}",
                    flush=True,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {
        k: {
            "wall_s": harness.median([x["wall_s"] for x in v]),
            "holdout": harness.median([x["holdout"] for x in v]),
        }
        for k, v in runs.items()
    }
    peers = [k for k in ("rscv", "halving")]
    fastest = min(peers, key=lambda k: med[k]["wall_s"])
    best_peer = max(peers, key=lambda k: med[k]["holdout"])
    ratio = {k: med["mlfleet"]["wall_s"] / med[k]["wall_s"] for k in peers}
    gap = med["mlfleet"]["holdout"] - med[best_peer]["holdout"]
    time_ok = ratio[fastest] <= TARGET_TIME_RATIO
    score_ok = gap >= -TARGET_SCORE_GAP
    print(f"\nmedians over {rounds} round(s):")
    print(
        f"  {'contender':<34}{'wall s':>8}{'min':>7}{'max':>7}{'holdout':>9}"
        f"{'foreign cpu s':>15}{'mlfleet/x':>11}"
    )
    for k in order:
        walls = [x["wall_s"] for x in runs[k]]
        foreign = harness.median([x["usage"]["foreign_cpu_s"] for x in runs[k]])
        rr = f"{med['mlfleet']['wall_s'] / med[k]['wall_s']:>10.2f}x" if k in peers else ""
        print(
            f"  {LABELS[k]:<34}{med[k]['wall_s']:>8.1f}{min(walls):>7.1f}{max(walls):>7.1f}"
            f"{med[k]['holdout']:>9.4f}{foreign:>15.1f}{rr}"
        )
    m = runs["mlfleet"]
    print(
        f"  mlfleet breakdown (medians): search {harness.median([x['search_s'] for x in m]):.1f} s "
        f"(trial work {harness.median([x['trial_work_s'] for x in m]):.1f} s over 2 slots, Tune "
        f"overhead {harness.median([x['tune_overhead_s'] for x in m]):.1f} s), refit "
        f"{harness.median([x['refit_s'] for x in m]):.1f} s, holdout scoring "
        f"{harness.median([x['score_s'] for x in m]):.2f} s"
    )
    print(f"  Ray start-up apart: {ray_start:.1f} s")
    print(
        f"\ntarget: holdout within {TARGET_SCORE_GAP} of the best peer ({LABELS[best_peer]}: "
        f"gap {gap:+.4f} -> {'OK' if score_ok else 'MISSED'}) in <= {TARGET_TIME_RATIO:.1f}x "
        f"the fastest peer's wall ({LABELS[fastest]}: {ratio[fastest]:.2f}x -> "
        f"{'OK' if time_ok else 'MISSED'}): {'MET' if time_ok and score_ok else 'NOT MET'}"
    )

    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(
        json.dumps(
            {
                **harness.environment(["scikit-learn", "ray", "mlflow", "pandas"]),
                "rows": rows,
                "features": len(loaded.features),
                "metric": loaded.spec.search.metric,
                "rounds": rounds,
                "host_busy_pct_before": busy_before,
                "split": {k: len(v) for k, v in splits.items() if k.startswith("X_")},
                "configs": [{"estimator": c["estimator"], "params": c["params"]} for c in configs],
                "ray_startup_s": ray_start,
                "runs": runs,
                "medians": med,
                "ratio_mlfleet_over": ratio,
                "fastest_peer": fastest,
                "best_peer": best_peer,
                "score_gap_vs_best_peer": gap,
                "target": {
                    "score_gap": TARGET_SCORE_GAP,
                    "time_ratio": TARGET_TIME_RATIO,
                    "score_ok": score_ok,
                    "time_ok": time_ok,
                    "met": time_ok and score_ok,
                },
            },
            indent=2,
            default=str,
        )
    )
    print(f"results: {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
