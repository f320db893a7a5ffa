"""Serving throughput and latency: mlfleet's gateway vs a plain FastAPI app under uvicorn.

One registered sklearn model (the penguins classifier) is served three ways in the same
run: by a hand-written FastAPI app under uvicorn with 1 worker (the peer), and by the
mlfleet gateway routing to a dedicated deployment and to the multiplexed pool. A bounded
load generator (wrk, pinned to one core with taskset) sends 1-row requests over 1 and 32
connections for a fixed time each, alternating A/B/C; medians and ratios are printed and
written to benchmarks/results/bench_serve.json. Also measured: where requests ran (the
gateway answers a lone request itself; overlapping ones go to the model's replicas, see
the X-Served-By header) and the time from a promotion to the first response served by
the new version. The gateway runs as `mlfleet serve up` starts it, API keys on, so behind
HAProxy. During every wrk run the serving side's whole process tree (uvicorn; the Ray head
and everything it started: GCS, raylet, proxy, HAProxy, replicas) is measured with
``harness.TreeMonitor``: CPU seconds (and per request) and peak memory.

What drift monitoring costs (``monitoring`` in the results): one fleet, deployed once with
every prediction site recording (the default, flushing to the monitor actor that
`serve up` starts), measured with recording on and paused at run time through the public
admin route (``PUT /v1/monitoring/recording``), in A/B rounds (on off | off on | ...,
each side after the same warm-up, which also carries the switch to every replica). The
same replicas serve both sides, so neither side gets a luckier deployment. Throughput at
32 connections and p50 at one connection for the dedicated and the pool model, each
round's own ratio and difference, then medians. Targets: under 5% throughput lost at 32
connections, under 0.1 ms p50 added at one.

    python benchmarks/bench_serve.py [--seconds 15] [--rounds 3] [--quick] [--out FILE]
                                     [--monitoring-only] [--monitoring-rounds N]

Needs wrk (`apt-get install wrk`). Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "bench_serve.json"
MONITORING_RESULTS = RESULTS.with_name("bench_serve_monitoring.json")
ROW = {
    "bill_length_mm": 39.1,
    "bill_depth_mm": 18.7,
    "flipper_length_mm": 181.0,
    "body_mass_g": 3750.0,
    "island": "Torgersen",
    "sex": "male",
}
KEY = "mlf_bench_key_0123456789"
WARM_SECONDS = 40
SWITCH_SECONDS = 6  # load after pausing or resuming recording, before measuring


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_specs(root: Path) -> Path:
    """Two copies of the penguins spec: one served dedicated, one from the pool."""
    specs = root / "specs"
    base = yaml.safe_load((REPO / "specs/penguins/model.yaml").read_text())
    src_dir = REPO / "specs/penguins"
    for name, mode in (("bench-dedicated", "dedicated"), ("bench-pool", "pool")):
        spec = dict(base)
        spec["name"] = name
        spec["contract"] = str(src_dir / "contract.yaml")
        spec["sources"] = [
            s if s.startswith("sqlite") else str(src_dir / s) for s in base["sources"]
        ]
        spec["sources"] = [
            s.replace("sqlite:///", f"sqlite:///{src_dir}/") if s.startswith("sqlite") else s
            for s in spec["sources"]
        ]
        # A cheap model (one logistic regression) so the numbers measure serving, not
        # the model; sklearn's own per-call cost is still in both peers.
        spec["search"] = {
            **base["search"],
            "num_samples": 1,
            "scheduler": "fifo",
            "candidates": [
                {
                    "estimator": "sklearn.linear_model.LogisticRegression",
                    "params": {"C": 1.0, "max_iter": 1000},
                }
            ],
        }
        spec["serving"] = {
            "mode": mode,
            "max_batch_size": 32,
            "batch_wait_timeout_s": 0.001,
            "autoscaling": {"min_replicas": 1, "max_replicas": 1},
        }
        (specs / name).mkdir(parents=True, exist_ok=True)
        (specs / name / "model.yaml").write_text(yaml.safe_dump(spec))
    return specs


def wrk(
    url: str, conns: int, seconds: int, body: dict[str, Any], key: str | None
) -> dict[str, float]:
    """Run wrk on core 1 against a POST endpoint; returns req/s, p50/p99 ms, errors."""
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    headers = 'wrk.headers["Content-Type"] = "application/json"\n'
    if key:
        headers += f'wrk.headers["Authorization"] = "Bearer {key}"\n'
    script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(json.dumps(body))}\n' + headers)
    try:
        return run_wrk(url, conns, seconds, script)
    finally:
        script.unlink()


def run_wrk(url: str, conns: int, seconds: int, script: Path) -> dict[str, float]:
    """wrk on core 1 with a Lua ``script``; returns req/s, p50/p99 ms, requests, non-2xx."""
    cmd = [
        "taskset",
        "-c",
        "1",
        "wrk",
        "-t1",
        f"-c{conns}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout

    def latency(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "requests": int(total.group(1)) if total else 0,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def measured(
    monitor: harness.TreeMonitor,
    url: str,
    conns: int,
    seconds: int,
    body: dict[str, Any],
    key: str | None,
) -> dict[str, Any]:
    """One wrk run, with what the server's process tree used meanwhile."""
    monitor.begin()
    r: dict[str, Any] = dict(wrk(url, conns, seconds, body, key))
    usage = monitor.end()
    r["server_cpu_s"] = round(usage.cpu_s, 3)
    r["server_cpu_ms_per_request"] = round(1000 * usage.cpu_s / max(r["requests"], 1), 3)
    r["server_peak_mb"] = round(usage.peak_mb, 1)
    r["server_processes"] = usage.processes
    r["foreign_cpu_s"] = round(usage.foreign_cpu_s, 2)
    return r


def deploy(env: dict[str, str], mlfleet: list[str], specs: Path, port: int) -> float:
    """`mlfleet serve up`, recording on (the default); seconds."""
    started = time.perf_counter()
    up = subprocess.run(
        [*mlfleet, "serve", "up", "--specs", str(specs), "--port", str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if up.returncode != 0:
        sys.exit(f"serve up failed: {up.stderr[-2000:]}")
    return round(time.perf_counter() - started, 1)


def serve_status(env: dict[str, str], mlfleet: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [*mlfleet, "serve", "status", "--json"], env=env, capture_output=True, text=True
    ).stdout
    return json.loads(out) if out else {}


def replica_counts(env: dict[str, str], mlfleet: list[str]) -> dict[str, int]:
    """Running replicas per deployment."""
    deployments = serve_status(env, mlfleet).get("deployments", {})
    return {name: d["replicas"].get("RUNNING", 0) for name, d in deployments.items()}


def served_by(
    url: str, key: str | None, conns: int, body: dict[str, Any], per_conn: int = 40
) -> dict[str, int]:
    """Where requests ran (the X-Served-By header) with ``conns`` clients in parallel."""
    import asyncio
    from collections import Counter

    async def go() -> Counter[str]:
        counts: Counter[str] = Counter()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with httpx.AsyncClient(headers=headers, timeout=60) as client:

            async def one_connection() -> None:
                for _ in range(per_conn):
                    r = await client.post(url, json=body)
                    counts[r.headers.get("x-served-by", "?")] += 1

            await asyncio.gather(*[one_connection() for _ in range(conns)])
        return counts

    return dict(asyncio.run(go()))


def bench_env(root: Path, key: str) -> dict[str, str]:
    """The environment of the mlfleet commands a benchmark runs: its own home under
    ``root``, an embedded Ray of 2 CPUs, ``key`` with both scopes, no outside cluster."""
    env = {
        **os.environ,
        "MLFLEET_HOME": str(root / "home"),
        "MLFLEET_RAY_NUM_CPUS": "2",
        "MLFLEET_API_KEYS": json.dumps(
            [
                {
                    "name": "bench",
                    "scopes": ["predict", "admin"],
                    "sha256": __import__("hashlib").sha256(key.encode()).hexdigest(),
                }
            ]
        ),
    }
    env.pop("MLFLEET_RAY_ADDRESS", None)
    return env


def wait_http(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise TimeoutError(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="3 s runs, 1 round, short warm-up")
    parser.add_argument("--out", type=Path, default=None, help="results JSON path")
    parser.add_argument(
        "--monitoring-only",
        action="store_true",
        help="only the monitoring on/off rounds (written to bench_serve_monitoring.json)",
    )
    parser.add_argument(
        "--monitoring-rounds", type=int, default=None, help="A/B rounds (default: --rounds)"
    )
    parser.add_argument(
        "--monitoring-conns",
        default="1,32",
        help="connection counts of the monitoring rounds (default 1,32)",
    )
    parser.add_argument(
        "--no-wait", action="store_true", help="do not wait for a quiet host (CPU < 25%%) first"
    )
    args = parser.parse_args()
    warm_seconds = WARM_SECONDS
    if args.quick:
        args.seconds, args.rounds, warm_seconds = 3, 1, 5
    monitoring_rounds = args.monitoring_rounds or args.rounds
    monitoring_conns = tuple(int(c) for c in args.monitoring_conns.split(","))
    default_out = MONITORING_RESULTS if args.monitoring_only else RESULTS
    quick_results = default_out.with_name(default_out.stem + "_quick.json")
    out_path = args.out or (quick_results if args.quick else default_out)
    if not shutil.which("wrk"):
        sys.exit("wrk is required: apt-get install wrk")
    busy_before = float("nan") if args.no_wait else harness.wait_quiet()

    root = Path(tempfile.mkdtemp(prefix="mlfleet-bench-serve-"))
    env = bench_env(root, KEY)
    mlfleet = [sys.executable, "-m", "mlfleet.cli.main"]
    specs = write_specs(root)
    print("training the benchmark model twice (dedicated and pool copies) ...", flush=True)
    for name in ("bench-dedicated", "bench-pool"):
        subprocess.run(
            [*mlfleet, "train", str(specs / name / "model.yaml"), "--json"],
            env=env,
            check=True,
            capture_output=True,
            timeout=600,
        )

    port = free_port()
    if args.monitoring_only:
        gateway = {
            "dedicated": (f"http://127.0.0.1:{port}/v1/models/bench-dedicated/predict", KEY),
            "pool": (f"http://127.0.0.1:{port}/v1/models/bench-pool/predict", KEY),
        }
        results = {
            **harness.environment(["ray", "fastapi", "uvicorn", "scikit-learn", "mlflow"]),
            "host_busy_pct_before": busy_before,
            "seconds": args.seconds,
            "rounds": monitoring_rounds,
            "conns": list(monitoring_conns),
        }
        try:
            results["serve_up_seconds"] = deploy(env, mlfleet, specs, port)
            results["monitoring"] = monitoring_cost(
                env,
                port,
                gateway,
                {"instances": [ROW]},
                monitoring_rounds,
                args.seconds,
                warm_seconds,
                monitoring_conns,
            )
        finally:
            subprocess.run([*mlfleet, "down"], env=env, capture_output=True, timeout=300)
            shutil.rmtree(root, ignore_errors=True)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=2))
        print_monitoring(results["monitoring"])
        print(f"results: {out_path}")
        return
    tracking = f"sqlite:///{root / 'home' / 'mlflow.db'}"
    plain_port = free_port()
    plain = start_plain(
        "benchmarks.plain_app:app",
        plain_port,
        {**env, "BENCH_MODEL": "models:/bench-pool/1", "BENCH_TRACKING_URI": tracking},
    )
    results: dict[str, Any] = {
        **harness.environment(["ray", "fastapi", "uvicorn", "scikit-learn", "mlflow"]),
        "host_busy_pct_before": busy_before,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "runs": [],
    }
    try:
        results["serve_up_seconds"] = deploy(env, mlfleet, specs, port)
        wait_http(f"http://127.0.0.1:{plain_port}/docs")
        head = head_pid(root / "home")
        # What each target runs on, measured during its runs (the mlfleet targets share a head).
        plain_tree, head_tree = (
            harness.TreeMonitor(pid, interval=0.2) for pid in (plain.pid, head)
        )
        monitors = {"plain": plain_tree, "dedicated": head_tree, "pool": head_tree}
        targets = {
            "plain": (f"http://127.0.0.1:{plain_port}/v1/models/bench-pool/predict", None),
            "dedicated": (f"http://127.0.0.1:{port}/v1/models/bench-dedicated/predict", KEY),
            "pool": (f"http://127.0.0.1:{port}/v1/models/bench-pool/predict", KEY),
        }
        body = {"instances": [ROW]}
        for url, key in targets.values():  # warm up: load models, JIT paths
            wrk(url, 8, 2, body, key)
        # Let autoscaling reach its steady state under the heavy load first (Serve scales up
        # after ~30 s), so that no round measures replicas while they start.
        for name, (url, key) in targets.items():
            if name != "plain":
                wrk(url, 32, warm_seconds, body, key)
        results["replicas_after_warmup"] = replica_counts(env, mlfleet)
        runs = [(conns, name) for conns in (1, 32) for name in targets]
        with plain_tree, head_tree:
            for rnd, (conns, name) in harness.rounds(runs, args.rounds):
                url, key = targets[name]
                r: dict[str, Any] = {"target": name, "conns": conns, "round": rnd}
                r.update(measured(monitors[name], url, conns, args.seconds, body, key))
                results["runs"].append(r)
                print(
                    f"round {rnd} {name:9s} c={conns:2d}: {r['rps']:8.1f} req/s  "
                    f"p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:7.2f} ms  "
                    f"non-2xx {r['non_2xx']}  server cpu "
                    f"{r['server_cpu_ms_per_request']:.2f} ms/req, peak "
                    f"{r['server_peak_mb']:,.0f} MB",
                    flush=True,
                )
        results["served_by"] = {
            f"{name} c={conns}": served_by(url, key, conns, body)
            for name, (url, key) in targets.items()
            if name != "plain"
            for conns in (1, 32)
        }
        status = serve_status(env, mlfleet)
        results["ingress"] = status.get("ingress")
        results["replicas_at_end"] = replica_counts(env, mlfleet)
        results["promotion"] = promotion_latency(specs, env, mlfleet, port)
        gateway = {name: targets[name] for name in ("dedicated", "pool")}
        results["monitoring"] = monitoring_cost(
            env, port, gateway, body, monitoring_rounds, args.seconds, warm_seconds
        )
    finally:
        subprocess.run([*mlfleet, "down"], env=env, capture_output=True, timeout=300)
        os.killpg(plain.pid, signal.SIGTERM)
        plain.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
    summarise(results, out_path)


def start_plain(app: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A hand-written peer ``app`` under uvicorn, 1 worker, on 127.0.0.1:``port`` (the
    caller waits for it to answer and terminates it)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=REPO,
        # The peers load the models with MLflow's own sklearn loader, as their users would.
        env={**env, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true"},
        start_new_session=True,
    )


def head_pid(home: Path) -> int:
    """The pid of the Ray head `mlfleet serve up` started (the root of its process tree)."""
    from mlfleet.cluster import running_head
    from mlfleet.settings import get_settings

    head = running_head(get_settings(home=home))
    if head is None:
        sys.exit("serve up left no running head behind")
    return head.pid


def promotion_latency(
    specs: Path, env: dict[str, str], mlfleet: list[str], port: int
) -> dict[str, float]:
    """Register v2 (kept as challenger), promote it over HTTP, time the first v2 answer."""
    spec = yaml.safe_load((specs / "bench-dedicated" / "model.yaml").read_text())
    spec["promotion"] = {"min_improvement": 1.0}  # cannot win: stays challenger
    spec["search"]["candidates"] = [
        {
            "estimator": "sklearn.linear_model.LogisticRegression",
            "params": {"C": 0.5, "max_iter": 500},
        }
    ]
    spec["search"]["num_samples"] = 1
    path = specs / "bench-dedicated" / "v2.yaml"
    path.write_text(yaml.safe_dump(spec))
    subprocess.run(
        [*mlfleet, "train", str(path), "--json"],
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    headers = {"Authorization": f"Bearer {KEY}"}
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, headers=headers, timeout=60) as c:
        t0 = time.perf_counter()
        r = c.post("/v1/models/bench-dedicated/promote", json={"version": "2"})
        r.raise_for_status()
        promoted = time.perf_counter()
        while True:
            got = c.post("/v1/models/bench-dedicated/predict", json={"instances": [ROW]})
            if got.status_code == 200 and got.json()["version"] == "2":
                break
        first = time.perf_counter()
    return {
        "promote_call_ms": round(1000 * (promoted - t0), 1),
        "promotion_to_first_v2_response_ms": round(1000 * (first - t0), 1),
    }


def monitoring_cost(
    env: dict[str, str],
    port: int,
    targets: dict[str, tuple[str, str | None]],
    body: dict[str, Any],
    rounds: int,
    seconds: int,
    warm_seconds: int,
    conns_list: tuple[int, ...] = (1, 32),
) -> dict[str, Any]:
    """Throughput at 32 connections and p50 at one with recording on and paused (see the
    module). Rounds alternate the order (on off, off on, ...), so neither side always runs
    first; each side starts with the switch and the same warm-up."""
    runs: list[dict[str, Any]] = []
    switches: list[dict[str, Any]] = []
    tree = harness.TreeMonitor(head_pid(Path(env["MLFLEET_HOME"])), interval=0.2)
    with tree:
        for url, key in targets.values():
            wrk(url, 8, 2, body, key)  # models load on first use
            wrk(url, 32, warm_seconds, body, key)  # replicas and autoscaling settle
        for rnd in range(1, rounds + 1):
            for mode in ("on", "off") if rnd % 2 else ("off", "on"):
                switches.append({"round": rnd, **set_recording(port, mode == "on")})
                # Busy senders learn the switch from their next acknowledgement (every 2 s),
                # idle ones within a flush interval: every replica follows within this.
                for url, key in targets.values():
                    wrk(url, 32, SWITCH_SECONDS, body, key)
                for conns in conns_list:
                    for name, (url, key) in targets.items():
                        r: dict[str, Any] = {
                            "target": name,
                            "conns": conns,
                            "round": rnd,
                            "monitoring": mode,
                        }
                        r.update(measured(tree, url, conns, seconds, body, key))
                        runs.append(r)
                        print(
                            f"round {rnd} monitoring {mode:3s} {name:9s} c={conns:2d}: "
                            f"{r['rps']:8.1f} req/s  p50 {r['p50_ms']:6.2f} ms  "
                            f"server cpu {r['server_cpu_ms_per_request']:.3f} ms/req",
                            flush=True,
                        )
        set_recording(port, True)
        fleet = monitor_view(port)
    return {
        "runs": runs,
        "switches": switches,
        "fleet": fleet,
        **monitoring_summary(runs, targets),
    }


def set_recording(port: int, on: bool) -> dict[str, Any]:
    """Pause or resume recording fleet-wide (the admin route), and how long the call took."""
    started = time.perf_counter()
    r = httpx.put(
        f"http://127.0.0.1:{port}/v1/monitoring/recording",
        json={"recording": on},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=60,
    )
    if r.status_code != 200 or r.json()["recording"] is not on:
        sys.exit(f"could not switch recording {'on' if on else 'off'}: {r.status_code} {r.text}")
    return {"recording": on, "call_ms": round(1000 * (time.perf_counter() - started), 1)}


def monitor_view(port: int) -> dict[str, Any]:
    """What the monitor saw of the benchmark's traffic (GET /v1/monitoring)."""
    r = httpx.get(
        f"http://127.0.0.1:{port}/v1/monitoring",
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=60,
    )
    if r.status_code != 200:
        return {"status_code": r.status_code}
    return {
        "status_code": 200,
        "models": {
            m.get("model"): {"status": m.get("status"), "rows": m.get("rows")}
            for m in r.json()["models"]
        },
    }


def monitoring_summary(runs: list[dict[str, Any]], targets: dict[str, Any]) -> dict[str, Any]:
    """Per target: each round's throughput loss at c=32 and p50 added at c=1, then medians."""
    summary: dict[str, Any] = {}
    for name in targets:
        mine = [r for r in runs if r["target"] == name]
        row: dict[str, Any] = {}
        for conns in (1, 32):
            own = [r for r in mine if r["conns"] == conns]
            for mode in ("on", "off"):
                side = [r for r in own if r["monitoring"] == mode]
                row[f"c{conns}_{mode}"] = {
                    key: harness.median(r[key] for r in side)
                    for key in ("rps", "p50_ms", "p99_ms", "server_cpu_ms_per_request")
                }
        c32 = [r for r in mine if r["conns"] == 32]
        c1 = [r for r in mine if r["conns"] == 1]
        rps = harness.per_round(c32, "rps", "on", "off", who="monitoring")
        p50 = harness.per_round(c1, "p50_ms", "on", "off", who="monitoring")
        cpu = harness.per_round(c32, "server_cpu_ms_per_request", "on", "off", who="monitoring")
        row["c32_throughput_loss_pct"] = (
            round(100 * harness.median(1 - a / b for a, b in rps if b), 2) if rps else None
        )
        row["c1_added_p50_ms"] = round(harness.median(a - b for a, b in p50), 3) if p50 else None
        row["c32_added_server_cpu_ms_per_request"] = (
            round(harness.median(a - b for a, b in cpu), 3) if cpu else None
        )
        summary[name] = row
    losses = [row["c32_throughput_loss_pct"] for row in summary.values()]
    added = [row["c1_added_p50_ms"] for row in summary.values()]
    targets_met = {
        "throughput_loss_c32_lt_5pct": all(v is not None and v < 5.0 for v in losses),
        "added_p50_c1_lt_0.1ms": all(v is not None and v < 0.1 for v in added),
    }
    return {"summary": summary, "targets": targets_met}


def signed(value: float | None) -> str:
    """A difference with its sign (n/a without one)."""
    return "n/a" if value is None else f"{value:+.3f}"


def summarise(results: dict[str, Any], out_path: Path) -> None:
    runs = results["runs"]
    summary: dict[str, Any] = {}
    for conns in (1, 32):
        mine = [r for r in runs if r["conns"] == conns]
        row: dict[str, Any] = {}
        for name in ("plain", "dedicated", "pool"):
            own = [r for r in mine if r["target"] == name]
            row[name] = {
                key: harness.median(r[key] for r in own)
                for key in (
                    "rps",
                    "p50_ms",
                    "p99_ms",
                    "server_cpu_ms_per_request",
                    "server_peak_mb",
                )
            }
            row[name]["non_2xx"] = sum(r["non_2xx"] for r in own)
        for name in ("dedicated", "pool"):
            rps = harness.per_round(mine, "rps", name, "plain", who="target")
            p50 = harness.per_round(mine, "p50_ms", name, "plain", who="target")
            ratios = [a / b for a, b in rps if b]
            row[f"{name}_over_plain"] = round(harness.median(ratios), 3) if ratios else None
            # Each round's own difference (same minute, same machine state), then the median.
            row[f"{name}_added_p50_ms_round_median"] = (
                round(harness.median(a - b for a, b in p50), 2) if p50 else None
            )
            row[f"{name}_added_p50_ms"] = round(row[name]["p50_ms"] - row["plain"]["p50_ms"], 2)
        summary[f"c{conns}"] = row
    results["summary"] = summary
    results["targets"] = {
        "dedicated_c32_ge_0.6": (summary["c32"]["dedicated_over_plain"] or 0) >= 0.6,
        "pool_c32_ge_0.4": (summary["c32"]["pool_over_plain"] or 0) >= 0.4,
        "added_latency_c1_le_3ms": max(
            summary["c1"]["dedicated_added_p50_ms"], summary["c1"]["pool_added_p50_ms"]
        )
        <= 3.0,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2))
    print("\nmedians over rounds (req/s, p50 ms; server CPU ms per request):")
    for key, row in summary.items():
        print(
            f"  {key}: plain {row['plain']['rps']:.0f} ({row['plain']['p50_ms']:.2f} ms; "
            f"{row['plain']['server_cpu_ms_per_request']:.2f}) | "
            f"dedicated {row['dedicated']['rps']:.0f} ({row['dedicated']['p50_ms']:.2f} ms; "
            f"{row['dedicated']['server_cpu_ms_per_request']:.2f}) "
            f"= {row['dedicated_over_plain']}x | pool {row['pool']['rps']:.0f} "
            f"({row['pool']['p50_ms']:.2f} ms; {row['pool']['server_cpu_ms_per_request']:.2f})"
            f" = {row['pool_over_plain']}x"
        )
    print(f"ingress: {results.get('ingress')}; where requests ran: {results.get('served_by')}")
    print(
        f"replicas after warm-up: {results.get('replicas_after_warmup')}, "
        f"at the end: {results.get('replicas_at_end')}"
    )
    print(f"promotion: {results.get('promotion')}")
    print(f"targets: {results['targets']}")
    monitoring = results.get("monitoring")
    if monitoring:
        print_monitoring(monitoring)
    print(f"results: {out_path}")


def print_monitoring(monitoring: dict[str, Any]) -> None:
    print("monitoring on vs off (per-round medians):")
    for name, row in monitoring["summary"].items():
        print(
            f"  {name}: c32 {row['c32_on']['rps']:.0f} vs {row['c32_off']['rps']:.0f} req/s "
            f"(loss {signed(row['c32_throughput_loss_pct'])}%, server cpu "
            f"{signed(row['c32_added_server_cpu_ms_per_request'])} ms/req) | c1 p50 "
            f"{row['c1_on']['p50_ms']:.2f} vs {row['c1_off']['p50_ms']:.2f} ms "
            f"({signed(row['c1_added_p50_ms'])} ms)"
        )
    print(f"  what the monitor saw: {monitoring['fleet']}")
    print(f"  targets: {monitoring['targets']}")


if __name__ == "__main__":
    main()
