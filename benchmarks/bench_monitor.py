"""Benchmark: the monitor actor keeping up with a fleet's sketches on under half a core.

A real ``mlfleet-monitor`` actor (``ensure_monitor``, SQLite store, group commit) on an
embedded local Ray of 2 CPUs. 16 sender actors, each standing for one replica, flush count
vectors of 200 models × 20 features (16 numeric with 20 reference bins, 4 categorical with
5 values) plus the predictions every 2 s, each part stamped with the current minute, and
wait for the acknowledgement as a replica would. Traffic follows the references, except
for one model in ten whose numeric features are shifted. Every 10th flush is sent twice at once and
every 10th (others) again after its acknowledgement, as replicas resend what they could not
see acknowledged: the monitor must count each once.

Measured:

- the actor process's CPU (user + system, all its threads: ``harness.TreeMonitor`` on its
  pid) over the run after a warm-up, as a share of one core (target: < 0.5); the whole run's
  tree is measured too, for the CPU the rest of the host took meanwhile (``noise``);
- acknowledgement latency: in the actor from a flush's arrival to its acknowledgement
  (``ack_ms``: waits for the group commit), the transaction's write (``write_ms``), and the
  senders' round trip (``roundtrip_ms``, Ray's call overhead and pickling included);
- exactly once: the rows of every acknowledged flush against the rows in the store's
  buckets, read back from SQLite after the run (must be equal), and the duplicates.

The run crosses minute boundaries, so each of the 200 models is evaluated (every column's
four statistics, verdicts, gauges, its status stored) as its bucket completes.

Usage:
  python benchmarks/bench_monitor.py --quick    # 20 s smoke run
  python benchmarks/bench_monitor.py            # 70 s (10 s warm-up + 60 s measured)
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import harness
import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TARGET_CORES = 0.5
NUMERIC, CATEGORICAL, CATEGORIES = 16, 4, 5
CLASSES = ("a", "b", "c")
SHIFTED_EVERY = 10
SENDER_CPUS = 0.05  # 16 senders on a 2-CPU Ray, beside the monitor's 0.1


def references(models: int) -> list[Any]:
    """One classifier reference per model: 16 numeric features of 20 bins, 4 categorical."""
    from mlfleet.monitoring.reference import (
        PREDICTION,
        Calibration,
        MonitorReference,
        categorical_reference,
        numeric_reference,
    )

    edges = [float(e) for e in np.linspace(-3, 3, 21)]
    inner, _ = np.histogram(np.random.default_rng(0).normal(size=50_000), bins=edges)
    counts = [int(c) for c in inner]
    out = []
    for m in range(models):
        features = [numeric_reference(f"n{i}", edges, counts) for i in range(NUMERIC)]
        features += [
            categorical_reference(f"c{i}", {f"v{j}": 100 for j in range(CATEGORIES)})
            for i in range(CATEGORICAL)
        ]
        out.append(
            MonitorReference(
                model=f"model-{m:03d}",
                version="1",
                task="classification",
                features=tuple(features),
                prediction=categorical_reference(PREDICTION, dict.fromkeys(CLASSES, 100)),
                calibration=Calibration(np.array([0.0, 1.0]), np.array([0.0, 1.0])),
            )
        )
    return out


class Sender:
    """One replica: a flush of every model's counts every ``interval`` s (a Ray actor)."""

    def __init__(
        self, handle: Any, index: int, models: int, rows: int, shares: dict[str, np.ndarray]
    ) -> None:
        # Traffic like the reference's, except every SHIFTED_EVERY-th model whose numeric
        # features moved by three bins (half a standard deviation), so statuses differ.
        self.shares = {}
        for name, p in shares.items():
            table = np.tile(p, (models, 1))
            if name.startswith("n"):
                table[::SHIFTED_EVERY] = np.roll(p, 3)
            self.shares[name] = table
        self.rng = np.random.default_rng(index)
        self.handle, self.index, self.models, self.rows = handle, index, models, rows

    def counts(self) -> list[Any]:
        """Every model's counts of ``rows`` new rows (a fresh sample each flush)."""
        from mlfleet.monitoring.sketch import Counts

        drawn = {
            name: self.rng.multinomial(self.rows, table).astype(np.int64)
            for name, table in self.shares.items()
        }
        nulls = dict.fromkeys(self.shares, 0)
        return [
            Counts(
                rows=self.rows,
                columns={name: drawn[name][m] for name in drawn},
                nulls=dict(nulls),
                scored=self.rows,
                confidence=0.8 * self.rows,
            )
            for m in range(self.models)
        ]

    def ready(self) -> bool:
        return True

    def run(self, start_at: float, interval: float, seconds: float, spread: int) -> dict[str, Any]:
        """Flush from ``start_at`` (Unix time) for ``seconds``; what was sent and answered."""
        import ray

        from mlfleet.monitoring.protocol import Flush, SketchPart
        from mlfleet.monitoring.window import minute_of

        name = f"replica-{self.index:02d}"
        roundtrip: list[float] = []
        sent_rows = duplicates = seq = 0
        # Senders spread over the interval, as independent replicas are.
        due = start_at + (self.index / spread) * interval
        while due < start_at + seconds:
            time.sleep(max(0.0, due - time.time()))
            minute = minute_of(time.time())
            parts = [
                SketchPart(f"model-{m:03d}", "1", minute, counts)
                for m, counts in enumerate(self.counts())
            ]
            flush = Flush(sender=name, seq=seq, parts=parts)
            began = time.perf_counter()
            if seq % 10 == 3:  # resent before any acknowledgement: both calls in flight
                acks = ray.get([self.handle.ingest.remote(flush), self.handle.ingest.remote(flush)])
            else:
                acks = [ray.get(self.handle.ingest.remote(flush))]
            roundtrip.append((time.perf_counter() - began) * 1000)
            if seq % 10 == 7:  # resent after its acknowledgement
                acks.append(ray.get(self.handle.ingest.remote(flush)))
            duplicates += sum(a.duplicate for a in acks)
            if sum(not a.duplicate for a in acks) != 1:
                raise AssertionError(f"{name} seq {seq}: {acks}")
            sent_rows += self.rows * self.models
            seq += 1
            due += interval
        return {
            "flushes": seq,
            "rows": sent_rows,
            "duplicates": duplicates,
            "roundtrip_ms": roundtrip,
        }


def stored_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        (rows,) = conn.execute(
            "SELECT COALESCE(SUM(rows), 0) FROM monitor_buckets WHERE kind = 'sketch'"
        ).fetchone()
    return int(rows)


def percentiles(values: list[float]) -> dict[str, float]:
    p50, p99 = np.percentile(np.asarray(values), [50, 99])
    return {"p50": round(float(p50), 2), "p99": round(float(p99), 2), "n": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 s smoke run")
    parser.add_argument("--senders", type=int, default=16)
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--rows", type=int, default=5, help="rows per model per flush")
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet host")
    parser.add_argument("--max-wait", type=float, default=300.0)
    args = parser.parse_args()
    measured = args.seconds or (15.0 if args.quick else 60.0)
    warmup = args.warmup if args.warmup is not None else (5.0 if args.quick else 10.0)
    out = args.out or RESULTS / ("bench_monitor_quick.json" if args.quick else "bench_monitor.json")

    from mlfleet.ray_runtime import ensure_ray, prepare_ray_env

    prepare_ray_env()
    import ray

    from mlfleet.monitoring.actor import call, ensure_monitor
    from mlfleet.monitoring.state import StaticReferences
    from mlfleet.settings import get_settings

    env = harness.environment(["ray", "numpy", "sqlalchemy"])
    busy = 0.0 if args.no_wait else harness.wait_quiet(25.0, args.max_wait)
    print(f"git {env['git_head']}; host busy {busy:.0f}% before the run")
    home = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
    settings = get_settings(home=home, ray_num_cpus=2)
    started = time.monotonic()
    ensure_ray(settings)
    ray_start_s = time.monotonic() - started
    refs = references(args.models)
    shares = {c.name: c.counts / c.counts.sum() for c in refs[0].columns}
    handle = ensure_monitor(settings, reference_loader=StaticReferences(refs))
    health = call(handle.health.remote())
    print(f"ray up in {ray_start_s:.1f} s; monitor pid {health['pid']}; store {health['store']}")

    senders = [
        ray.remote(num_cpus=SENDER_CPUS)(Sender).remote(handle, i, args.models, args.rows, shares)
        for i in range(args.senders)
    ]
    ray.get([s.ready.remote() for s in senders])  # every sender's process is up
    start_at = time.time() + 1.0
    total_s = warmup + measured
    runs = [s.run.remote(start_at, args.interval, total_s, args.senders) for s in senders]
    time.sleep(max(0.0, start_at + warmup - time.time()))
    # The actor's process alone (the target), and the whole run (the embedded Ray's every
    # process is this driver's descendant) for the CPU the rest of the host took meanwhile.
    with (
        harness.TreeMonitor(health["pid"], interval=0.2) as actor,
        harness.TreeMonitor(os.getpid(), interval=0.2) as everything,
    ):
        health0 = call(handle.health.remote())
        time.sleep(measured)
        health1 = call(handle.health.remote())
        actor_usage, run_usage = actor.end(), everything.end()
    results = ray.get(runs)
    health = call(handle.health.remote())
    db = home / "monitor.db"
    rows_stored = stored_rows(db)
    rows_sent = sum(r["rows"] for r in results)
    fleet = call(handle.fleet.remote())
    cores = actor_usage.cpu_s / actor_usage.wall_s
    in_window = health1["flushes"] - health0["flushes"]
    roundtrip = [x for r in results for x in r["roundtrip_ms"]]
    report = {
        **env,
        "config": {
            "senders": args.senders,
            "models": args.models,
            "features": NUMERIC + CATEGORICAL,
            "rows_per_model_per_flush": args.rows,
            "interval_s": args.interval,
            "warmup_s": warmup,
            "measured_s": round(actor_usage.wall_s, 2),
            "commit_seconds": settings.monitor_commit_seconds,
            "monitor_num_cpus": settings.monitor_num_cpus,
        },
        "actor_cpu_cores": round(cores, 4),
        "target_cores": TARGET_CORES,
        "target_met": cores < TARGET_CORES,
        "actor_cpu_ms_per_flush": round(actor_usage.cpu_s * 1000 / max(1, in_window), 2),
        "flushes_in_window": in_window,
        "actor_peak_mb": round(actor_usage.peak_mb, 1),
        "run_cpu_cores": round(run_usage.cpu_s / run_usage.wall_s, 3),
        "noise": round(run_usage.foreign_cpu_frac, 4),
        "foreign_cpu_s": round(run_usage.foreign_cpu_s, 2),
        "ack_ms": health["ack_ms"],
        "write_ms": health["write_ms"],
        "roundtrip_ms": percentiles(roundtrip),
        "flushes": sum(r["flushes"] for r in results),
        "flushes_per_s": round(sum(r["flushes"] for r in results) / total_s, 2),
        "parts_per_s": round(sum(r["flushes"] for r in results) * args.models / total_s, 1),
        "rows_sent": rows_sent,
        "rows_stored": rows_stored,
        "exactly_once": rows_sent == rows_stored,
        "duplicates_sent": sum(r["duplicates"] for r in results),
        "duplicates_detected": health["duplicates"],
        "commits": health["commits"],
        "evaluations": health["evaluations"],
        "models_evaluated": sum(1 for m in fleet if m.get("evaluated_at")),
        "statuses": dict(sorted(Counter(m["status"] for m in fleet).items())),
        "store_mb": round(db.stat().st_size / 1e6, 2),
    }
    print(json.dumps({k: v for k, v in report.items() if k != "versions"}, indent=2))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"monitor CPU {cores:.3f} cores (target < {TARGET_CORES}); ack p50 "
        f"{report['ack_ms']['p50']} ms p99 {report['ack_ms']['p99']} ms; exactly once: "
        f"{report['exactly_once']} ({rows_stored:,} of {rows_sent:,} rows) -> {out}"
    )
    ray.kill(handle, no_restart=True)
    ray.shutdown()
    if not report["exactly_once"]:
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    main()
