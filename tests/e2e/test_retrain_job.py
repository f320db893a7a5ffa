"""Retraining on a real `ray start --head` cluster on 127.0.0.1: once per cooldown, with
the labelled feedback as an extra source, and a worse model stays challenger."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from mlfleet import registry
from mlfleet.monitoring.feedback import PredictionLog, feedback_source
from mlfleet.monitoring.performance import ConfusionCounts
from mlfleet.monitoring.protocol import Label, PredictionRecord
from mlfleet.monitoring.retrain import RetrainJob, job_status, submit_retrain
from mlfleet.monitoring.store import MonitorStore
from mlfleet.settings import Settings, get_settings
from tests.support import REPO
from tests.support.messy import loans_frame
from tests.support.ray_head import RayHead, ray_head
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

MODEL = "loan-default"
CONTRACT = """
name: loans
target: defaulted
columns:
  - {name: loan_id, type: int, nullable: true}
  - {name: income, type: float, min: 0}
  - {name: debt_ratio, type: float, min: 0}
  - {name: region, type: category, values: [north, south, east, west], normalize: [strip, lower]}
  - {name: defaulted, type: category, values: ["yes", "no"]}
"""
FEATURES = ["income", "debt_ratio", "region"]


@pytest.fixture(scope="module")
def head() -> Iterator[RayHead]:
    with ray_head() as h:
        yield h


def write_spec(folder: Path) -> Path:
    """A loans classifier: one fully grown tree, so label noise makes it clearly worse."""
    folder.mkdir(parents=True)
    (folder / "contract.yaml").write_text(CONTRACT)
    loans_frame(600, seed=1).to_csv(folder / "loans.csv", index=False)
    spec = {
        "name": MODEL,
        "contract": str(folder / "contract.yaml"),
        "sources": [str(folder / "loans.csv")],
        "task": "classification",
        "features": FEATURES,
        "split": {"test_fraction": 0.25, "seed": 7},
        "search": {
            "metric": "f1_macro",
            "num_samples": 1,
            "max_concurrent": 1,
            "scheduler": "fifo",
            "candidates": [{"estimator": "sklearn.tree.DecisionTreeClassifier"}],
        },
    }
    path = folder / "model.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def finished(job_id: str, settings: Settings, address: str) -> RetrainJob:
    def outcome() -> RetrainJob | None:
        job = job_status(job_id, settings, address=address)
        return job if job.finished else None

    return wait_for(outcome, timeout=400, what=f"job {job_id}", most=2.0)


def entrypoint(head: RayHead, job_id: str) -> str:
    from ray.job_submission import JobSubmissionClient

    return str(JobSubmissionClient(head.dashboard_url).get_job_info(job_id).entrypoint)


def write_noisy_feedback(store: MonitorStore, settings: Settings) -> int:
    """600 predicted rows labelled at random: data that can only make a model worse."""
    frame = loans_frame(600, seed=2)
    rows = [
        {"income": float(r.income), "debt_ratio": float(r.debt_ratio), "region": r.region.strip()}
        for r in frame.itertuples()
    ]
    for row in rows:
        row["region"] = str(row["region"]).lower()
    log = PredictionLog.from_settings(store.engine, settings)  # as the monitor keeps it
    at = time.time()
    log.record([PredictionRecord("req-1", MODEL, "1", at, rows, ["no"] * len(rows))])
    labels = np.random.default_rng(3).choice(["yes", "no"], len(rows))
    result, realised = log.join(MODEL, [Label("req-1", str(y), i) for i, y in enumerate(labels)])
    assert result.matched == len(rows) and result.unknown == []
    [(key, counts)] = realised.items()  # the contract's classes read from the registry
    assert key[0] == "1" and isinstance(counts, ConfusionCounts) and counts.rows == len(rows)
    return result.matched


def test_retrain_once_per_cooldown_and_the_worse_model_stays_challenger(
    head: RayHead, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    settings = get_settings(home=home)
    store_url = f"sqlite:///{home / 'monitor.db'}"  # the monitor's store and prediction log
    spec = write_spec(tmp_path / "specs" / MODEL)

    # The first version, submitted from here with the dashboard's address: no feedback
    # yet, so no extra source; it becomes champion.
    first = submit_retrain(MODEL, spec, settings, reason="first", address=head.dashboard_url)
    assert "--extra-source" not in entrypoint(head, first)
    done = finished(first, settings, head.dashboard_url)
    assert done.status == "SUCCEEDED", done.message
    assert done.result is not None
    assert (done.result["version"], done.result["promoted"]) == ("1", True)

    registry.configure(settings)
    store = MonitorStore(store_url)
    write_noisy_feedback(store, settings)
    store.close()
    source = feedback_source(home, MODEL)
    assert source is not None

    # A small monitor actor on the head evaluates every minute under drift and calls the
    # retrain hook at each sustained drift, which records in the store: one retrain after
    # three drift evaluations, none while it runs, none within the cooldown once it finished.
    t0 = 1_790_000_000.0
    statuses = ["ok", "drift", "drift", "drift", "drift", "drift"]
    plan = {
        "gcs_address": head.gcs_address,
        "home": str(home),
        "store_url": store_url,
        "model": MODEL,
        "specs_dir": str(spec.parent.parent),
        "policy": {"on_drift": True, "sustained_windows": 3, "cooldown_minutes": 60},
        "evaluations": [[s, t0 + 60 * i] for i, s in enumerate(statuses)],
        "after_job": [["drift", t0 + 60 * 3 + 59 * 60]],  # 59 min after the retrain
    }
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(plan))
    proc = subprocess.run(
        [sys.executable, "-m", "tests.e2e.retrain_driver", str(plan_path)],
        cwd=REPO,
        env={**head.env, "RAY_ADDRESS": head.gcs_address},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [e["submitted"] for e in lines] == [False] * 3 + [True] + [False] * 3
    store = MonitorStore(store_url)  # what the monitor's store holds, read afresh
    [row] = store.retrains(MODEL)  # once per cooldown
    assert store.last_retrains() == {MODEL: row}
    store.close()
    assert row["status"] == "succeeded"
    assert row["reason"] == f"{MODEL}: drift at the last 3 consecutive evaluations"
    assert row["at"] == t0 + 60 * 3
    assert row["details"]["extra_sources"] == [source]
    retrain = row["job_id"]
    assert retrain.startswith(f"mlfleet-retrain-{MODEL}-")

    python, script, *args = shlex.split(entrypoint(head, retrain))
    assert Path(python).is_absolute() and Path(python).parent == Path(sys.executable).parent
    assert script == str(REPO / "jobs" / "train.py")
    assert args == ["--spec", str(spec), "--json", "--extra-source", source]
    job = row["details"]["job"]
    assert job["status"] == "SUCCEEDED"
    result = job["result"]
    assert (result["version"], result["promoted"]) == ("2", False)
    assert result["decision"].startswith("does not beat champion v1")
    assert result["score"] < result["champion_score"]

    # The registry agrees: v1 still serves, v2 is the challenger.
    champion = registry.alias_version(MODEL, registry.CHAMPION)
    challenger = registry.alias_version(MODEL, registry.CHALLENGER)
    assert (champion and champion.version, challenger and challenger.version) == ("1", "2")
    # The retrain's dataset version holds the spec's rows and the feedback's.
    manifest = json.loads(
        next(
            (home / "datasets" / "loans" / result["dataset_version"]).glob("manifest.json")
        ).read_text()
    )
    assert manifest["rows_valid"] == 1200 and manifest["rows_quarantined"] == 0
    assert any(s["uri"].startswith(str(home / "feedback" / MODEL)) for s in manifest["sources"])
