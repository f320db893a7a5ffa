"""The monitor's state on an in-memory SQLite store: exactly-once flushes, exact buckets,
restarts, status changes, sustained drift, configuration from the spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlfleet.errors import NotFoundError, UsageError
from mlfleet.monitoring.performance import ConfusionCounts
from mlfleet.monitoring.reference import PREDICTION
from mlfleet.monitoring.sketch import Counts
from mlfleet.monitoring.state import MonitorError, MonitorState, StaticReferences, model_config
from mlfleet.monitoring.store import Alert, Batch, MonitorStore
from mlfleet.monitoring.window import minute_of
from mlfleet.settings import get_settings
from mlfleet.spec import PREDICTION as SPEC_PREDICTION
from mlfleet.spec import ModelSpec
from tests.support.monitoring import flush, reference, sketch, total

T0 = 1_800_000_000.0 - 1_800_000_000.0 % 60 + 30  # half way through a minute
M = minute_of(T0)
REF = reference("churn", "1")
REF2 = reference("churn", "2")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def minutes(self, n: float) -> None:
        self.now += 60 * n


def spec(**extra: Any) -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "name": "churn",
            "contract": "contract.yaml",
            "sources": ["data.csv"],
            "task": "classification",
            "search": {
                "metric": "accuracy",
                "candidates": [{"estimator": "sklearn.linear_model.LogisticRegression"}],
            },
            **extra,
        }
    )


def make_state(
    clock: Clock,
    store: MonitorStore | None = None,
    *,
    specs: dict[str, ModelSpec] | None = None,
    **hooks: Any,
) -> MonitorState:
    return MonitorState(
        store or MonitorStore("sqlite://"),
        get_settings(),
        specs=specs,
        loader=StaticReferences([REF, REF2]),
        clock=clock,
        **hooks,
    )


def feature_counts(detail: dict[str, Any]) -> dict[str, list[int]]:
    return {c["name"]: c["current"] for c in [*detail["features"], detail["prediction"]]}


def as_lists(counts: Counts) -> dict[str, list[int]]:
    return {k: v.tolist() for k, v in counts.columns.items()}


def test_three_senders_merge_exactly_once_in_any_order() -> None:
    clock = Clock()
    state = make_state(clock)
    a, b, c, late = (sketch(REF, n, seed=s) for n, s in ((300, 1), (250, 2), (400, 3), (120, 4)))
    assert state.ingest(flush("a", 0, (REF, M, a)))
    assert state.ingest(flush("b", 0, (REF, M - 1, b), (REF, M, a)))
    assert state.ingest(flush("c", 7, (REF, M, c)))
    assert state.ingest(flush("c", 6, (REF, M - 2, late)))  # an older seq and minute, late
    assert not state.ingest(flush("a", 0, (REF, M, a)))  # resent before it was stored
    state.commit()
    assert not state.ingest(flush("b", 0, (REF, M - 1, b), (REF, M, a)))  # and after
    assert not state.ingest(flush("c", 6, (REF, M - 2, late)))
    state.commit()

    expected = total(a, b, a, c, late)
    detail = state.model("churn")["detail"]
    assert detail["rows"] == expected.rows == 300 + 250 + 300 + 400 + 120
    assert feature_counts(detail) == as_lists(expected)
    assert detail["buckets"] == [M, M - 1, M - 2]
    assert state.health()["duplicates"] == 3 and state.health()["flushes"] == 4
    stored = {r.minute: r.rows for r in state.store.load_buckets(0)}
    assert stored == {M: 300 + 300 + 400, M - 1: 250, M - 2: 120}
    assert state.sender_seq("c") == 7 and state.sender_seq("a") == 0


def test_a_restarted_state_serves_the_same_buckets_and_refuses_resent_flushes() -> None:
    clock = Clock()
    store = MonitorStore("sqlite://")
    first = make_state(clock, store)
    parts = [sketch(REF, 400, seed=s) for s in range(3)]
    for seq, counts in enumerate(parts):
        first.ingest(flush("gw-1", seq, (REF, M - seq, counts)))
    first.commit()
    before = first.model("churn")
    first.commit()

    again = make_state(clock, store)  # what a restarted actor builds
    assert not again.ingest(flush("gw-1", 1, (REF, M - 1, parts[1])))
    after = again.model("churn")
    assert after["detail"] == before["detail"]
    assert [r["model"] for r in again.fleet()] == ["churn"]
    assert again.fleet()[0]["status"] == before["status"] == "ok"
    assert again.ingest(flush("gw-1", 3, (REF, M, parts[0])))  # the next one is applied
    again.commit()
    assert again.model("churn")["rows"] == 1200  # the last evaluation's, until the next one
    assert again.evaluate_model("churn")["rows"] == 1600


def test_sequence_numbers_arrive_in_any_order_and_long_gaps_are_given_up() -> None:
    clock = Clock()
    state = make_state(clock)
    one = sketch(REF, 10)
    for seq in (2, 0, 3):
        assert state.ingest(flush("s", seq, (REF, M, one)))
    assert state.ingest(flush("s", 1, (REF, M, one)))  # the gap, filled late
    assert not any(state.ingest(flush("s", seq, (REF, M, one))) for seq in range(4))
    for seq in range(5, 5 + 300):  # seq 4 never comes
        state.ingest(flush("s", seq, (REF, M, one)))
    assert not state.ingest(flush("s", 4, (REF, M, one)))  # given up, as documented
    state.commit()
    restored = make_state(clock, state.store)
    assert restored.sender_seq("s") == 304
    assert not restored.ingest(flush("s", 200, (REF, M, one)))


def test_a_failed_write_puts_memory_back_so_the_resent_flush_counts_once() -> None:
    class FlakyStore(MonitorStore):
        fail = False

        def write(self, batch: Batch, *, at: float | None = None) -> None:
            if self.fail:
                raise OSError("disk full")
            super().write(batch, at=at)

    clock = Clock()
    store = FlakyStore("sqlite://")
    state = make_state(clock, store)
    a, b = sketch(REF, 300, seed=1), sketch(REF, 200, seed=2)
    state.ingest(flush("a", 0, (REF, M, a)))
    state.commit()
    store.fail = True
    state.ingest(flush("a", 1, (REF, M, b)))
    with pytest.raises(OSError):
        state.commit()
    assert state.health()["commit_errors"] == 1
    store.fail = False
    assert state.ingest(flush("a", 1, (REF, M, b)))  # never acknowledged: applied again
    state.commit()
    assert feature_counts(state.model("churn")["detail"]) == as_lists(total(a, b))


def test_late_parts_reach_stored_buckets_and_expired_ones_are_refused() -> None:
    clock = Clock()
    state = make_state(clock)
    old = sketch(REF, 100)
    state.ingest(flush("a", 0, (REF, M, old)))
    state.commit()
    clock.minutes(30)
    assert state.expire() == 1  # out of every window: it leaves memory, not the store
    state.ingest(flush("a", 1, (REF, M, old)))  # a sender that was cut off for 30 minutes
    state.commit()
    assert {r.minute: r.rows for r in state.store.load_buckets(0)} == {M: 200}
    clock.minutes(8 * 24 * 60)  # past the 7-day retention
    state.ingest(flush("a", 2, (REF, M, old)))
    assert state.health()["late_rows"] == 100
    state.commit()
    assert state.prune() == 1 and state.store.load_buckets(0) == []


def test_alerts_on_status_changes_only_and_after_they_are_stored() -> None:
    clock = Clock()
    alerts: list[Alert] = []
    state = make_state(clock, on_alert=alerts.append)

    def minute_of_traffic(seq: int, shift: float) -> dict[str, Any]:
        state.ingest(flush("gw", seq, (REF, minute_of(clock.now), sketch(REF, 1000, shift=shift))))
        summary = state.evaluate_model("churn")
        state.commit()
        return summary

    assert minute_of_traffic(0, 0.0)["status"] == "ok"
    assert state.evaluate_model("churn")["status"] == "ok"
    state.commit()
    assert alerts == []  # a first status of ok is no change
    clock.minutes(11)
    drifted = state.evaluate_model("churn")
    assert drifted["status"] == "insufficient" and drifted["reason"] == "no traffic in the window"
    state.commit()
    assert alerts == []  # a quiet window says nothing
    summary = minute_of_traffic(1, 2.0)
    assert summary["status"] == "drift"
    assert summary["drifted_features"] == ["x0", "x1", "x2"]
    assert [(a.previous, a.status, a.version) for a in alerts] == [("ok", "drift", "1")]
    assert alerts[0].reason == "3 of 4 features drifted (x0, x1, x2); predictions ok"
    for _ in range(3):
        assert state.evaluate_model("churn")["status"] == "drift"
        state.commit()
    assert len(alerts) == 1
    clock.minutes(11)
    minute_of_traffic(2, 0.0)
    assert [(a.previous, a.status) for a in alerts] == [("ok", "drift"), ("drift", "ok")]
    history = state.store.status_history("churn")
    assert [(h["previous"], h["status"]) for h in history] == [
        ("drift", "ok"),
        ("insufficient", "drift"),
        ("ok", "insufficient"),
        ("insufficient", "ok"),
    ]
    assert state.fleet()[0]["last_alert"]["status"] == "ok"


def test_sustained_drift_counts_consecutive_drift_evaluations() -> None:
    clock = Clock()
    calls: list[tuple[str, int]] = []
    state = make_state(
        clock,
        specs={"churn": spec(retrain={"on_drift": True, "sustained_windows": 3})},
        on_sustained_drift=lambda model, n: calls.append((model, n)),
    )
    state.ingest(flush("gw", 0, (REF, M, sketch(REF, 1000, shift=2.0))))
    for _ in range(4):
        state.evaluate_model("churn")
        state.commit()
    assert calls == [("churn", 3), ("churn", 4)]
    assert state.fleet()[0]["drift_streak"] == 4
    assert make_state(clock, state.store).fleet()[0]["drift_streak"] == 4  # kept on restart
    clock.minutes(11)
    state.ingest(flush("gw", 1, (REF, minute_of(clock.now), sketch(REF, 1000))))
    state.evaluate_model("churn")  # ok: the streak ends
    state.ingest(flush("gw", 2, (REF, minute_of(clock.now) + 1, sketch(REF, 9000, shift=2.0))))
    clock.minutes(1)
    for _ in range(2):
        assert state.evaluate_model("churn")["status"] == "drift"
    state.commit()
    assert calls == [("churn", 3), ("churn", 4)]


def test_the_status_is_about_the_version_with_most_rows() -> None:
    clock = Clock()
    state = make_state(clock)
    state.ingest(flush("gw", 0, (REF, M, sketch(REF, 900, shift=2.0))))
    state.ingest(flush("gw", 1, (REF2, M, sketch(REF2, 300))))
    summary = state.evaluate_model("churn")
    assert summary["version"] == "1" and summary["status"] == "drift"
    assert summary["versions"] == [
        {"version": "1", "status": "drift", "rows": 900},
        {"version": "2", "status": "ok", "rows": 300},
    ]
    assert state.model("churn", "2")["detail"]["status"] == "ok"
    state.ingest(flush("gw", 2, (REF2, M, sketch(REF2, 1000, seed=5))))
    summary = state.evaluate_model("churn")
    assert summary["version"] == "2" and summary["status"] == "ok"
    with pytest.raises(NotFoundError):
        state.model("churn", "7")
    with pytest.raises(NotFoundError):
        state.model("nope")


def test_a_version_without_reference_is_insufficient_with_a_reason() -> None:
    clock = Clock()
    state = make_state(clock)
    other = reference("churn", "9")
    state.ingest(flush("gw", 0, (other, M, sketch(other, 500))))
    summary = state.evaluate_model("churn")
    assert summary["status"] == "insufficient"
    assert summary["error"] == summary["reason"] == "no reference for version 9"


def test_histograms_statistics_and_performance_in_the_detail() -> None:
    clock = Clock()
    state = make_state(clock)
    counts = sketch(REF, 1000, confidence=0.8)
    state.ingest(flush("gw", 0, (REF, M, counts)))
    truth = ["yes"] * 90 + ["no"] * 10
    state.add_realised("churn", "1", M, ConfusionCounts.of(["no", "yes"], truth, ["yes"] * 100))
    state.commit()
    out = state.model("churn")
    x0 = out["detail"]["features"][0]
    assert x0["labels"][0] == "< -3" and x0["labels"][-1] == "> 3" and len(x0["labels"]) == 14
    assert x0["reference"] == REF.column("x0").counts.tolist()
    assert x0["current"] == counts.columns["x0"].tolist()
    assert set(x0["statistics"]) == {"psi", "jensenshannon", "chisquare", "ks"}
    assert x0["value"] == x0["statistics"]["psi"] and x0["verdict"] == "ok"
    plan = out["detail"]["features"][-1]
    assert plan["labels"] == ["basic", "pro", "team", "other"] and "ks" not in plan["statistics"]
    assert out["detail"]["prediction"]["name"] == PREDICTION == SPEC_PREDICTION
    assert out["performance"]["estimated_accuracy"] == pytest.approx(0.8)
    realised = out["performance"]["realised"]
    assert realised == {"rows": 100, "accuracy": 0.9, "macro_f1": pytest.approx(0.9 / 1.9)}
    restored = make_state(clock, state.store).model("churn")
    assert restored["performance"] == out["performance"]


def test_spec_monitoring_block_picks_methods_thresholds_and_windows() -> None:
    clock = Clock()
    monitoring = {
        "window": {"minutes": 3, "rows": 800},
        "method": "jensenshannon",
        "drift": 0.3,
        "min_rows": 50,
        "features": {"x0": {"method": "ks", "drift": 0.5}, "x1": {"drift": 0.01}},
    }
    cfg = model_config(spec(monitoring=monitoring), get_settings())
    assert (cfg.window_minutes, cfg.window_rows) == (3, 800)
    assert cfg.rule_for("plan", "categorical").method.name == "jensenshannon"
    ks_rule = cfg.rule_for("x0", "numeric")
    assert ks_rule.method.name == "ks" and ks_rule.thresholds()["drift"] == 0.5
    assert cfg.rule_for("x1", "numeric").thresholds()["drift"] == 0.01
    state = make_state(clock, specs={"churn": spec(monitoring=monitoring)})
    for minute in range(M - 4, M + 1):
        state.ingest(flush("gw", minute - M + 4, (REF, minute, sketch(REF, 300, seed=minute))))
    detail = state.model("churn")["detail"]
    assert detail["buckets"] == [M, M - 1, M - 2]  # 900 rows: the row limit came first
    methods = {c["name"]: (c["method"], c["drift"]) for c in detail["features"]}
    assert methods == {
        "x0": ("ks", 0.5),
        "x1": ("jensenshannon", 0.01),
        "x2": ("jensenshannon", 0.3),
        "plan": ("jensenshannon", 0.3),
    }
    ks_everywhere = model_config(spec(monitoring={"method": "ks"}), get_settings())
    assert ks_everywhere.rule_for("plan", "categorical").method.name == "psi"


@pytest.mark.parametrize(
    ("monitoring", "message"),
    [
        ({"method": "wasserstein"}, "unknown drift method 'wasserstein'"),
        ({"drift": 0.1, "warning": 0.3}, "warning threshold 0.3 lies beyond"),
        ({"features": {"x0": {"method": "nope"}}}, "monitoring.features.x0: unknown drift"),
    ],
)
def test_bad_monitoring_blocks_name_the_problem(monitoring: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        model_config(spec(monitoring=monitoring), get_settings())


def test_feedback_without_a_prediction_log_is_refused_and_predictions_are_counted() -> None:
    from mlfleet.monitoring.protocol import Label, PredictionRecord

    clock = Clock()
    state = make_state(clock)
    record = PredictionRecord("r1", "churn", "1", T0, [{"x0": 0.1}], ["yes"])
    sent = flush("gw", 0, (REF, M, sketch(REF, 10)))
    sent.predictions = [record]
    state.ingest(sent)
    assert state.health()["unlogged_predictions"] == 1
    with pytest.raises(MonitorError, match="no prediction log"):
        state.feedback("churn", [Label("r1", "yes")])

    class Log:
        def __init__(self) -> None:
            self.records: list[PredictionRecord] = []

        def record(self, records: Any) -> None:
            self.records.extend(records)

        def feedback(self, model: str, labels: Any) -> Any:
            from mlfleet.monitoring.protocol import FeedbackResult

            return FeedbackResult(matched=len(labels))

    log = Log()
    state.prediction_log = log
    sent = flush("gw", 1, (REF, M, sketch(REF, 10)))
    sent.predictions = [record]
    state.ingest(sent)
    assert log.records == [record]
    assert state.feedback("churn", [Label("r1", "yes")]).matched == 1


def test_store_records_alert_deliveries_and_retrains() -> None:
    store = MonitorStore("sqlite://")
    alert = Alert("a1", "churn", "1", T0, "ok", "drift", "x drifted", {"rows": 5})
    store.record_alert(alert)
    store.record_alert(alert)  # idempotent
    store.update_alert("a1", "webhook", {"ok": True, "attempts": 2})
    [row] = store.alerts("churn")
    assert row["deliveries"] == {"webhook": {"ok": True, "attempts": 2}}
    assert row["details"] == {"rows": 5} and row["previous"] == "ok"
    first = store.record_retrain("churn", reason="sustained drift", version="1", at=T0)
    second = store.record_retrain("churn", reason="again", version="1", at=T0 + 60)
    store.update_retrain(second, status="succeeded", job_id="raysubmit_1", details={"v": "2"})
    assert store.last_retrains()["churn"]["id"] == second
    assert store.last_retrains()["churn"]["job_id"] == "raysubmit_1"
    assert [r["id"] for r in store.retrains("churn")] == [second, first]
    with pytest.raises(KeyError):
        store.update_retrain("missing", status="x")
    assert "monitor_retrains" in __import__("sqlalchemy").inspect(store.engine).get_table_names()


def test_evaluation_schedule_completed_buckets_and_stale_models() -> None:
    clock = Clock()
    state = make_state(clock, specs={"churn": spec()})
    assert state.due_models() == ["churn"]  # never evaluated
    state.evaluate_all()
    assert state.due_models() == []
    state.ingest(flush("gw", 0, (REF, M, sketch(REF, 10))))
    assert state.due_models() == []  # the first bucket is still filling
    state.ingest(flush("gw", 1, (REF, M + 1, sketch(REF, 10))))
    assert state.due_models() == ["churn"]  # minute M is complete
    state.evaluate_model("churn")
    clock.minutes(1)
    assert state.due_models() == ["churn"]  # a minute since the last evaluation


def test_a_part_in_another_layout_is_refused_not_the_flush() -> None:
    clock = Clock()
    state = make_state(clock)
    good = sketch(REF, 100)
    state.ingest(flush("gw", 0, (REF, M, good)))
    bad = Counts(rows=5, columns={"x0": np.zeros(3, np.int64)}, nulls={})
    assert state.ingest(flush("gw", 1, (REF, M, bad), (REF, M - 1, good)))
    assert state.health()["rejected_rows"] == 5
    state.commit()
    assert state.model("churn")["rows"] == 200


def test_counts_pickle_as_one_array_and_read_back_exactly() -> None:
    import copy
    import pickle

    counts = sketch(REF, 300)
    back = pickle.loads(pickle.dumps(counts))
    assert as_lists(back) == as_lists(counts) and back.nulls == counts.nulls
    assert (back.rows, back.scored, back.confidence) == (300, 300, counts.confidence)
    twin = copy.deepcopy(back)
    twin.add(counts)  # columns are views of one array: adding must not spill over
    assert as_lists(twin) == {k: [2 * x for x in v] for k, v in as_lists(counts).items()}
    assert as_lists(back) == as_lists(counts)
    assert pickle.loads(pickle.dumps(Counts())).columns == {}


def test_reads_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    import time

    store = MonitorStore(f"sqlite:///{tmp_path / 'monitor.db'}")
    store.record_alert(Alert("a1", "churn", "1", T0, None, "drift", "x", {}))
    with store.engine.begin() as conn:  # a writer holding SQLite's write lock
        conn.exec_driver_sql("DELETE FROM monitor_alerts")
        started = time.monotonic()
        assert [a["id"] for a in store.alerts()] == ["a1"]  # the last committed state
        assert time.monotonic() - started < 1.0
    assert store.alerts() == []
