"""The prediction sites' sender: batches binned per minute, sequence numbers, resends,
the bound on what waits while the monitor is away, and the switch that turns it off.

The monitor is a send function injected here (pure logic, no Ray)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlfleet.monitoring.protocol import Ack, Flush
from mlfleet.monitoring.reference import (
    PREDICTION,
    Calibration,
    MonitorReference,
    categorical_reference,
    numeric_reference,
)
from mlfleet.monitoring.sender import SketchSender, sender_id
from mlfleet.monitoring.sketch import Binner
from mlfleet.settings import Settings, get_settings

MINUTE = 29_000_000  # some minute since the epoch
REFERENCE = MonitorReference(
    model="penguins",
    version="1",
    task="classification",
    features=(
        numeric_reference("mass", [2000.0, 3000.0, 4000.0, 7000.0], [10, 20, 30]),
        categorical_reference("island", {"biscoe": 30, "dream": 20}),
    ),
    prediction=categorical_reference(PREDICTION, {"adelie": 25, "gentoo": 35}),
    calibration=Calibration(np.array([0.5, 1.0]), np.array([0.4, 0.9])),
)


def frame(masses: list[float | None], islands: list[str | None]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "mass": np.array([np.nan if m is None else m for m in masses], np.float64),
            "island": pd.Series(islands, dtype=object),
        }
    )


def result(predictions: list[str], top: list[float]) -> dict[str, Any]:
    return {
        "predictions": predictions,
        "probabilities": [[p, 1 - p] for p in top],
        "classes": ["adelie", "gentoo"],
    }


class Monitor:
    """Records every flush it is sent; ``down`` makes sends fail."""

    def __init__(self) -> None:
        self.sent: list[Flush] = []
        self.stored: dict[tuple[str, int], Flush] = {}
        self.down = False
        self.recording = True  # what the monitor tells senders (an operator's pause)

    async def send(self, flush: Flush) -> Ack:
        self.sent.append(flush)
        if self.down:
            raise ConnectionError("monitor unreachable")
        duplicate = (flush.sender, flush.seq) in self.stored
        self.stored.setdefault((flush.sender, flush.seq), flush)
        return Ack(seq=flush.seq, duplicate=duplicate, recording=self.recording)

    async def asked(self) -> bool:
        if self.down:
            raise ConnectionError("monitor unreachable")
        return self.recording


class Clock:
    def __init__(self, minute: int = MINUTE) -> None:
        self.now = minute * 60.0 + 1

    def __call__(self) -> float:
        return self.now


def make(
    monitor: Monitor,
    *,
    clock: Clock | None = None,
    load: Callable[[str, str], MonitorReference | None] | None = None,
    **overrides: Any,
) -> tuple[SketchSender, list[tuple[str, str]]]:
    loads: list[tuple[str, str]] = []

    def load_reference(model: str, version: str) -> MonitorReference | None:
        loads.append((model, version))
        if load is not None:
            return load(model, version)
        return MonitorReference(
            model,
            version,
            REFERENCE.task,
            REFERENCE.features,
            REFERENCE.prediction,
            REFERENCE.calibration,
        )

    settings: Settings = get_settings(**{"monitor_flush_seconds": 60.0, **overrides})
    sender = SketchSender(
        "test-sender",
        settings,
        send=monitor.send,
        load=load_reference,
        clock=clock or Clock(),
        recording=monitor.asked,
    )
    return sender, loads


def counts_json(flush: Flush) -> dict[tuple[str, str, int], dict[str, Any]]:
    return {(p.model, p.version, p.minute): p.counts.to_json() for p in flush.parts}


def test_sender_ids_are_unique_per_process_and_name_their_role() -> None:
    a, b = sender_id("pool"), sender_id("pool")
    assert a != b and a.startswith("pool-") and b.startswith("pool-")


def test_recording_only_buffers_and_a_flush_bins_each_version_and_minute_in_one_batch() -> None:
    monitor, clock = Monitor(), Clock()
    sender, loads = make(monitor, clock=clock)
    first = [
        (frame([2500.0], ["dream"]), result(["adelie"], [0.9])),
        (frame([3500.0, None], ["biscoe", "atlantis"]), result(["gentoo", "adelie"], [0.6, 0.8])),
    ]
    for f, r in first:
        sender.record("penguins", "1", f, r)
    sender.record("penguins", "2", frame([8000.0], [None]), result(["gentoo"], [0.7]))
    clock.now += 60  # the next minute
    later = (frame([1000.0], ["dream"]), result(["emperor"], [1.0]))
    sender.record("penguins", "1", *later)
    assert loads == [] and monitor.sent == []  # nothing binned nor sent on the request path
    assert sender.stats()["buffered_rows"] == 5

    ack = asyncio.run(sender.flush())
    assert ack == Ack(seq=1)
    assert sorted(loads) == [("penguins", "1"), ("penguins", "2")]  # once per version
    (flush,) = monitor.sent
    assert flush.sender == "test-sender" and flush.seq == 1 and flush.dropped_rows == 0
    assert flush.predictions == []  # prediction records only when asked (the gateway)
    binner = Binner(REFERENCE)
    batch = pd.concat([f for f, _ in first], ignore_index=True)
    expected = binner.count(
        batch,
        [p for _, r in first for p in r["predictions"]],
        [q for _, r in first for q in r["probabilities"]],
    )
    parts = counts_json(flush)
    assert set(parts) == {
        ("penguins", "1", MINUTE),
        ("penguins", "1", MINUTE + 1),
        ("penguins", "2", MINUTE),
    }
    assert parts[("penguins", "1", MINUTE)] == expected.to_json()
    assert parts[("penguins", "1", MINUTE)]["rows"] == 3
    assert (
        parts[("penguins", "1", MINUTE + 1)]
        == binner.count(later[0], later[1]["predictions"], later[1]["probabilities"]).to_json()
    )
    assert parts[("penguins", "2", MINUTE)]["nulls"]["island"] == 1
    # Calibrated confidences: 0.9 -> 0.8, 0.6 -> 0.5, 0.8 -> 0.7 on the map (0.5, 0.4)-(1, 0.9).
    assert parts[("penguins", "1", MINUTE)]["scored"] == 3
    assert parts[("penguins", "1", MINUTE)]["confidence"] == pytest.approx(2.0)
    stats = sender.stats()
    assert stats["buffered_rows"] == 0 and stats["pending_rows"] == 0
    assert stats["counted_rows"] == 5 and stats["logged_rows"] == 0


def test_sequence_numbers_increase_by_one_per_acknowledged_flush() -> None:
    monitor = Monitor()
    sender, _ = make(monitor)

    async def go() -> list[Ack | None]:
        acks = []
        for i in range(3):
            sender.record(
                "penguins", "1", frame([2500.0 + i], ["dream"]), result(["adelie"], [0.9])
            )
            acks.append(await sender.flush())
        acks.append(await sender.flush())  # nothing new: nothing sent
        return acks

    acks = asyncio.run(go())
    assert [a.seq if a else None for a in acks] == [1, 2, 3, None]
    assert [f.seq for f in monitor.sent] == [1, 2, 3]
    assert sender.stats()["acked_seq"] == 3 and sender.stats()["flushes_acked"] == 3


def test_an_unacknowledged_flush_is_resent_with_its_seq_and_content_and_new_counts_follow() -> None:
    monitor, clock = Monitor(), Clock()
    sender, _ = make(monitor, clock=clock)

    async def go() -> None:
        monitor.down = True
        sender.record("penguins", "1", frame([2500.0], ["dream"]), result(["adelie"], [0.9]))
        assert await sender.flush() is None
        first = monitor.sent[-1]
        assert sender.stats()["inflight_seq"] == 1
        # Meanwhile more traffic, over two minutes: it merges into one next flush.
        for minute in (0, 1, 1):
            clock.now = (MINUTE + minute) * 60 + 5
            sender.record("penguins", "1", frame([3500.0], ["biscoe"]), result(["gentoo"], [0.6]))
            assert await sender.flush() is None
        resent = monitor.sent[1:]
        assert all(f is first or f == first for f in resent)  # same seq, same content
        assert counts_json(first) == {
            ("penguins", "1", MINUTE): counts_json(first)[("penguins", "1", MINUTE)]
        }
        monitor.down = False
        ack = await sender.flush()
        assert ack is not None and ack.seq == 2

    asyncio.run(go())
    stored = monitor.stored
    assert sorted(stored) == [("test-sender", 1), ("test-sender", 2)]
    assert stored[("test-sender", 1)].parts[0].counts.rows == 1
    merged = counts_json(stored[("test-sender", 2)])
    assert {k: v["rows"] for k, v in merged.items()} == {
        ("penguins", "1", MINUTE): 1,
        ("penguins", "1", MINUTE + 1): 2,
    }
    assert sender.stats()["inflight_seq"] is None and sender.stats()["pending_rows"] == 0


def test_a_duplicate_acknowledgement_still_clears_the_flush() -> None:
    monitor = Monitor()
    sender, _ = make(monitor)
    lost: list[Flush] = []

    async def send_losing_first_ack(flush: Flush) -> Ack:
        ack = await monitor.send(flush)
        if not lost:
            lost.append(flush)
            raise TimeoutError("the ack was lost on the way back")
        return ack

    sender._send = send_losing_first_ack

    async def go() -> Ack | None:
        sender.record("penguins", "1", frame([2500.0], ["dream"]), result(["adelie"], [0.9]))
        assert await sender.flush() is None
        return await sender.flush()

    ack = asyncio.run(go())
    assert ack == Ack(seq=1, duplicate=True)
    assert [f.seq for f in monitor.sent] == [1, 1] and len(monitor.stored) == 1


def test_beyond_the_bound_the_oldest_rows_are_dropped_counted_and_reported() -> None:
    monitor, clock = Monitor(), Clock()
    sender, _ = make(monitor, clock=clock, monitor_max_pending_rows=10)
    recorded = 0

    async def go() -> None:
        nonlocal recorded
        monitor.down = True
        for minute in range(6):  # 6 minutes x 4 rows while the monitor is away
            clock.now = (MINUTE + minute) * 60 + 1
            sender.record(
                "penguins",
                "1",
                frame([2500.0] * 4, ["dream"] * 4),
                result(["adelie"] * 4, [0.9] * 4),
            )
            recorded += 4
            await sender.flush()
        stats = sender.stats()
        assert stats["dropped_rows"] > 0 and stats["pending_rows"] <= 10
        assert stats["dropped_rows"] + stats["pending_rows"] == recorded
        monitor.down = False
        await sender.flush()

    asyncio.run(go())
    delivered = sum(p.counts.rows for f in monitor.stored.values() for p in f.parts)
    dropped = sender.stats()["dropped_rows"]
    assert delivered + dropped == recorded and delivered <= 10
    # The newest minutes survive; the drop count travels with the next flush.
    minutes = {p.minute for f in monitor.stored.values() for p in f.parts}
    assert max(minutes) == MINUTE + 5 and MINUTE not in minutes
    assert max(f.dropped_rows for f in monitor.stored.values()) == dropped


def test_drops_alone_are_reported_in_an_empty_flush() -> None:
    monitor = Monitor()
    sender, _ = make(monitor, monitor_max_pending_rows=2)
    for _ in range(3):
        sender.record("penguins", "1", frame([2500.0], ["dream"]), result(["adelie"], [0.9]))
    assert sender.stats()["dropped_rows"] == 1  # trimmed right away on the request path
    asyncio.run(sender.flush())
    asyncio.run(sender.flush())
    assert [f.dropped_rows for f in monitor.sent] == [1]
    assert sum(p.counts.rows for p in monitor.sent[0].parts) == 2


def test_turned_off_recording_does_nothing() -> None:
    monitor = Monitor()
    sender, loads = make(monitor, monitoring_enabled=False)
    sender.record("penguins", "1", frame([2500.0], ["dream"]), result(["adelie"], [0.9]), log=True)
    assert asyncio.run(sender.flush()) is None
    assert monitor.sent == [] and loads == []
    assert sender.stats()["buffered_rows"] == 0 and sender.stats()["enabled"] is False


def test_the_gateway_logs_every_prediction_and_counts_only_what_it_predicted() -> None:
    monitor = Monitor()
    sender, _ = make(monitor)
    inline = frame([2500.0, None], ["dream", None])
    forwarded = frame([3500.0], ["biscoe"])
    sender.record(
        "penguins", "1", inline, result(["adelie", "gentoo"], [0.9, 0.6]), request_id="r1", log=True
    )
    sender.record(
        "penguins",
        "1",
        forwarded,
        result(["gentoo"], [0.8]),
        request_id="r2",
        log=True,
        sketch=False,
    )
    asyncio.run(sender.flush())
    (flush,) = monitor.sent
    (part,) = flush.parts
    assert part.counts.rows == 2  # the forwarded row is counted where it was predicted
    records = {r.request_id: r for r in flush.predictions}
    assert set(records) == {"r1", "r2"}
    r1 = records["r1"]
    assert r1.model == "penguins" and r1.version == "1"
    assert r1.rows == [{"mass": 2500.0, "island": "dream"}, {"mass": None, "island": None}]
    assert r1.predictions == ["adelie", "gentoo"]
    assert r1.confidences == pytest.approx([0.8, 0.5])
    assert records["r2"].rows == [{"mass": 3500.0, "island": "biscoe"}]
    assert records["r2"].confidences == pytest.approx([0.7])
    assert sender.stats()["counted_rows"] == 2 and sender.stats()["logged_rows"] == 3


def test_a_version_without_reference_is_not_counted_but_its_predictions_are_logged() -> None:
    monitor = Monitor()
    sender, _ = make(monitor, load=lambda model, version: None)
    sender.record(
        "old", "1", frame([2500.0], ["dream"]), result(["adelie"], [0.9]), request_id="r", log=True
    )
    asyncio.run(sender.flush())
    (flush,) = monitor.sent
    assert flush.parts == []
    assert [r.request_id for r in flush.predictions] == ["r"]
    assert flush.predictions[0].confidences is None
    assert sender.stats()["unmonitored_rows"] == 1


def test_rows_wait_while_their_reference_cannot_be_loaded() -> None:
    monitor = Monitor()
    registry_up = False

    def load(model: str, version: str) -> MonitorReference:
        if not registry_up:
            raise OSError("registry unreachable")
        return REFERENCE

    sender, loads = make(monitor, load=load)
    sender.record("penguins", "1", frame([2500.0], ["dream"]), result(["adelie"], [0.9]))
    asyncio.run(sender.flush())
    assert monitor.sent == [] and sender.stats()["buffered_rows"] == 1
    registry_up = True
    asyncio.run(sender.flush())
    assert [p.counts.rows for p in monitor.sent[0].parts] == [1]
    assert len(loads) == 2


def test_enough_rows_wake_the_background_flush_before_its_tick() -> None:
    monitor = Monitor()

    async def go() -> Flush:
        arrived = asyncio.Event()

        async def send(flush: Flush) -> Ack:
            ack = await monitor.send(flush)
            arrived.set()
            return ack

        sender, _ = make(monitor, monitor_flush_rows=4, monitor_flush_seconds=60.0)
        sender._send = send
        for _ in range(4):
            sender.record("penguins", "1", frame([2500.0], ["dream"]), result(["adelie"], [0.9]))
        await asyncio.wait_for(arrived.wait(), 10)
        await sender.close()
        return monitor.sent[0]

    flush = asyncio.run(go())
    assert sum(p.counts.rows for p in flush.parts) == 4


def test_a_failing_monitor_never_reaches_the_caller() -> None:
    async def broken(flush: Flush) -> Ack:
        raise RuntimeError("boom")

    sender, _ = make(Monitor(), monitor_flush_rows=1, monitor_flush_seconds=0.01)
    sender._send = broken

    async def go() -> dict[str, Any]:
        for _ in range(5):
            sender.record("penguins", "1", frame([2500.0], ["dream"]), result(["adelie"], [0.9]))
            await asyncio.sleep(0)
        await sender.flush()
        stats = sender.stats()
        await sender.close(timeout=1)
        return stats

    stats = asyncio.run(go())
    assert stats["send_failures"] >= 1 and "boom" in stats["last_error"]
    assert stats["pending_rows"] == 5 and stats["dropped_rows"] == 0


def test_a_caller_that_stops_waiting_does_not_lose_what_the_flush_took() -> None:
    import time

    monitor = Monitor()

    def slow_load(model: str, version: str) -> MonitorReference:
        time.sleep(0.3)  # a slow registry: the flush is binning when its caller gives up
        return REFERENCE

    sender, _ = make(monitor, load=slow_load)

    async def go() -> None:
        sender.record("penguins", "1", frame([2500.0], ["dream"]), result(["adelie"], [0.9]))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sender.flush(), 0.05)
        await sender.close()

    asyncio.run(go())
    assert sum(p.counts.rows for f in monitor.stored.values() for p in f.parts) == 1


def test_a_prediction_that_cannot_be_binned_is_counted_as_failed_not_lost_silently() -> None:
    monitor = Monitor()
    sender, _ = make(monitor)
    sender.record("penguins", "1", frame([2500.0], ["dream"]), {"answers": ["adelie"]})
    sender.record("penguins", "2", frame([2500.0], ["dream"]), result(["adelie"], [0.9]))
    asyncio.run(sender.flush())
    (flush,) = monitor.sent
    assert [(p.version, p.counts.rows) for p in flush.parts] == [("2", 1)]
    assert sender.stats()["failed_rows"] == 1


def test_the_gateways_parsed_columns_count_and_log_exactly_like_frames() -> None:
    """The gateway records a request's parsed columns (plain lists, None when missing), the
    replicas record frames: the same rows give the same counts and the same logged rows."""
    rows = [(2500.0, "dream", 7), (None, "biscoe", None), (8000.0, None, 9)]
    predictions = result(["adelie", "gentoo", "gentoo"], [0.9, 0.6, 0.7])

    def flushed(as_columns: bool) -> Flush:
        monitor = Monitor()
        sender, _ = make(monitor)
        for i, (mass, island, ident) in enumerate(rows):
            single = {key: predictions[key][i : i + 1] for key in ("predictions", "probabilities")}
            if as_columns:
                table: Any = {"mass": [mass], "island": [island], "id": [ident]}
            else:
                table = frame([mass], [island]).assign(id=pd.Series([ident], dtype=object))
            sender.record("penguins", "1", table, single, request_id="r", log=True)
        asyncio.run(sender.flush())
        (flush,) = monitor.sent
        return flush

    from_columns, from_frames = flushed(True), flushed(False)
    assert counts_json(from_columns) == counts_json(from_frames)
    (part,) = from_columns.parts
    assert part.counts.rows == 3
    assert part.counts.nulls == {"mass": 1, "island": 1, "prediction": 0}
    assert part.counts.columns["prediction"].tolist() == [1, 2, 0]  # adelie, gentoo, other
    logged = [r.rows for r in from_columns.predictions]
    assert logged == [r.rows for r in from_frames.predictions]
    assert logged == [
        [{"mass": 2500.0, "island": "dream", "id": 7}],
        [{"mass": None, "island": "biscoe", "id": None}],
        [{"mass": 8000.0, "island": None, "id": 9}],
    ]


def test_a_pause_stops_recording_at_the_next_acknowledgement_until_the_monitor_resumes() -> None:
    monitor = Monitor()
    sender, _ = make(monitor, monitor_flush_seconds=0.02)

    def one(mass: float) -> None:
        sender.record("penguins", "1", frame([mass], ["dream"]), result(["adelie"], [0.9]))

    async def until(paused: bool) -> None:
        for _ in range(200):
            if sender.stats()["paused"] is paused:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"the sender never became paused={paused}")

    async def go() -> list[int]:
        counted = []
        one(2500.0)  # starts the background flusher
        await sender.flush()
        counted.append(sender.stats()["counted_rows"])
        monitor.recording = False
        one(2600.0)  # recorded: the sender learns of the pause from this flush's ack
        await sender.flush()
        counted.append(sender.stats()["counted_rows"])
        one(2700.0)  # paused: ignored
        await sender.flush()
        counted.append(sender.stats()["counted_rows"])
        monitor.recording = True  # the paused flusher asks every tick
        await until(paused=False)
        one(2800.0)
        await sender.flush()
        counted.append(sender.stats()["counted_rows"])
        monitor.recording = False
        one(2900.0)
        await sender.flush()
        await until(paused=True)
        monitor.down = True  # nobody to ask: record again rather than stay paused for ever
        await until(paused=False)
        await sender.close(timeout=0.1)
        return counted

    assert asyncio.run(go()) == [1, 2, 2, 3]
    stored = sum(p.counts.rows for f in monitor.stored.values() for p in f.parts)
    assert stored == 4
