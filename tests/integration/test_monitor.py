"""The monitor actor on the session's Ray with a real SQLite store: exactly-once flushes from
concurrent senders, a restart that keeps history, alerts on status changes, the CLI."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlfleet.monitoring.actor import call, ensure_monitor, find_monitor
from mlfleet.monitoring.protocol import Flush
from mlfleet.monitoring.sketch import Counts
from mlfleet.monitoring.state import StaticReferences
from mlfleet.monitoring.store import MonitorStore
from mlfleet.monitoring.window import minute_of
from mlfleet.settings import Settings, get_settings
from tests.support import REPO
from tests.support.cli import run_cli
from tests.support.messy import example_spec_copy
from tests.support.monitoring import flush, reference, sketch, total
from tests.support.waiting import wait_for

pytestmark = pytest.mark.ray

REF = reference("churn", "1")


def kill_monitor() -> None:
    import ray

    handle = find_monitor()
    if handle is not None:
        ray.kill(handle, no_restart=True)
    wait_for(lambda: find_monitor() is None, timeout=60, what="the monitor's name released")


@pytest.fixture
def monitor_settings(ray_session: None, tmp_path: Path) -> Iterator[Settings]:
    kill_monitor()  # a monitor left by another test module on the session's cluster
    yield get_settings(home=tmp_path, monitor_commit_seconds=0.05)
    kill_monitor()


@pytest.fixture
def monitor(monitor_settings: Settings) -> Any:
    return ensure_monitor(monitor_settings, reference_loader=StaticReferences([REF]))


def ingest(handle: Any, sent: Flush) -> bool:
    """Send a flush and wait for its acknowledgement; whether it was new."""
    ack = call(handle.ingest.remote(sent))
    assert ack.seq == sent.seq
    return not ack.duplicate


def current(handle: Any) -> dict[str, list[int]]:
    detail = call(handle.model.remote("churn"))["detail"]
    return {c["name"]: c["current"] for c in [*detail["features"], detail["prediction"]]}


def as_lists(counts: Counts) -> dict[str, list[int]]:
    return {k: v.tolist() for k, v in counts.columns.items()}


def test_three_concurrent_senders_are_counted_exactly_once(
    monitor: Any, monitor_settings: Settings
) -> None:
    now = minute_of(time.time())
    parts = {
        name: [sketch(REF, 50 + 10 * i, seed=100 * s + i) for i in range(6)]
        for s, name in enumerate(("gateway", "pool-1", "pool-2"))
    }
    results: dict[str, list[bool]] = {}

    def send(name: str) -> None:
        new = []
        for seq, counts in enumerate(parts[name]):
            # Minutes out of order; every flush is sent twice, odd ones before any answer.
            sent = flush(name, seq, (REF, now - (seq * 7 % 3), counts))
            if seq % 2:
                # An async actor may run them in either order: one of them is new.
                first, again = monitor.ingest.remote(sent), monitor.ingest.remote(sent)
                new += sorted([not call(first).duplicate, not call(again).duplicate], reverse=True)
            else:
                new += [ingest(monitor, sent), ingest(monitor, sent)]
        results[name] = new

    threads = [threading.Thread(target=send, args=(name,)) for name in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == {name: [True, False] * 6 for name in parts}

    call(monitor.evaluate.remote())
    expected = total(*(c for counts in parts.values() for c in counts))
    assert call(monitor.model.remote("churn"))["rows"] == expected.rows
    assert current(monitor) == as_lists(expected)
    health = call(monitor.health.remote())
    assert health["duplicates"] == 18 and health["flushes"] == 18
    stored = MonitorStore(monitor_settings.monitor_store)
    assert sum(b.rows for b in stored.load_buckets(0)) == expected.rows


def test_a_killed_monitor_restarts_with_its_history(
    monitor: Any, monitor_settings: Settings
) -> None:
    import ray

    now = minute_of(time.time())
    sent = [flush("gw", seq, (REF, now - seq, sketch(REF, 300, seed=seq))) for seq in range(3)]
    for one in sent:
        assert ingest(monitor, one)
    call(monitor.evaluate.remote())
    before_fleet = call(monitor.fleet.remote())
    before = call(monitor.model.remote("churn"))
    pid = call(monitor.health.remote())["pid"]

    ray.kill(monitor, no_restart=False)  # as if its process died: Ray starts it again
    wait_for(
        lambda: call(monitor.health.remote(), timeout=120)["pid"] != pid,
        timeout=120,
        what="the monitor restarted",
    )
    assert not ingest(monitor, sent[1])  # resent after the restart: not counted again
    after = call(monitor.model.remote("churn"))
    assert after["detail"] == before["detail"]
    assert after["rows"] == before["rows"] == 900
    assert [m["status"] for m in call(monitor.fleet.remote())] == [
        m["status"] for m in before_fleet
    ]
    again = ensure_monitor(monitor_settings)  # idempotent: the same actor
    assert call(again.health.remote())["pid"] != pid
    assert again._actor_id == monitor._actor_id


def test_alerts_are_stored_on_status_changes_only(monitor: Any, monitor_settings: Settings) -> None:
    now = minute_of(time.time())
    assert ingest(monitor, flush("gw", 0, (REF, now, sketch(REF, 2000, shift=2.0))))
    for _ in range(3):
        [row] = call(monitor.evaluate.remote())
        assert row["status"] == "drift"
    assert row["drifted_features"] == ["x0", "x1", "x2"]
    assert row["last_alert"]["status"] == "drift" and row["last_alert"]["previous"] is None
    alerts = MonitorStore(monitor_settings.monitor_store).alerts("churn")
    assert len(alerts) == 1 and alerts[0]["reason"].startswith("3 of 4 features drifted")
    assert row["drift_streak"] >= 3


def test_cli_status_and_show_and_their_exit_codes(
    monitor_settings: Settings, tmp_path: Path
) -> None:
    import ray

    env = {**os.environ, "MLFLEET_HOME": str(tmp_path / "cli-home")}
    env.pop("MLFLEET_RAY_ADDRESS", None)
    no_fleet = run_cli(["monitor", "status"], env)
    assert no_fleet.returncode == 1 and "no fleet is running" in no_fleet.stderr
    assert "Traceback" not in no_fleet.stderr

    env["MLFLEET_RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    no_monitor = run_cli(["monitor", "status"], env)
    assert no_monitor.returncode == 1, no_monitor.stderr
    assert "no monitor runs on this cluster" in no_monitor.stderr

    handle = ensure_monitor(monitor_settings, reference_loader=StaticReferences([REF]))
    assert ingest(handle, flush("gw", 0, (REF, minute_of(time.time()), sketch(REF, 500))))
    call(handle.evaluate.remote())
    status = run_cli(["monitor", "status", "--json"], env)
    assert status.returncode == 0, status.stderr
    out = json.loads(status.stdout)
    assert [(m["model"], m["status"], m["rows"]) for m in out["models"]] == [("churn", "ok", 500)]
    assert out["monitor"]["dropped_rows"] == 0
    table = run_cli(["monitor", "status"], env)
    assert table.returncode == 0 and "churn" in table.stdout and "ok" in table.stdout
    show = run_cli(["monitor", "show", "churn", "--histograms"], env)
    assert show.returncode == 0, show.stderr
    assert "x0" in show.stdout and "[-3, -2.5)" in show.stdout and "prediction" in show.stdout
    unknown = run_cli(["monitor", "show", "nope"], env)
    assert unknown.returncode == 2  # NotFoundError's exit code, as for `mlfleet models show`
    assert unknown.stderr.strip() == "error: no monitored model is named 'nope'"

    # An operator's pause: acknowledgements tell senders, status shows it, resume ends it.
    paused = run_cli(["monitor", "pause"], env)
    assert paused.returncode == 0 and "recording paused" in paused.stdout, paused.stderr
    assert ingest(handle, flush("gw", 1, (REF, minute_of(time.time()), sketch(REF, 10))))
    ack = call(handle.ingest.remote(flush("gw", 2, (REF, minute_of(time.time()), sketch(REF, 1)))))
    assert ack.recording is False
    table = run_cli(["monitor", "status"], env)
    assert "recording paused" in table.stdout and "by cli:" in table.stdout
    resumed = run_cli(["monitor", "resume"], env)
    assert resumed.returncode == 0 and "paused" not in resumed.stdout, resumed.stdout
    assert call(handle.recording.remote())["recording"] is True
    assert "recording paused" not in run_cli(["monitor", "status"], env).stdout


def test_a_monitor_that_cannot_start_says_why_and_is_removed(
    monitor_settings: Settings,
) -> None:
    from mlfleet.monitoring.state import MonitorError

    broken = monitor_settings.model_copy(update={"monitor_store_url": "mysql://db/monitor"})
    with pytest.raises(MonitorError, match=r"the monitor cannot start: .*mysql is not supported"):
        ensure_monitor(broken)
    wait_for(lambda: find_monitor() is None, timeout=60, what="the broken monitor removed")


def test_the_fleet_specs_configure_the_monitor(monitor_settings: Settings, tmp_path: Path) -> None:
    import yaml

    from mlfleet.errors import UsageError

    path = example_spec_copy(REPO, tmp_path / "specs", "penguins", num_samples=1)
    spec = yaml.safe_load(path.read_text())
    spec["monitoring"] = {"window": {"minutes": 5}, "method": "bogus"}
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(UsageError, match="penguin-species: monitoring: unknown drift method"):
        ensure_monitor(monitor_settings, specs_dir=path.parent.parent)
    assert find_monitor() is None  # refused before anything started

    spec["monitoring"]["method"] = "jensenshannon"
    spec["retrain"] = {"on_drift": True, "sustained_windows": 2}
    path.write_text(yaml.safe_dump(spec))
    handle = ensure_monitor(monitor_settings, specs_dir=path.parent.parent)
    [row] = call(handle.evaluate.remote())
    assert (row["model"], row["status"], row["reason"]) == (
        "penguin-species",
        "insufficient",
        "no traffic in the window",
    )
    assert row["window"]["minutes"] == 5 and row["method"] == "jensenshannon"
    assert row["sustained_windows"] == 2
    plugins = call(handle.health.remote())["plugin_errors"]
    assert plugins == {}
