"""The dashboard's pages as pure functions: data in, HTML out (inline CSS, no script).

Every value that reaches the page goes through ``Markup.format`` (or ``escape``), which
escapes it: model, feature and category names come from users' specs and data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from markupsafe import Markup, escape

from mlfleet.serving.dashboard.charts import histogram_pair, statistic_line

STATUS_ORDER = {"drift": 0, "warning": 1, "ok": 2, "insufficient": 3, "unmonitored": 4}

CSS = """
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;
margin:0;color:#1d2430;background:#f4f6f9}header{background:#1d2b3f;color:#fff;
padding:10px 22px;display:flex;align-items:center;gap:18px}header a{color:#fff}
header h1{font-size:17px;margin:0}header .who{margin-left:auto;font-size:12px;opacity:.85}
main{padding:18px 22px;max-width:1500px}a{color:#2460a7;text-decoration:none}
a:hover{text-decoration:underline}.cards{display:flex;gap:12px;margin-bottom:16px;flex-wrap:wrap}
.card{background:#fff;border-radius:8px;padding:10px 16px;box-shadow:0 1px 2px #0002;
min-width:130px}.card b{display:block;font-size:22px}.card span{font-size:12px;color:#5b6576}
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px #0002;
border-radius:8px;overflow:hidden}th,td{padding:7px 10px;text-align:left;
border-bottom:1px solid #e6e9ef;white-space:nowrap}td:last-child{white-space:normal}
th{background:#eef1f6;font-size:12px;
color:#465165;font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.drift td{background:#fdf0ee}tr.warning td{background:#fdf8e8}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.badge.drift{background:#c0392b;color:#fff}.badge.warning{background:#d4a017;color:#fff}
.badge.ok{background:#2e8b57;color:#fff}.badge.insufficient,.badge.unmonitored{background:#aab2bf;
color:#fff}.muted{color:#7a8495}.small{font-size:12px}section{background:#fff;border-radius:8px;
box-shadow:0 1px 2px #0002;padding:12px 18px;margin-bottom:16px}section h2{font-size:15px;
margin:2px 0 10px}.features{display:flex;flex-wrap:wrap;gap:14px}.feature{border:1px solid #e6e9ef;
border-radius:6px;padding:8px}.feature h3{font-size:13px;margin:0 0 4px}
.legend i{display:inline-block;
width:10px;height:10px;margin:0 4px 0 10px}dl{display:grid;grid-template-columns:190px auto;
gap:4px 12px;margin:0}dt{color:#5b6576}dd{margin:0}form.inline{display:inline}
button,.button{background:#2460a7;color:#fff;border:0;border-radius:5px;padding:6px 14px;
font-size:13px;cursor:pointer}button.danger{background:#c0392b}input{padding:6px;font-size:13px;
border:1px solid #c4cad4;border-radius:4px}.notice{background:#e8f4ec;border:1px solid #9fd0b0;
padding:8px 12px;border-radius:6px;margin-bottom:14px}.error{background:#fdf0ee;
border:1px solid #e5a49b;padding:8px 12px;border-radius:6px;margin-bottom:14px}
.login{max-width:420px;margin:80px auto;background:#fff;padding:22px 26px;border-radius:8px;
box-shadow:0 1px 3px #0003}.login input{width:100%;margin:8px 0 14px}
"""


# --- what the pages show ------------------------------------------------------------------


@dataclass
class ModelRow:
    """One model on the overview (and at the top of its own page)."""

    name: str
    status: str  # the monitor's status, or "unmonitored"
    champion: str | None
    challenger: str | None
    mode: str  # pool, dedicated (by its spec) or scaled (promoted by the scaler)
    inline: bool  # this gateway replica holds the champion and may answer itself
    replicas: int
    requests: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    estimated_accuracy: float | None
    realised: dict[str, Any] | None
    metric: str | None  # the training metric
    training_score: float | None  # the champion's score on its training holdout
    drifted: list[str] = field(default_factory=list)
    reason: str = ""
    last_alert: dict[str, Any] | None = None
    last_retrain: dict[str, Any] | None = None


@dataclass
class Lineage:
    """Where the champion comes from and why it is champion."""

    version: str
    dataset_version: str | None
    report_url: str | None  # the dashboard's route to its validation report, when present
    run_id: str | None
    run_url: str | None  # the MLflow UI, when MLFLEET_MLFLOW_UI_URL is set
    git_sha: str | None
    contract_sha: str | None
    decision: str | None
    metric: str | None
    challenger_score: float | None
    champion_score: float | None
    champion_version: str | None  # the champion the gate compared it with


@dataclass
class ModelPage:
    """Everything on a model's page."""

    row: ModelRow
    versions: int
    history: list[str]  # champions, oldest first
    lineage: Lineage | None
    detail: dict[str, Any] | None  # the monitor's columns of the version its status is about
    trail: list[dict[str, Any]]  # the monitor's statistics per evaluation
    alerts: list[dict[str, Any]]
    retrains: list[dict[str, Any]]
    statuses: list[dict[str, Any]]
    monitor_error: str | None = None
    moves: list[dict[str, Any]] = field(default_factory=list)  # model-aware scaling, newest first


@dataclass
class Page:
    """The frame around a page: who is looking, their CSRF token, a notice."""

    viewer: str | None
    admin: bool
    csrf: str
    notice: str | None = None
    error: str | None = None


# --- formatting ---------------------------------------------------------------------------


def fmt_num(value: float | None, digits: int = 3) -> str:
    """A number for a table cell (an en dash for none)."""
    if value is None:
        return "–"
    return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"


def fmt_pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def fmt_time(at: float | None) -> str:
    if not at:
        return "–"
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def model_url(name: str) -> str:
    """The route of a model's page."""
    return f"/dashboard/models/{quote(name, safe='')}"


def badge(status: str) -> Markup:
    return Markup('<span class="badge {s}" data-status="{s}">{s}</span>').format(s=status)


def _realised(realised: dict[str, Any] | None) -> str:
    if not realised:
        return "–"
    if "accuracy" in realised:
        return f"{fmt_pct(realised['accuracy'])} ({realised.get('rows', 0)} labels)"
    if "mae" in realised:
        return f"MAE {fmt_num(realised['mae'])} ({realised.get('rows', 0)} labels)"
    return "–"


def layout(title: str, page: Page | None, body: Markup) -> str:
    """A whole HTML document around ``body``."""
    who = Markup("")
    if page is not None:
        label = page.viewer or "local (authentication off)"
        role = "admin" if page.admin else "read-only"
        who = Markup(
            '<span class="who">{label} · {role} <form class="inline" method="post" '
            'action="/dashboard/logout"><button type="submit">Sign out</button></form></span>'
        ).format(label=label, role=role)
    notices = Markup("")
    if page is not None and page.notice:
        notices += Markup('<div class="notice" role="status">{}</div>').format(page.notice)
    if page is not None and page.error:
        notices += Markup('<div class="error" role="alert">{}</div>').format(page.error)
    return str(
        Markup(
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            "<title>{title} · mlfleet</title><style>{css}</style></head><body>"
            '<header><h1><a href="/">mlfleet</a></h1><span>{title}</span>{who}</header>'
            "<main>{notices}{body}</main></body></html>"
        ).format(title=title, css=Markup(CSS), who=who, notices=notices, body=body)
    )


# --- the overview -------------------------------------------------------------------------


def overview_rows(rows: Iterable[ModelRow]) -> list[ModelRow]:
    """Models needing attention first (drift, warning), then by name."""
    return sorted(rows, key=lambda r: (STATUS_ORDER.get(r.status, 9), r.name))


def _serving(row: ModelRow) -> Markup:
    inline = (
        Markup(
            ' <span class="muted small" title="this gateway replica holds a copy and '
            'answers itself when idle">+ inline</span>'
        )
        if row.inline
        else Markup("")
    )
    return Markup("{mode} × {n}{inline}").format(mode=row.mode, n=row.replicas, inline=inline)


def _figures(row: ModelRow) -> dict[str, Any]:
    """The row's values as both pages print them."""
    return {
        "name": row.name,
        "badge": badge(row.status),
        "champion": f"v{row.champion}" if row.champion else "–",
        "challenger": f"v{row.challenger}" if row.challenger else "–",
        "serving": _serving(row),
        "requests": row.requests,
        "errors": row.errors,
        "p50": fmt_num(row.p50_ms),
        "p99": fmt_num(row.p99_ms),
        "training": (
            f"{row.metric} {fmt_num(row.training_score)}" if row.training_score is not None else "–"
        ),
        "estimated": fmt_pct(row.estimated_accuracy),
        "realised": _realised(row.realised),
    }


def _row(row: ModelRow) -> Markup:
    drifted = ", ".join(row.drifted) if row.drifted else ""
    alert = row.last_alert
    alert_cell = (
        Markup('<span title="{reason}">{prev} → {status}, {at}</span>').format(
            reason=alert.get("reason", ""),
            prev=alert.get("previous") or "–",
            status=alert.get("status", ""),
            at=fmt_time(alert.get("at")),
        )
        if alert
        else Markup("–")
    )
    return Markup(
        '<tr class="{status}" data-model="{name}" data-status="{status}">'
        '<td><a href="{url}">{name}</a></td><td>{badge}</td>'
        "<td>{champion}</td><td>{challenger}</td><td>{serving}</td>"
        '<td class="num">{requests}</td><td class="num">{errors}</td>'
        '<td class="num">{p50}</td><td class="num">{p99}</td>'
        '<td class="num">{training}</td><td class="num">{estimated}</td>'
        '<td class="num">{realised}</td><td title="{reason}">{drifted}</td><td>{alert}</td></tr>'
    ).format(
        **_figures(row),
        status=row.status,
        url=model_url(row.name),
        reason=row.reason,
        drifted=drifted or "–",
        alert=alert_cell,
    )


def overview(
    page: Page, rows: Sequence[ModelRow], *, window_s: float, monitor_error: str | None
) -> str:
    """The fleet page: summary cards and one row per model."""
    ordered = overview_rows(rows)
    drifting = sum(1 for r in rows if r.status == "drift")
    cards = Markup(
        '<div class="cards"><div class="card"><b>{n}</b><span>models</span></div>'
        '<div class="card"><b>{d}</b><span>drifting</span></div>'
        '<div class="card"><b>{req}</b><span>requests, last {w:.0f} min</span></div>'
        '<div class="card"><b>{err}</b><span>errors, last {w:.0f} min</span></div></div>'
    ).format(
        n=len(rows),
        d=drifting,
        req=sum(r.requests for r in rows),
        err=sum(r.errors for r in rows),
        w=window_s / 60,
    )
    warn = (
        Markup('<div class="error" role="alert">monitoring: {}</div>').format(monitor_error)
        if monitor_error
        else Markup("")
    )
    head = Markup(
        '<table id="models"><thead><tr><th>Model</th><th>Drift</th><th>Champion</th>'
        "<th>Challenger</th><th>Serving × replicas</th>"
        '<th class="num">Requests</th><th class="num">Errors</th>'
        '<th class="num">p50 ms</th><th class="num">p99 ms</th>'
        '<th class="num">Training score</th><th class="num">Estimated acc.</th>'
        '<th class="num">Realised</th><th>Drifted features</th><th>Last alert</th></tr></thead>'
    )
    body = Markup("").join(_row(r) for r in ordered)
    foot = Markup(
        '<p class="muted small">Requests, errors (4xx and 5xx) and latency: the last {w:.0f} '
        "minutes as counted by the gateway replica that served this page (its handling time). "
        "Drift and performance: the monitor's latest evaluation.</p>"
    ).format(w=window_s / 60)
    return layout(
        "Fleet",
        page,
        cards + warn + head + Markup("<tbody>") + body + Markup("</tbody></table>") + foot,
    )


# --- a model's page -----------------------------------------------------------------------


def _actions(page: Page, data: ModelPage) -> Markup:
    row = data.row
    if not page.admin:
        return Markup('<p class="muted small">Promote and roll back need an admin key.</p>')
    links = []
    if row.challenger and row.challenger != row.champion:
        links.append(
            Markup('<a class="button" id="promote-challenger" href="{u}">Promote v{v}…</a>').format(
                u=f"{model_url(row.name)}/confirm?action=promote&version={quote(row.challenger)}",
                v=row.challenger,
            )
        )
    if len(data.history) >= 2:
        links.append(
            Markup('<a class="button" id="rollback" href="{u}">Roll back to v{v}…</a>').format(
                u=f"{model_url(row.name)}/confirm?action=rollback", v=data.history[-2]
            )
        )
    pick = Markup(
        '<form class="inline" method="get" action="{u}/confirm">'
        '<input type="hidden" name="action" value="promote">'
        '<label class="small"> or promote version <input name="version" size="4" '
        'inputmode="numeric" pattern="[0-9]{{1,9}}" required></label> '
        '<button type="submit">Review…</button></form>'
    ).format(u=model_url(row.name))
    return Markup(" ").join([*links, pick])


def _lineage(lineage: Lineage | None) -> Markup:
    if lineage is None:
        return Markup('<p class="muted">No champion yet.</p>')
    dataset: Markup
    if lineage.dataset_version and lineage.report_url:
        dataset = Markup('<a href="{u}" id="dataset-report">{v}</a> (validation report)').format(
            u=lineage.report_url, v=lineage.dataset_version
        )
    elif lineage.dataset_version:
        dataset = Markup('{v} <span class="muted small">(its report is not on this node)</span>')
        dataset = dataset.format(v=lineage.dataset_version)
    else:
        dataset = Markup("–")
    run: Markup = Markup("{}").format(lineage.run_id or "–")
    if lineage.run_id and lineage.run_url:
        run = Markup('<a href="{u}" rel="noopener" target="_blank">{r}</a> (MLflow)').format(
            u=lineage.run_url, r=lineage.run_id
        )
    if lineage.champion_score is not None:
        scores = Markup("v{v} {c} vs champion v{o} {p} ({m})").format(
            v=lineage.version,
            c=fmt_num(lineage.challenger_score, 4),
            o=lineage.champion_version or "?",
            p=fmt_num(lineage.champion_score, 4),
            m=lineage.metric or "score",
        )
    else:
        scores = Markup("v{v} {c} ({m}); no champion to compare with").format(
            v=lineage.version, c=fmt_num(lineage.challenger_score, 4), m=lineage.metric or "score"
        )
    return Markup(
        "<dl><dt>Champion</dt><dd>v{v}</dd><dt>Dataset version</dt><dd>{dataset}</dd>"
        "<dt>Training run</dt><dd>{run}</dd><dt>Promotion decision</dt><dd>{decision}</dd>"
        "<dt>Scores on the holdout</dt><dd>{scores}</dd><dt>Contract</dt><dd>{contract}</dd>"
        "<dt>Code</dt><dd>{git}</dd></dl>"
    ).format(
        v=lineage.version,
        dataset=dataset,
        run=run,
        decision=lineage.decision or "–",
        scores=scores,
        contract=(lineage.contract_sha or "–")[:16],
        git=(lineage.git_sha or "–")[:12],
    )


def _feature(column: dict[str, Any], trail: list[dict[str, Any]]) -> Markup:
    name = str(column.get("name", ""))
    verdict = str(column.get("verdict", "insufficient"))
    method = str(column.get("method", ""))
    hist = histogram_pair(
        [str(x) for x in column.get("labels", [])],
        [int(x) for x in column.get("reference", [])],
        [int(x) for x in column["current"]] if column.get("current") is not None else None,
        title=f"{name}: reference vs current",
    )
    points = [(float(e["at"]), e.get("values", {}).get(name)) for e in trail]
    line = statistic_line(
        points,
        drift=column.get("drift"),
        warning=column.get("warning"),
        title=f"{name}: {method} over time",
    )
    return Markup(
        '<div class="feature" data-feature="{name}" data-verdict="{verdict}">'
        '<h3>{name} {badge} <span class="muted small">{method} {value}</span></h3>'
        "{hist}{line}</div>"
    ).format(
        name=name,
        verdict=verdict,
        badge=badge(verdict),
        method=method,
        value=fmt_num(column.get("value"), 4),
        hist=hist,
        line=line,
    )


def _drift(data: ModelPage) -> Markup:
    if data.monitor_error:
        return Markup('<p class="muted">{}</p>').format(data.monitor_error)
    detail = data.detail
    if not detail:
        return Markup('<p class="muted">No traffic in the monitor\'s window yet.</p>')
    columns = list(detail.get("features") or [])
    if detail.get("prediction"):
        columns.append(detail["prediction"])
    legend = Markup(
        '<p class="legend small">Version v{v}, {rows} rows in the window. '
        '<i style="background:#7a8ba6"></i>reference (training data) '
        '<i style="background:#e8833a"></i>current window · line: the statistic per '
        "evaluation, dashed: warning and drift thresholds</p>"
    ).format(v=detail.get("version", "?"), rows=detail.get("rows", 0))
    return legend + Markup('<div class="features">{}</div>').format(
        Markup("").join(_feature(c, data.trail) for c in columns)
    )


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], empty: str) -> Markup:
    body = [
        Markup("<tr>{}</tr>").format(Markup("").join(Markup("<td>{}</td>").format(c) for c in r))
        for r in rows
    ]
    if not body:
        return Markup('<p class="muted">{}</p>').format(empty)
    head = Markup("").join(Markup("<th>{}</th>").format(h) for h in headers)
    return Markup("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>").format(
        head, Markup("").join(body)
    )


def model_page(page: Page, data: ModelPage) -> str:
    """One model: status, actions, lineage, the drift panel, alerts and retrains."""
    row = data.row
    summary = Markup(
        '<section id="summary"><h2>{name} {badge}</h2><dl>'
        "<dt>Champion / challenger</dt><dd>{champion} / {challenger} ({versions} versions)</dd>"
        "<dt>Serving</dt><dd>{serving}</dd>"
        "<dt>Requests / errors</dt><dd>{requests} / {errors} (last window, this gateway "
        "replica)</dd><dt>Latency p50 / p99</dt><dd>{p50} / {p99} ms</dd>"
        "<dt>Performance</dt><dd>training {training}; estimated {estimated}; realised "
        "{realised}</dd>"
        "<dt>Monitor</dt><dd>{reason}</dd><dt>Champion history</dt><dd>{history}</dd>"
        "</dl><p>{actions}</p></section>"
    ).format(
        **_figures(row),
        versions=data.versions,
        reason=row.reason or "–",
        history=" → ".join(f"v{v}" for v in data.history) or "–",
        actions=_actions(page, data),
    )
    lineage = Markup('<section id="lineage"><h2>Lineage of the champion</h2>{}</section>').format(
        _lineage(data.lineage)
    )
    drift = Markup('<section id="drift"><h2>Drift</h2>{}</section>').format(_drift(data))
    alerts = _table(
        ["At", "Version", "From", "To", "Reason"],
        (
            [
                fmt_time(a.get("at")),
                a.get("version") or "–",
                a.get("previous") or "–",
                a.get("status", ""),
                a.get("reason", ""),
            ]
            for a in data.alerts
        ),
        "No alert yet.",
    )
    retrains = _table(
        ["At", "Version", "Status", "Job", "Reason"],
        (
            [
                fmt_time(r.get("at")),
                r.get("version") or "–",
                r.get("status", ""),
                r.get("job_id") or "–",
                r.get("reason", ""),
            ]
            for r in data.retrains
        ),
        "No retrain yet.",
    )
    statuses = _table(
        ["At", "Version", "From", "To", "Rows", "Reason"],
        (
            [
                fmt_time(s.get("at")),
                s.get("version") or "–",
                s.get("previous") or "–",
                s.get("status", ""),
                s.get("rows", 0),
                s.get("reason", ""),
            ]
            for s in data.statuses
        ),
        "No status change yet.",
    )
    moves = _table(
        ["At", "Move", "Outcome", "Rate (req/s)", "Threshold", "Reason"],
        (
            [
                fmt_time(m.get("at")),
                m.get("action", ""),
                m.get("outcome", ""),
                f"{float(m.get('rate') or 0):.2f}",
                f"{float(m.get('threshold') or 0):.2f}",
                m.get("reason", ""),
            ]
            for m in data.moves
        ),
        "No scaling move yet.",
    )
    history = Markup(
        '<section id="history"><h2>Alerts</h2>{a}<h2>Retrains</h2>{r}'
        "<h2>Status changes</h2>{s}<h2>Scaling moves</h2>{m}</section>"
    ).format(a=alerts, r=retrains, s=statuses, m=moves)
    return layout(row.name, page, summary + lineage + drift + history)


def confirm_page(
    page: Page, name: str, action: str, version: str | None, champion: str | None
) -> str:
    """The confirmation step of a promote or a rollback (a form that posts it)."""
    if action == "promote":
        question = Markup("Make <b>v{v}</b> the champion of <b>{n}</b> (now v{c})?").format(
            v=version, n=name, c=champion or "–"
        )
    else:
        question = Markup("Roll <b>{n}</b> back from v{c} to its previous champion?").format(
            n=name, c=champion or "–"
        )
    body = Markup(
        '<section id="confirm"><h2>Confirm</h2><p>{q}</p><p class="muted small">Every gateway '
        "replica serves the new champion within a few seconds.</p>"
        '<form method="post" action="{u}/{action}">'
        '<input type="hidden" name="csrf" value="{csrf}">{version}'
        '<button type="submit" id="confirm-button" class="danger">Yes, {action}</button> '
        '<a href="{u}">Cancel</a></form></section>'
    ).format(
        q=question,
        u=model_url(name),
        action=action,
        csrf=page.csrf,
        version=(
            Markup('<input type="hidden" name="version" value="{}">').format(version)
            if version
            else Markup("")
        ),
    )
    return layout(f"{name}: confirm", page, body)


def key_form(message: str | None = None) -> str:
    """The key form shown to a browser that has no usable key."""
    error = Markup('<div class="error" role="alert">{}</div>').format(message) if message else ""
    body = Markup(
        '<form class="login" method="post" action="/dashboard/login">'
        "<h2>mlfleet dashboard</h2>{error}"
        '<label for="key">API key with the <code>dashboard</code> or <code>admin</code> scope'
        '</label><input id="key" name="key" type="password" autocomplete="off" required '
        'autofocus><button type="submit" id="sign-in">Sign in</button>'
        '<p class="muted small">The key is kept in an HttpOnly, SameSite=Strict cookie for '
        "8 hours. Create one with <code>mlfleet keys create --scopes dashboard</code>.</p>"
        "</form>"
    ).format(error=error)
    return layout("Sign in", None, body)


def error_page(page: Page | None, status: int, message: str) -> str:
    """A short page for an error a browser asked for."""
    body = Markup(
        '<section><h2>{s}</h2><p>{m}</p><p><a href="/">Back to the fleet</a></p></section>'
    ).format(s=status, m=message)
    return layout("Error", page, body)


__all__ = [
    "Lineage",
    "ModelPage",
    "ModelRow",
    "Page",
    "confirm_page",
    "error_page",
    "escape",
    "key_form",
    "model_page",
    "overview",
]
