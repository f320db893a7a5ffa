"""The dashboard's pure parts: pages escape what users named, charts are plain SVG, the
traffic counter's figures, report paths that cannot leave the datasets folder."""

from __future__ import annotations

import re
from pathlib import Path
from xml.etree import ElementTree

import pytest

from mlfleet.serving.dashboard import charts, render
from mlfleet.serving.dashboard.routes import find_report
from mlfleet.serving.traffic import SLICE_S, WINDOW_S, TrafficCounter

HOSTILE = '<script>alert("x")</script>&"\''


def row(name: str = "loans", status: str = "ok", **extra: object) -> render.ModelRow:
    fields: dict[str, object] = {
        "name": name,
        "status": status,
        "champion": "2",
        "challenger": "3",
        "mode": "pool",
        "inline": False,
        "replicas": 1,
        "requests": 10,
        "errors": 1,
        "p50_ms": 4.2,
        "p99_ms": 20.0,
        "estimated_accuracy": 0.81,
        "realised": {"rows": 5, "accuracy": 0.8},
        "metric": "accuracy",
        "training_score": 0.83,
        **extra,
    }
    return render.ModelRow(**fields)  # type: ignore[arg-type]


PAGE = render.Page(viewer="ops", admin=True, csrf="t0ken")


def test_every_user_named_value_is_escaped_on_every_page() -> None:
    hostile = row(
        name=HOSTILE,
        drifted=[HOSTILE],
        reason=HOSTILE,
        last_alert={"at": 1.0, "previous": "ok", "status": "drift", "reason": HOSTILE},
    )
    column = {
        "name": HOSTILE,
        "verdict": "drift",
        "method": "psi",
        "value": 0.5,
        "drift": 0.2,
        "warning": 0.1,
        "labels": [HOSTILE, "b"],
        "reference": [5, 5],
        "current": [9, 1],
    }
    data = render.ModelPage(
        row=hostile,
        versions=3,
        history=["1", "2"],
        lineage=render.Lineage(
            version="2",
            dataset_version=HOSTILE,
            report_url=None,
            run_id=HOSTILE,
            run_url=None,
            git_sha=None,
            contract_sha=None,
            decision=HOSTILE,
            metric="accuracy",
            challenger_score=0.9,
            champion_score=0.8,
            champion_version="1",
        ),
        detail={"version": "2", "rows": 10, "features": [column], "prediction": None},
        trail=[{"at": 1.0, "values": {HOSTILE: 0.1}}, {"at": 2.0, "values": {HOSTILE: 0.5}}],
        alerts=[{"at": 1.0, "status": "drift", "reason": HOSTILE}],
        retrains=[{"at": 1.0, "status": "submitted", "reason": HOSTILE}],
        statuses=[],
        moves=[
            {
                "at": 1.0,
                "action": "promote",
                "outcome": "done",
                "rate": 12.5,
                "threshold": 5.0,
                "reason": HOSTILE,
            }
        ],
    )
    page = render.model_page(PAGE, data)
    assert "Scaling moves" in page and "12.50" in page and "No scaling move yet." not in page
    pages = [
        render.overview(PAGE, [hostile], window_s=WINDOW_S, monitor_error=HOSTILE),
        render.model_page(PAGE, data),
        render.confirm_page(PAGE, HOSTILE, "promote", "3", "2"),
        render.error_page(PAGE, 404, HOSTILE),
    ]
    for html in pages:
        assert "<script>" not in html and 'alert("x")' not in html
        assert "&lt;script&gt;alert(" in html
        assert "<script" not in html.lower()  # and no script of our own either


def test_the_overview_lists_drifting_models_first_and_marks_them() -> None:
    html = render.overview(
        PAGE,
        [row("a-ok"), row("b-drift", "drift", drifted=["debt_ratio"]), row("c", "unmonitored")],
        window_s=WINDOW_S,
        monitor_error=None,
    )
    order = re.findall(r'data-model="([^"]+)" data-status="([^"]+)"', html)
    assert order == [("b-drift", "drift"), ("a-ok", "ok"), ("c", "unmonitored")]
    assert "debt_ratio" in html and "<b>1</b><span>drifting</span>" in html


def test_only_admins_get_the_promote_and_rollback_links() -> None:
    data = render.ModelPage(
        row=row(),
        versions=3,
        history=["1", "2"],
        lineage=None,
        detail=None,
        trail=[],
        alerts=[],
        retrains=[],
        statuses=[],
    )
    admin = render.model_page(PAGE, data)
    assert 'id="promote-challenger"' in admin and 'id="rollback"' in admin
    viewer = render.model_page(render.Page(viewer="v", admin=False, csrf="x"), data)
    assert "promote-challenger" not in viewer and "need an admin key" in viewer


def test_charts_are_well_formed_svg_with_both_series() -> None:
    svg = charts.histogram_pair(["a", "b", "c"], [1, 2, 1], [0, 1, 3], title="f <1>")
    root = ElementTree.fromstring(str(svg))
    rects = [e for e in root.iter() if e.tag.endswith("rect")]
    assert sorted({r.get("class") for r in rects}) == ["current", "reference"]
    assert len(rects) == 6
    # The tallest current bar is the 3-of-4 bin: shares, not counts.
    current = [float(r.get("height", 0)) for r in rects if r.get("class") == "current"]
    assert current.index(max(current)) == 2
    line = charts.statistic_line(
        [(0, 0.1), (60, None), (120, 0.4)], drift=0.2, warning=0.1, title="psi"
    )
    root = ElementTree.fromstring(str(line))
    assert len([e for e in root.iter() if e.tag.endswith("polyline")]) == 2  # a gap at None
    assert len([e for e in root.iter() if e.tag.endswith("line")]) >= 2  # the thresholds
    empty = charts.statistic_line([], drift=None, warning=None, title="none")
    assert "no evaluation yet" in str(empty)


def test_traffic_counts_the_window_and_reads_percentiles_from_buckets() -> None:
    now = [1000.0]
    counter = TrafficCounter(clock=lambda: now[0], max_models=2)
    for ms in range(1, 101):  # 1..100 ms
        counter.record("a", ms / 1000, 200)
    counter.record("a", 0.5, 500)
    counter.record("a", 0.002, 404)
    figures = counter.snapshot()["a"]
    assert figures.requests == 102 and figures.errors == 2
    assert figures.p50_ms is not None and 50 * 0.95 <= figures.p50_ms <= 52 * 1.1
    assert figures.p99_ms is not None and 100 <= figures.p99_ms <= 550
    counter.record("b", 0.01, 200)
    counter.record("c", 0.01, 200)  # over max_models: not counted
    assert set(counter.snapshot()) == {"a", "b"}
    now[0] += WINDOW_S + SLICE_S  # everything left the window
    assert counter.snapshot()["a"].requests == 0 and counter.snapshot()["a"].p50_ms is None


def test_reports_are_found_by_version_id_only_inside_the_datasets_folder(tmp_path: Path) -> None:
    datasets = tmp_path / "datasets"
    version = "0123456789abcdef"
    (datasets / "loans" / version).mkdir(parents=True)
    (datasets / "loans" / version / "report.html").write_text("<p>report</p>")
    assert find_report(datasets, version) == datasets / "loans" / version / "report.html"
    outside = tmp_path / "secret"
    (outside / version).mkdir(parents=True)
    (outside / version / "report.html").write_text("secret")
    (datasets / "evil").symlink_to(outside)
    other = "fedcba9876543210"
    (outside / other).mkdir()
    (outside / other / "report.html").write_text("secret")
    assert find_report(datasets, other) is None  # through a symlink out of the folder
    for bad in ("../secret", "0123456789ABCDEF", "0123456789abcde", "..", ""):
        assert find_report(datasets, bad) is None


@pytest.mark.parametrize("value", [None, 0.5, 1234.5])
def test_numbers_format(value: float | None) -> None:
    assert render.fmt_num(value) in ("–", "0.5", "1,234")
