"""The retrain policy (pure) and how a retrain job is put together; `--extra-source`."""

from __future__ import annotations

import importlib.util
import json
import shlex
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from mlfleet.monitoring.retrain import (
    RetrainError,
    RetrainHook,
    RetrainPolicy,
    job_env,
    retrain_entrypoint,
    train_result,
    train_script,
)
from mlfleet.monitoring.store import MonitorStore
from mlfleet.settings import get_settings
from mlfleet.spec import RetrainSpec
from tests.support import REPO
from tests.support.fleet import DUMMY, write_loans_fleet

POLICY = RetrainPolicy(on_drift=True, sustained_windows=3, cooldown_minutes=60)
NOW = 1_790_000_000.0


def test_drift_must_last_n_consecutive_evaluations() -> None:
    assert not POLICY.decide("m", ["drift", "drift"], None, NOW).retrain
    assert not POLICY.decide("m", [], None, NOW).retrain
    decision = POLICY.decide("m", ["ok", "drift", "drift", "drift"], None, NOW)
    assert decision.retrain
    assert decision.reason == "m: drift at the last 3 consecutive evaluations"
    # An ok or a warning in between starts the count again.
    for reset in ("ok", "warning"):
        decision = POLICY.decide("m", ["drift", "drift", reset, "drift", "drift"], None, NOW)
        assert not decision.retrain
        assert decision.reason == "m: drift at 2 of the last 3 evaluations needed"
    assert not POLICY.decide("m", ["drift", "drift", "drift", "ok"], None, NOW).retrain


def test_never_within_the_cooldown() -> None:
    drift = ["drift"] * 5
    recent = POLICY.decide("m", drift, NOW - 59 * 60, NOW)
    assert not recent.retrain
    assert recent.reason == (
        "m: drift at the last 3 consecutive evaluations, but the last retrain was 59 min ago "
        "(cooldown 60 min)"
    )
    later = POLICY.decide("m", drift, NOW - 60 * 60, NOW)
    assert later.retrain and later.reason.endswith("last retrain 60 min ago")


def test_once_per_cooldown_over_a_stream_of_evaluations() -> None:
    """A monitor evaluating every minute under steady drift retrains once an hour."""
    statuses: list[str] = []
    last: float | None = None
    submitted = []
    for minute in range(150):
        now = NOW + 60 * minute
        statuses.append("drift")
        if POLICY.decide("m", statuses[-10:], last, now).retrain:
            submitted.append(minute)
            last = now
    assert submitted == [2, 62, 122]


def test_off_and_running_jobs_never_retrain() -> None:
    off = RetrainPolicy.of(None)
    assert not off.on_drift
    assert off.decide("m", ["drift"] * 9, None, NOW).reason == "m: retraining on drift is off"
    busy = POLICY.decide("m", ["drift"] * 3, None, NOW, running_job="job-1")
    assert not busy.retrain and "job-1 is still running" in busy.reason


def test_the_policy_reads_a_spec_block_and_checks_it() -> None:
    block = RetrainSpec.model_validate(
        {"on_drift": True, "sustained_windows": 2, "cooldown_minutes": 5}
    )
    assert RetrainPolicy.of(block) == RetrainPolicy(True, 2, 5.0)
    assert RetrainPolicy.of(RetrainSpec()) == RetrainPolicy.of(None)  # off by default
    with pytest.raises(ValueError):
        RetrainPolicy(True, 0, 5)
    with pytest.raises(ValueError):
        RetrainPolicy(True, 1, -1)


def test_the_entrypoint_is_absolute_and_quoted(tmp_path: Path) -> None:
    settings = get_settings(home=tmp_path)
    script = train_script(settings)
    assert script == REPO / "jobs" / "train.py"
    spec = tmp_path / "my specs" / "model.yaml"
    glob = str(tmp_path / "feedback" / "m" / "*.parquet")
    command = retrain_entrypoint(spec, script, sys.executable, [glob])
    assert shlex.split(command) == [
        sys.executable,
        str(script),
        "--spec",
        str(spec),
        "--json",
        "--extra-source",
        glob,
    ]
    with pytest.raises(RetrainError, match="MLFLEET_JOBS_DIR"):
        train_script(get_settings(jobs_dir=tmp_path))


def test_the_job_env_never_carries_a_password(tmp_path: Path) -> None:
    plain = job_env(get_settings(home=tmp_path, mlflow_tracking_uri="http://mlflow:5000"))
    assert plain["MLFLEET_HOME"] == str(tmp_path)
    assert plain["MLFLEET_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    secret = job_env(get_settings(mlflow_tracking_uri="postgresql://u:pw@db/mlflow"))
    assert "MLFLEET_MLFLOW_TRACKING_URI" not in secret
    assert "pw" not in json.dumps(secret)


def test_the_training_result_is_read_from_the_job_logs() -> None:
    result = {"name": "m", "version": "2", "promoted": False, "best": {"params": {"C": 1}}}
    logs = (
        "2026-11-28 INFO {'trial': 1} started\n"
        + '{"event": "log line", "n": 1}\n'
        + json.dumps(result, indent=2)
        + "\n(pid=1) tune finished {\n"
    )
    assert train_result(logs) == result
    assert train_result("no json at all {") is None


def _job_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("jobs_train", REPO / "jobs" / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_job_passes_extra_sources_to_the_cli() -> None:
    parse = _job_module().parse
    assert parse(["--spec", "s.yaml"]) == ["train", "s.yaml"]
    argv = ["--spec", "s.yaml", "--extra-source", "a/*.parquet", "--extra-source", "b.csv"]
    assert parse([*argv, "--json"]) == [
        "train",
        "s.yaml",
        "--extra-source",
        "a/*.parquet",
        "--extra-source",
        "b.csv",
        "--json",
    ]


def test_extra_sources_cannot_join_an_existing_dataset_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mlfleet.cli.main import main

    argv = ["train", "spec.yaml", "--dataset-version", "v1", "--extra-source", "f.parquet"]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "--extra-source" in capsys.readouterr().err


def test_the_hook_finds_the_fleets_specs_and_reads_their_retrain_blocks(tmp_path: Path) -> None:
    """Real specs, a real store on SQLite; no jobs folder, so submitting fails before Ray."""
    models = {name: (*DUMMY, "pool") for name in ("eager", "calm")}
    specs = write_loans_fleet(tmp_path, models, rows=60, seed=1)
    eager = specs / "eager" / "model.yaml"
    spec = yaml.safe_load(eager.read_text())
    spec["retrain"] = {"on_drift": True, "sustained_windows": 2, "cooldown_minutes": 10}
    eager.write_text(yaml.safe_dump(spec))
    (tmp_path / "jobs").mkdir()
    settings = get_settings(home=tmp_path / "home", jobs_dir=tmp_path / "jobs")
    store = MonitorStore(f"sqlite:///{tmp_path / 'monitor.db'}")
    hook = RetrainHook(settings, store, specs, clock=lambda: NOW)

    hook("calm", 9)  # its spec has no retrain block: retraining is off
    hook("eager", 1)  # below its sustained_windows
    hook("unknown", 9)  # no spec of it
    assert store.retrains() == []
    hook("eager", 2)
    [row] = store.retrains()
    store.close()
    assert (row["model"], row["status"], row["job_id"]) == ("eager", "submit_failed", None)
    assert row["reason"] == "eager: drift at the last 2 consecutive evaluations"
    assert row["details"]["spec"] == str(eager.resolve())
    assert "train.py not found" in row["details"]["error"]
