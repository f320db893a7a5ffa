"""A hundred models: registration, Zipf traffic through the pool, cold loads, the monitor,
the dashboard and `mlfleet models list` at that size.

1. Registers N small models (default 100): variants of the bundled datasets (scikit-learn's
   iris, wine, breast cancer and diabetes, and the Palmer penguins), each with a feature
   subset, an estimator and a seed of its own, trained through the library's public
   ``mlfleet.training.run.train`` with a one-configuration search (the first model of each
   dataset validates it; the others reuse that dataset version). Timed, in a subprocess.
   `mlfleet models list` is timed with three models registered and again with all N.
2. Serves them all from the pool (`mlfleet serve up`, API keys on, so behind HAProxy) and
   sends Zipf-distributed traffic (s = 1.1 over the models ranked at random) with wrk
   (pinned to core 1) at 32 connections for 60 s, a one-row request each, the model picked
   per request by a Lua script.
3. Warm models: the same load restricted to the models the pool keeps loaded (the most
   requested ``max_num_models_per_replica``), after they were all loaded; then again with
   4 connections and with 1 (at 32 closed-loop connections on 2 cores every request waits
   ~32 / throughput, whatever serves it; 4 already saturate the cores; 1 does not).
4. Reports p50/p99 (overall and warm), throughput, non-2xx; cold loads (how many and how long,
   as the pool replicas report them: ``ModelPool.load_stats``); memory per pool replica; the
   monitor's CPU and ``GET /v1/monitoring`` latency during the load; the dashboard's render
   time (``GET /`` with the admin key, when the gateway serves one); `models list` times;
   every replica's full garbage collections (``heap_stats`` / ``load_stats``).
5. The peer, once the fleet is down: the same warm models in a hand-written FastAPI app
   under uvicorn (``plain_fleet_app.py``), with the same traffic and connection counts.

Targets: p99 < 50 ms for warm models; a small model's cold load < 500 ms; the dashboard
renders 100 models in < 1 s; `models list` at most 0.5 s slower than with three models.

    python benchmarks/bench_fleet.py [--models 100] [--seconds 60] [--conns 32] [--quick]
                                     [--out FILE] [--no-wait]

Needs wrk (`apt-get install wrk`). Only 127.0.0.1 is ever contacted. ``--quick`` (12 models,
10 s, 8 connections) proves the bench works; its results go to bench_fleet_quick.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
import httpx
import yaml
from bench_serve import bench_env, free_port, head_pid, run_wrk, start_plain, wait_http

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "bench_fleet.json"
KEY = "mlf_bench_fleet_key_0123456789"
ZIPF_S = 1.1
LIGHT_CONNS = 4  # the warm models' latency with a few connections
# One request in flight: the warm models' latency below saturation (4 closed-loop connections
# already keep the 2 cores as busy as 32 do: about the same throughput).
SINGLE_CONN = 1
TARGETS = {
    "warm_p99_ms": 50.0,
    "cold_load_ms": 500.0,
    "dashboard_render_ms": 1000.0,
    "models_list_extra_s": 0.5,
}
CLASSIFIERS = [
    (
        "sklearn.linear_model.LogisticRegression",
        lambda r: {"C": r.choice([0.1, 1.0, 10.0]), "max_iter": 500},
    ),
    ("sklearn.tree.DecisionTreeClassifier", lambda r: {"max_depth": r.randint(2, 6)}),
    ("sklearn.naive_bayes.GaussianNB", lambda r: {}),
    ("sklearn.neighbors.KNeighborsClassifier", lambda r: {"n_neighbors": r.randint(3, 15)}),
    (
        "sklearn.ensemble.RandomForestClassifier",
        lambda r: {"n_estimators": 10, "max_depth": r.randint(2, 5)},
    ),
]
REGRESSORS = [
    ("sklearn.linear_model.Ridge", lambda r: {"alpha": r.choice([0.1, 1.0, 10.0])}),
    ("sklearn.tree.DecisionTreeRegressor", lambda r: {"max_depth": r.randint(2, 6)}),
    ("sklearn.linear_model.Lasso", lambda r: {"alpha": r.choice([0.01, 0.1, 1.0])}),
    ("sklearn.neighbors.KNeighborsRegressor", lambda r: {"n_neighbors": r.randint(3, 15)}),
    (
        "sklearn.ensemble.RandomForestRegressor",
        lambda r: {"n_estimators": 10, "max_depth": r.randint(2, 5)},
    ),
]


# --- the datasets --------------------------------------------------------------------------


def sklearn_dataset(root: Path, name: str) -> dict[str, Any]:
    """Iris or wine from scikit-learn's bundled copy: a CSV and its contract."""
    from sklearn import datasets

    bunch = (datasets.load_iris if name == "iris" else datasets.load_wine)(as_frame=True)
    frame = bunch.frame.rename(columns=lambda c: c.replace(" (cm)", "_cm").replace(" ", "_"))
    frame["label"] = [str(bunch.target_names[t]) for t in frame.pop("target")]
    folder = root / "data" / name
    folder.mkdir(parents=True)
    frame.to_csv(folder / f"{name}.csv", index=False)
    features = [c for c in frame.columns if c != "label"]
    contract = {
        "name": name,
        "target": "label",
        "columns": [{"name": c, "type": "float", "min": 0} for c in features]
        + [{"name": "label", "type": "category", "values": sorted(set(frame["label"]))}],
    }
    (folder / "contract.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    row = {c: float(frame[c].iloc[0]) for c in features}
    return {
        "contract": str(folder / "contract.yaml"),
        "sources": [str(folder / f"{name}.csv")],
        "task": "classification",
        "features": features,
        "metric": "accuracy",
        "row": row,
    }


def repo_dataset(folder: str, row: dict[str, Any]) -> dict[str, Any]:
    """One of the example fleet's datasets (specs/<folder>), its sources made absolute."""
    base = REPO / "specs" / folder
    spec = yaml.safe_load((base / "model.yaml").read_text())
    contract = yaml.safe_load((base / spec["contract"]).read_text())
    skip = {contract["target"], *contract.get("keys", []), "year"}
    features = spec.get("features") or [c["name"] for c in contract["columns"]]
    features = [f for f in features if f not in skip]
    sources = [
        s.replace("sqlite:///", f"sqlite:///{base}/") if s.startswith("sqlite") else str(base / s)
        for s in spec["sources"]
    ]
    return {
        "contract": str(base / spec["contract"]),
        "sources": sources,
        "task": spec["task"],
        "features": features,
        "metric": "accuracy" if spec["task"] == "classification" else "r2",
        "row": row,
    }


def datasets(root: Path) -> dict[str, dict[str, Any]]:
    import pandas as pd

    cancer = pd.read_parquet(REPO / "specs/breast-cancer/data/breast_cancer.parquet").iloc[0]
    diabetes = pd.read_csv(REPO / "specs/diabetes/data/diabetes.csv").iloc[0]
    out = {
        "iris": sklearn_dataset(root, "iris"),
        "wine": sklearn_dataset(root, "wine"),
        "cancer": repo_dataset("breast-cancer", {}),
        "diabetes": repo_dataset("diabetes", {}),
        "penguins": repo_dataset(
            "penguins",
            {
                "bill_length_mm": 39.1,
                "bill_depth_mm": 18.7,
                "flipper_length_mm": 181.0,
                "body_mass_g": 3750.0,
                "island": "Torgersen",
                "sex": "male",
            },
        ),
    }
    out["cancer"]["row"] = {f: float(cancer[f]) for f in out["cancer"]["features"]}
    out["diabetes"]["row"] = {f: diabetes[f].item() for f in out["diabetes"]["features"]}
    return out


def write_specs(root: Path, n: int) -> tuple[Path, dict[str, dict[str, Any]]]:
    """N model specs, each a variant (dataset, feature subset, estimator, seed); returns the
    folder and, per model, the row to send it."""
    data = datasets(root)
    names = sorted(data)
    specs = root / "specs"
    rows: dict[str, dict[str, Any]] = {}
    for i in range(n):
        r = random.Random(i)
        dataset = names[i % len(names)]
        d = data[dataset]
        k = r.randint(max(2, len(d["features"]) // 3), len(d["features"]))
        chosen = set(r.sample(d["features"], k))
        features = [f for f in d["features"] if f in chosen]
        families = CLASSIFIERS if d["task"] == "classification" else REGRESSORS
        estimator, params = families[(i // len(names)) % len(families)]
        name = f"fleet-{dataset}-{i:03d}"
        spec = {
            "name": name,
            "contract": d["contract"],
            "sources": d["sources"],
            "task": d["task"],
            "features": features,
            "split": {"test_fraction": 0.25, "seed": i},
            "search": {
                "metric": d["metric"],
                "num_samples": 1,
                "scheduler": "fifo",
                "candidates": [{"estimator": estimator, "params": params(r)}],
            },
            "serving": {"mode": "pool"},
        }
        (specs / name).mkdir(parents=True)
        (specs / name / "model.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        rows[name] = {f: d["row"][f] for f in features}
    (root / "rows.json").write_text(json.dumps(rows))
    return specs, rows


# --- registration (run in a subprocess: it starts an embedded Ray of its own) ---------------


def register(specs: Path, names: list[str]) -> None:
    """Train and register ``names``; print one JSON line of timings."""
    from mlfleet.ray_runtime import prepare_ray_env

    prepare_ray_env()  # as the CLI does, before anything imports ray
    from mlfleet.settings import get_settings
    from mlfleet.spec import load_spec
    from mlfleet.training.run import train

    settings = get_settings()
    versions_file = specs.parent / "dataset_versions.json"
    versions: dict[str, str] = (
        json.loads(versions_file.read_text()) if versions_file.exists() else {}
    )
    seconds = []
    for name in names:
        loaded = load_spec(specs / name / "model.yaml")
        dataset = loaded.contract.name
        started = time.perf_counter()
        result = train(loaded, settings, dataset_version=versions.get(dataset))
        seconds.append(time.perf_counter() - started)
        versions[dataset] = result.dataset_version
    versions_file.write_text(json.dumps(versions))
    print(json.dumps({"seconds": seconds}))


def run_register(env: dict[str, str], specs: Path, names: list[str]) -> dict[str, Any]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--register", str(specs), *names],
        env=env,
        capture_output=True,
        text=True,
        timeout=7200,
    )
    if proc.returncode != 0:
        sys.exit(f"registration failed: {proc.stderr[-3000:]}")
    seconds = json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]
    return {
        "models": len(names),
        "wall_s": round(time.perf_counter() - started, 1),
        "per_model_median_s": round(statistics.median(seconds), 2),
        "per_model_max_s": round(max(seconds), 2),
    }


def models_list_seconds(env: dict[str, str]) -> float:
    """Wall time of one `mlfleet models list` (a fresh process, as a user waits for it)."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mlfleet.cli.main", "models", "list", "--json"],
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    return time.perf_counter() - started


def snapshot_registry(home: Path, into: Path) -> str:
    """A copy of the SQLite tracking store as it is now (SQLite's online backup); its URI."""
    import sqlite3

    into.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(home / "mlflow.db")
    target = sqlite3.connect(into / "mlflow.db")
    with target:
        source.backup(target)
    source.close()
    target.close()
    return f"sqlite:///{into / 'mlflow.db'}"


def models_list_ab(env: dict[str, str], three_uri: str, rounds: int = 5) -> dict[str, Any]:
    """`models list` over the registry with three models (a snapshot taken then) and over
    the whole fleet, alternated ``rounds`` times: medians and the median per-round extra."""
    few_env = {**env, "MLFLEET_MLFLOW_TRACKING_URI": three_uri}
    few, many = [], []
    for rnd in range(rounds):
        sides = ((few, few_env), (many, env)) if rnd % 2 == 0 else ((many, env), (few, few_env))
        for times, side_env in sides:
            times.append(models_list_seconds(side_env))
    return {
        "three_models_s": round(statistics.median(few), 3),
        "fleet_s": round(statistics.median(many), 3),
        "extra_s": round(statistics.median(b - a for a, b in zip(few, many, strict=True)), 3),
        "rounds": rounds,
    }


def refresh_costs(home: Path, rounds: int = 5) -> dict[str, Any]:
    """What a gateway's periodic re-read costs at this size, in this process: the champions
    alone (``registry.champions``, every few seconds) against the whole listing
    (``registry.list_models``, when the dashboard or ``GET /v1/models`` asks), alternated."""
    from mlfleet import registry
    from mlfleet.settings import get_settings

    registry.configure(get_settings(home=home))
    registry.list_models()  # the store opened, MLflow's imports done
    calls = {"champions": registry.champions, "list_models": registry.list_models}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            cpu, wall = time.process_time(), time.perf_counter()
            call()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {
        f"{name}_{kind}_ms": round(1000 * statistics.median(t[i] for t in runs), 1)
        for name, runs in times.items()
        for i, kind in enumerate(("wall", "cpu"))
    }


# --- traffic -------------------------------------------------------------------------------


def zipf_weights(n: int) -> list[float]:
    raw = [1 / (rank**ZIPF_S) for rank in range(1, n + 1)]
    total = sum(raw)
    return [w / total for w in raw]


def lua_script(models: list[str], weights: list[float], rows: dict[str, Any]) -> Path:
    """A wrk script that picks each request's model by ``weights`` (Zipf by rank)."""
    entries, cdf = [], 0.0
    for model, weight in zip(models, weights, strict=True):
        cdf += weight
        body = json.dumps({"instances": [rows[model]]})
        entries.append(
            f"{{{cdf!r}, {json.dumps(f'/v1/models/{model}/predict')}, {json.dumps(body)}}}"
        )
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        "local models = {\n  " + ",\n  ".join(entries) + "\n}\n"
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {KEY}"\n'
        "math.randomseed(os.time())\n"
        "request = function()\n"
        "  local u = math.random()\n"
        "  for i = 1, #models do\n"
        "    local m = models[i]\n"
        "    if u <= m[1] or i == #models then\n"
        "      return wrk.format(nil, m[2], nil, m[3])\n"
        "    end\n"
        "  end\n"
        "end\n"
    )
    return script


def pool_stats(gcs: str) -> list[dict[str, Any]]:
    """Every pool replica's ``load_stats`` (asked until no new replica answers)."""
    return replica_stats(gcs, "ModelPool", "load_stats")


def gateway_heap(gcs: str) -> list[dict[str, Any]]:
    """Every gateway replica's heap settles and full collections (``heap_stats``)."""
    return replica_stats(gcs, "Gateway", "heap_stats")


def replica_stats(gcs: str, deployment: str, method: str) -> list[dict[str, Any]]:
    """``method``'s answer from every replica of ``deployment`` (asked until no new replica
    answers; replicas are told apart by their pid)."""
    code = (
        "import json\n"
        "from mlfleet.ray_runtime import connect, prepare_ray_env\n"
        "prepare_ray_env()\n"
        "from ray import serve\n"
        "from mlfleet.settings import get_settings\n"
        f"connect(get_settings(), {gcs!r})\n"
        f"h = serve.get_deployment_handle({deployment!r}, 'fleet')\n"
        "seen = {}\n"
        "for _ in range(24):\n"
        f"    s = getattr(h, {method!r}).remote().result(timeout_s=60)\n"
        "    seen[s.get('replica', s.get('pid'))] = s\n"
        "print(json.dumps(list(seen.values())))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        return [{"error": proc.stderr[-500:]}]
    return list(json.loads(proc.stdout.strip().splitlines()[-1]))


def heap_summary(stats: dict[str, Any]) -> dict[str, Any]:
    """A replica's heap stats in short: settles, frozen objects, its full collections."""
    pauses = sorted(stats.get("full_collection_ms") or [0.0])
    return {
        "settles": stats.get("settles"),
        "last_settle_ms": stats.get("last_settle_ms"),
        "frozen_objects": stats.get("frozen_objects"),
        "full_collections": stats.get("full_collections"),
        "full_collection_p50_ms": round(statistics.median(pauses), 2),
        "full_collection_max_ms": round(pauses[-1], 2),
    }


def plain_peer(
    home: Path, env: dict[str, str], models: list[str], script: Path, runs: list[tuple[int, int]]
) -> dict[str, Any]:
    """The warm models served by a hand-written FastAPI app under uvicorn (1 worker,
    ``plain_fleet_app.py``), with the same traffic at the same connection counts."""
    from mlfleet import registry
    from mlfleet.settings import get_settings

    registry.configure(get_settings(home=home))
    champions = registry.champions()
    port = free_port()
    server = start_plain(
        "benchmarks.plain_fleet_app:app",
        port,
        {
            **env,
            "BENCH_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
            "BENCH_MODELS": ",".join(f"{m}/{champions[m]}" for m in models),
        },
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/docs")
        run_wrk(url, LIGHT_CONNS, 3, script)  # warm-up
        return {f"c{conns}": run_wrk(url, conns, seconds, script) for conns, seconds in runs}
    finally:
        server.terminate()
        server.wait(30)


def monitor_pids() -> list[int]:
    """Processes of the drift monitor actor (Ray names them ``ray::MonitorActor``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(b"ray::MonitorActor"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def cpu_seconds(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def timed_gets(url: str, path: str, n: int, headers: dict[str, str]) -> dict[str, Any]:
    times, statuses, kinds = [], [], set()
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        for _ in range(n):
            started = time.perf_counter()
            r = client.get(path)
            times.append(1000 * (time.perf_counter() - started))
            statuses.append(r.status_code)
            kinds.add(r.headers.get("content-type", "").split(";")[0])
    return {
        "median_ms": round(statistics.median(times), 1),
        "max_ms": round(max(times), 1),
        "statuses": sorted(set(statuses)),
        "content_types": sorted(kinds),
    }


def measure_traffic(
    url: str, script: Path, conns: int, seconds: int, side_checks: bool
) -> dict[str, Any]:
    """One wrk run; meanwhile (``side_checks``) the monitor's CPU and GET /v1/monitoring."""
    import threading

    side: dict[str, Any] = {}
    monitor = monitor_pids()
    cpu_before = cpu_seconds(monitor)

    def probe() -> None:
        time.sleep(seconds / 3)
        side["monitoring_during_load"] = timed_gets(
            url, "/v1/monitoring", 5, {"Authorization": f"Bearer {KEY}"}
        )

    thread = threading.Thread(target=probe, daemon=True)
    if side_checks:
        thread.start()
    started = time.perf_counter()
    result: dict[str, Any] = dict(run_wrk(url, conns, seconds, script))
    wall = time.perf_counter() - started
    if side_checks:
        thread.join(120)
        result.update(side)
        result["monitor_cpu_pct"] = round(100 * (cpu_seconds(monitor) - cpu_before) / wall, 1)
    return result


def dashboard(url: str, names: list[str]) -> dict[str, Any]:
    """``GET /`` with the admin key, when the gateway serves an HTML page there, and how
    many of the fleet's ``names`` the page shows."""
    headers = {"Authorization": f"Bearer {KEY}", "X-API-Key": KEY}
    try:
        first = httpx.get(f"{url}/", headers=headers, timeout=60)
    except httpx.HTTPError as exc:
        return {"available": False, "note": f"dashboard: not available ({type(exc).__name__})"}
    if first.status_code != 200 or "text/html" not in first.headers.get("content-type", ""):
        return {"available": False, "note": f"dashboard: not available (GET / {first.status_code})"}
    renders = timed_gets(url, "/", 5, headers)
    shown = sum(f">{name}<" in first.text or f'/{name}"' in first.text for name in names)
    return {
        "available": True,
        "render_ms": renders,
        "bytes": len(first.content),
        "models_shown": shown,
        "models": len(names),
    }


# --- the run -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--conns", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="12 models, 10 s, 8 connections")
    parser.add_argument("--out", type=Path, default=None, help="results JSON path")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet host")
    parser.add_argument("--register", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.register:
        register(Path(args.register[0]), args.register[1:])
        return
    if args.quick:
        args.models, args.seconds, args.conns = 12, 10, 8
    out_path = args.out or (RESULTS.with_name("bench_fleet_quick.json") if args.quick else RESULTS)
    if not shutil.which("wrk"):
        sys.exit("wrk is required: apt-get install wrk")
    busy_before = float("nan") if args.no_wait else harness.wait_quiet()

    root = Path(tempfile.mkdtemp(prefix="mlfleet-bench-fleet-"))
    env = bench_env(root, KEY)
    mlfleet = [sys.executable, "-m", "mlfleet.cli.main"]
    results: dict[str, Any] = {
        **harness.environment(["ray", "fastapi", "scikit-learn", "mlflow"]),
        "host_busy_pct_before": busy_before,
        "models": args.models,
        "seconds": args.seconds,
        "connections": args.conns,
        "zipf_s": ZIPF_S,
        "targets": TARGETS,
    }
    try:
        specs, rows = write_specs(root, args.models)
        names = sorted(rows)
        print(f"registering {args.models} models ...", flush=True)
        first = run_register(env, specs, names[:3])
        three_uri = snapshot_registry(root / "home", root / "three-models")
        rest = run_register(env, specs, names[3:])
        results["registration"] = {
            "first_3": first,
            "rest": rest,
            "total_wall_s": round(first["wall_s"] + rest["wall_s"], 1),
        }
        results["models_list"] = {"models": args.models, **models_list_ab(env, three_uri)}
        results["gateway_refresh"] = refresh_costs(root / "home")
        print(f"gateway refresh: {results['gateway_refresh']}", flush=True)
        print(f"registration: {results['registration']}", flush=True)

        port = free_port()
        started = time.perf_counter()
        up = subprocess.run(
            [*mlfleet, "serve", "up", "--specs", str(specs), "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if up.returncode != 0:
            sys.exit(f"serve up failed: {up.stderr[-2000:]}")
        results["serve_up_s"] = round(time.perf_counter() - started, 1)
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/healthz")
        from mlfleet.cluster import running_head
        from mlfleet.settings import get_settings

        head = running_head(get_settings(home=root / "home"))
        assert head is not None
        results["head_pid"] = head_pid(root / "home")

        # Zipf over the models in a random order (rank is not the dataset or estimator).
        ranked = names[:]
        random.Random(11).shuffle(ranked)
        weights = zipf_weights(len(ranked))
        script = lua_script(ranked, weights, rows)
        print("Zipf traffic over every model ...", flush=True)
        results["zipf_all"] = measure_traffic(url, script, args.conns, args.seconds, True)
        stats = pool_stats(head.gcs_address)

        per_replica = int(get_settings(home=root / "home").max_num_models_per_replica)
        warm = ranked[:per_replica]
        warm_script = lua_script(warm, zipf_weights(len(warm)), rows)
        run_wrk(url, args.conns, 3, warm_script)  # load each of them everywhere first
        print(f"Zipf traffic over the {len(warm)} warm models ...", flush=True)
        # With 32 closed-loop connections on 2 cores every request waits for ~32 /
        # throughput (Little's law), whatever serves it, so the warm models' latency is also
        # measured with a few connections and with one; the peer gets the same runs.
        warm_runs = [
            (conns, max(10, args.seconds // 3)) for conns in (args.conns, LIGHT_CONNS, SINGLE_CONN)
        ]
        warm_keys = ["zipf_warm", "zipf_warm_light", "zipf_warm_single"]
        for key, (conns, seconds) in zip(warm_keys, warm_runs, strict=True):
            results[key] = measure_traffic(url, warm_script, conns, seconds, False)
        results["warm_models"] = len(warm)
        loads = [x for s in stats if "load_seconds" in s for x in s["load_seconds"]]
        results["cold_loads"] = {
            "count": sum(s.get("loads", 0) for s in stats),
            "p50_ms": round(1000 * statistics.median(loads), 1) if loads else None,
            "p99_ms": round(1000 * sorted(loads)[int(0.99 * (len(loads) - 1))], 1)
            if loads
            else None,
            "max_ms": round(1000 * max(loads), 1) if loads else None,
        }
        results["pool_replicas"] = [
            {
                "rss_mb": round(s["rss_bytes"] / 2**20, 1),
                "loads": s["loads"],
                "max_models": s["max_models"],
            }
            for s in stats
            if "rss_bytes" in s
        ]
        results["monitoring_after_load"] = timed_gets(
            url, "/v1/monitoring", 5, {"Authorization": f"Bearer {KEY}"}
        )
        results["dashboard"] = dashboard(url, names)
        results["heap"] = {
            "gateway": [heap_summary(s) for s in gateway_heap(head.gcs_address)],
            "pool": [heap_summary(s["heap"]) for s in pool_stats(head.gcs_address) if "heap" in s],
        }
        # The peer on the same warm models and traffic, once the fleet is down (same run).
        subprocess.run([*mlfleet, "down"], env=env, capture_output=True, timeout=300)
        print("the plain FastAPI peer on the warm models ...", flush=True)
        results["plain_peer_warm"] = plain_peer(root / "home", env, warm, warm_script, warm_runs)
    finally:
        subprocess.run([*mlfleet, "down"], env=env, capture_output=True, timeout=300)
        shutil.rmtree(root, ignore_errors=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2))
    summarise(results)
    print(f"results: {out_path}")


def summarise(r: dict[str, Any]) -> None:
    n = r["models"]
    a, w, c = r["zipf_all"], r["zipf_warm"], r["cold_loads"]
    wl, ws = r["zipf_warm_light"], r["zipf_warm_single"]
    d = r["dashboard"]
    mem = ", ".join(f"{p['rss_mb']:.0f} MB" for p in r["pool_replicas"]) or "?"
    print(
        f"\n{n} models, Zipf s={r['zipf_s']}, {r['connections']} connections, {r['seconds']} s\n"
        f"  registration: {r['registration']['total_wall_s']} s "
        f"({r['registration']['rest']['per_model_median_s']} s per model, median)\n"
        f"  all models:  {a['rps']:.0f} req/s  p50 {a['p50_ms']:.1f} ms  p99 {a['p99_ms']:.1f} ms"
        f"  non-2xx {a['non_2xx']}\n"
        f"  warm models: {w['rps']:.0f} req/s  p50 {w['p50_ms']:.1f} ms  p99 {w['p99_ms']:.1f} ms"
        f"  (target < {TARGETS['warm_p99_ms']:.0f} ms)\n"
        f"  warm models, {LIGHT_CONNS} connections: {wl['rps']:.0f} req/s"
        f"  p50 {wl['p50_ms']:.1f} ms  p99 {wl['p99_ms']:.1f} ms\n"
        f"  warm models, {SINGLE_CONN} connection: {ws['rps']:.0f} req/s"
        f"  p50 {ws['p50_ms']:.1f} ms  p99 {ws['p99_ms']:.1f} ms\n"
        f"  cold loads: {c['count']}  p50 {c['p50_ms']} ms  p99 {c['p99_ms']} ms"
        f"  (target < {TARGETS['cold_load_ms']:.0f} ms)\n"
        f"  pool replicas: {mem}\n"
        f"  monitor: {a.get('monitor_cpu_pct')}% CPU under load; GET /v1/monitoring "
        f"{a.get('monitoring_during_load', {}).get('median_ms')} ms under load, "
        f"{r['monitoring_after_load']['median_ms']} ms after\n"
        + (
            f"  dashboard: {d['render_ms']['median_ms']} ms, "
            f"{d.get('models_shown')}/{d.get('models')} models shown"
            if d["available"]
            else f"  {d['note']}"
        )
        + "".join(
            f"\n  plain FastAPI peer, warm models, {k[1:]} connection(s): {v['rps']:.0f} req/s"
            f"  p50 {v['p50_ms']:.1f} ms  p99 {v['p99_ms']:.1f} ms"
            for k, v in r.get("plain_peer_warm", {}).items()
        )
        + "".join(
            f"\n  {site} heap: {h['settles']} settles, {h['frozen_objects']} objects frozen, "
            f"{h['full_collections']} full collections (p50 {h['full_collection_p50_ms']} ms, "
            f"max {h['full_collection_max_ms']} ms)"
            for site, hs in r.get("heap", {}).items()
            for h in hs
        )
        + f"\n  models list: {r['models_list']['three_models_s']} s with 3, "
        f"{r['models_list']['fleet_s']} s with {n} (+{r['models_list']['extra_s']} s, median of "
        f"{r['models_list']['rounds']} alternated rounds)"
    )


if __name__ == "__main__":
    main()
