"""The dashboard's routes, bound to the gateway's FastAPI app by :func:`register_dashboard`.

``GET /`` (the fleet), ``GET /dashboard/models/{name}`` (a model), its confirmation step and
``POST .../promote`` / ``.../rollback``, ``GET /dashboard/datasets/{version}/report`` (a
dataset version's validation report) and the key form (``/dashboard/login``, ``logout``).
Who may see and do what: :mod:`mlfleet.serving.dashboard.access`.

One page costs one batched fetch, whatever the number of models: the fleet as the gateway
last listed it (two registry calls, refreshed in the background), the monitor's ``fleet()``
(one actor call) and Serve's replica counts, the last two cached for :data:`CACHE_S`; the
traffic figures are the gateway replica's own counters. A model's page adds the monitor's
``model()`` and ``history()`` for that model.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from mlfleet import registry
from mlfleet.data.versions import VERSION_LENGTH
from mlfleet.errors import MlfleetError, NotFoundError
from mlfleet.serving.dashboard import access, render
from mlfleet.serving.dashboard.access import DashboardDenied, Viewer
from mlfleet.serving.inline import InlineModels
from mlfleet.serving.models import check_name, check_version
from mlfleet.serving.names import POOL, dedicated_deployment_name
from mlfleet.serving.traffic import WINDOW_S, ModelTraffic, TrafficCounter
from mlfleet.settings import Settings

CACHE_S = 2.0  # the monitor's fleet and Serve's replica counts, shared by page views
MAX_FORM_BYTES = 4096
HISTORY_LIMIT = 50
DATASET_VERSION = re.compile(rf"^[0-9a-f]{{{VERSION_LENGTH}}}$")
REPORT_FILE = "report.html"
# A page of ours runs no script, loads nothing from elsewhere and is never framed (a framed
# promote button could be clicked through another site's page).
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
# A validation report is users' data rendered by the validator: shown sandboxed as well.
REPORT_HEADERS = {
    **HEADERS,
    "Content-Security-Policy": HEADERS["Content-Security-Policy"] + "; sandbox",
}
DENIED: dict[int | str, dict[str, Any]] = {
    401: {"description": "No key: the key form (browsers) or a JSON error."},
    403: {"description": "A key without the scope, a stale form, or another site's form."},
}


class Backend(Protocol):
    """What the dashboard needs of the gateway replica it runs in."""

    settings: Settings
    dedicated: dict[str, Any]
    scaled: dict[str, Any]  # models the scaler gave a deployment of their own
    inline: InlineModels
    traffic: TrafficCounter

    async def fleet(self) -> list[registry.ModelInfo]: ...

    async def _ask_monitor(self, method: str, *args: Any) -> Any: ...

    def _moves(self, model: str | None, limit: int) -> list[dict[str, Any]]: ...

    async def apply_promote(self, name: str, version: str) -> dict[str, Any]: ...

    async def apply_rollback(self, name: str) -> dict[str, Any]: ...


class _Cache:
    """Values kept for ``CACHE_S``, so that page views share one fetch."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[float, Any]] = {}

    async def get(self, key: str, load: Callable[[], Awaitable[Any]]) -> Any:
        found = self._values.get(key)
        if found is not None and time.monotonic() - found[0] < CACHE_S:
            return found[1]
        value = await load()
        self._values[key] = (time.monotonic(), value)
        return value

    def clear(self) -> None:
        self._values.clear()


# --- building what the pages show ----------------------------------------------------------


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _metric(tags: dict[str, str]) -> str | None:
    return next(
        (k.removeprefix("mlfleet.metric.") for k in tags if k.startswith("mlfleet.metric.")), None
    )


def model_row(
    info: registry.ModelInfo,
    monitored: dict[str, Any] | None,
    traffic: ModelTraffic | None,
    *,
    mode: str,
    inline: bool,
    replicas: int,
) -> render.ModelRow:
    """A model's overview row from the registry, the monitor and the gateway's counters."""
    tags = info.champion.tags if info.champion else {}
    performance = (monitored or {}).get("performance") or {}
    return render.ModelRow(
        name=info.name,
        status=str(monitored.get("status", "insufficient")) if monitored else "unmonitored",
        champion=info.champion.version if info.champion else None,
        challenger=info.challenger.version if info.challenger else None,
        mode=mode,
        inline=inline,
        replicas=replicas,
        requests=traffic.requests if traffic else 0,
        errors=traffic.errors if traffic else 0,
        p50_ms=traffic.p50_ms if traffic else None,
        p99_ms=traffic.p99_ms if traffic else None,
        estimated_accuracy=performance.get("estimated_accuracy"),
        realised=performance.get("realised"),
        metric=_metric(tags),
        training_score=_float(tags.get("mlfleet.challenger_score")),
        drifted=list((monitored or {}).get("drifted_features") or []),
        reason=str((monitored or {}).get("reason") or ""),
        last_alert=(monitored or {}).get("last_alert"),
        last_retrain=(monitored or {}).get("last_retrain"),
    )


def find_report(datasets_dir: Path, version: str) -> Path | None:
    """The validation report of a dataset version on this node, or None.

    ``version`` must be a version id (hex); the path found must stay inside the datasets
    folder, symlinks resolved.
    """
    if not DATASET_VERSION.match(version) or not datasets_dir.is_dir():
        return None
    root = datasets_dir.resolve()
    for dataset in sorted(datasets_dir.iterdir()):
        candidate = dataset / version / REPORT_FILE
        if candidate.is_file() and candidate.resolve().is_relative_to(root):
            return candidate
    return None


def lineage(info: registry.ModelInfo, settings: Settings) -> render.Lineage | None:
    """The champion's lineage and promotion decision, from its version's tags."""
    champ = info.champion
    if champ is None:
        return None
    tags = champ.tags
    dataset = tags.get("mlfleet.dataset_version")
    run_id = tags.get("mlfleet.run_id") or champ.run_id
    ui = settings.mlflow_ui_url.rstrip("/")
    return render.Lineage(
        version=champ.version,
        dataset_version=dataset,
        report_url=(
            f"/dashboard/datasets/{dataset}/report"
            if dataset and find_report(settings.datasets_dir, dataset)
            else None
        ),
        run_id=run_id,
        run_url=f"{ui}/#/runs/{quote(run_id, safe='')}" if ui and run_id else None,
        git_sha=tags.get("mlfleet.git_sha"),
        contract_sha=tags.get("mlfleet.contract_sha"),
        decision=tags.get("mlfleet.decision"),
        metric=_metric(tags),
        challenger_score=_float(tags.get("mlfleet.challenger_score")),
        champion_score=_float(tags.get("mlfleet.champion_score")),
        champion_version=tags.get("mlfleet.champion_version") or None,
    )


# --- requests and answers --------------------------------------------------------------------


def wants_html(request: Request) -> bool:
    """A browser (it asks for HTML) gets pages; other clients get the API's JSON errors."""
    return "text/html" in request.headers.get("accept", "")


def html(content: str, status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(content, status_code=status, headers={**HEADERS, **(headers or {})})


def refused(request: Request, exc: MlfleetError, page: render.Page | None = None) -> Response:
    """A browser's answer to an error: the key form for 401, a short page otherwise. Other
    clients get the API's JSON envelope (the app's error handler)."""
    if not wants_html(request):
        raise exc
    if exc.http_status == 401:
        return html(render.key_form(), 401)
    return html(render.error_page(page, exc.http_status, exc.message), exc.http_status)


async def read_form(request: Request) -> dict[str, str]:
    """A small URL-encoded form (first value of each field).

    Raises:
        DashboardDenied: 415 for another content type, 413 for a body over 4 KiB.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise DashboardDenied(415, "unsupported_media_type", "send a form (URL-encoded)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise DashboardDenied(413, "payload_too_large", "the form is too large")
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items() if v}


def frame(request: Request, who: Viewer) -> tuple[render.Page, str | None]:
    """The page frame for ``who`` and the CSRF nonce to set (None: the browser has it)."""
    nonce, new = access.csrf_nonce(request)
    return render.Page(viewer=who.name, admin=who.admin, csrf=who.csrf(nonce)), (
        nonce if new else None
    )


def page_response(request: Request, content: str, nonce: str | None) -> HTMLResponse:
    response = html(content)
    if nonce is not None:
        access.keep_nonce(response, request, nonce)
    return response


NOTICES = {
    "promote": "v{version} is now the champion.",
    "rollback": "Rolled back: v{version} is the champion again.",
}


def notice_of(request: Request) -> str | None:
    """The notice a redirect after an action asked for (fixed wording, checked version)."""
    done, version = request.query_params.get("done"), request.query_params.get("version", "")
    if done in NOTICES and re.fullmatch(r"[0-9]{1,9}", version):
        return NOTICES[done].format(version=version)
    return None


# --- the routes ------------------------------------------------------------------------------


def register_dashboard(
    app: FastAPI,
    gateway: Callable[[], Backend],
    replica_counts: Callable[[], dict[str, int]],
) -> None:
    """Bind the dashboard's routes to ``app``.

    Args:
        app: The gateway's FastAPI app.
        gateway: Returns this process's gateway replica (raising while it starts).
        replica_counts: Running replicas by deployment name (blocking; run in a thread).
    """
    cache = _Cache()

    def html_page(path: str, responses: dict[int | str, dict[str, Any]]) -> Any:
        """The decorator of a GET route answering an HTML page."""
        return app.get(
            path,
            tags=["dashboard"],
            include_in_schema=False,  # HTML pages for people, not the JSON API
            response_class=HTMLResponse,
            response_model=None,
            responses=responses,
        )

    async def monitor_fleet(gw: Backend) -> tuple[dict[str, dict[str, Any]], str | None]:
        async def load() -> tuple[dict[str, dict[str, Any]], str | None]:
            try:
                entries, recording = await asyncio.gather(
                    gw._ask_monitor("fleet"), gw._ask_monitor("recording")
                )
            except MlfleetError as exc:
                return {}, exc.message
            note = None
            if not recording["recording"]:  # an operator's pause: the figures stand still
                changed = recording.get("changed") or {}
                when = time.strftime("%H:%M UTC", time.gmtime(changed.get("at") or time.time()))
                note = (
                    f"recording is paused (since {when}, by {changed.get('by') or '-'}): "
                    "predictions since then are not counted"
                )
            return {e["model"]: e for e in entries}, note

        found: tuple[dict[str, dict[str, Any]], str | None] = await cache.get("monitor", load)
        return found

    async def rows(gw: Backend) -> tuple[list[render.ModelRow], dict[str, Any], str | None]:
        models, (monitored, error), replicas = await asyncio.gather(
            gw.fleet(),
            monitor_fleet(gw),
            cache.get("replicas", lambda: asyncio.to_thread(replica_counts)),
        )
        traffic = gw.traffic.snapshot()
        inline = set(gw.inline.loaded())
        out = []
        for info in models:
            # A deployment of its own: by its spec (dedicated) or by the scaler (scaled).
            mode = (
                "dedicated"
                if info.name in gw.dedicated
                else "scaled"
                if info.name in gw.scaled
                else "pool"
            )
            deployment = POOL if mode == "pool" else dedicated_deployment_name(info.name)
            champion = info.champion.version if info.champion else None
            out.append(
                model_row(
                    info,
                    monitored.get(info.name),
                    traffic.get(info.name),
                    mode=mode,
                    inline=(info.name, champion or "") in inline,
                    replicas=int(replicas.get(deployment, 0)),
                )
            )
        return out, {m.name: m for m in models}, error

    def viewing(request: Request) -> tuple[Backend, Viewer]:
        gw = gateway()
        return gw, access.viewer(request, gw.settings.api_keys)

    def acting(request: Request, name: str) -> tuple[Backend, Viewer]:
        """The gateway and an admin viewer about to act on model ``name``."""
        gw, who = viewing(request)
        check_name(name)
        if not who.admin:
            raise DashboardDenied(403, "forbidden", "this key lacks the 'admin' scope")
        return gw, who

    @html_page("/", DENIED)
    async def dashboard_overview(request: Request) -> Response:
        """The fleet dashboard: every model's champion, challenger, serving, traffic,
        latency, performance and drift. Scope ``dashboard`` or ``admin`` (header or the key
        form's cookie)."""
        try:
            gw, who = viewing(request)
        except DashboardDenied as exc:
            return refused(request, exc)
        page, nonce = frame(request, who)
        found, _, error = await rows(gw)
        content = render.overview(page, found, window_s=WINDOW_S, monitor_error=error)
        return page_response(request, content, nonce)

    @html_page("/dashboard/models/{name}", {**DENIED, 404: {"description": "Unknown model."}})
    async def dashboard_model(name: str, request: Request) -> Response:
        """A model: lineage of its champion, drift histograms and statistics over time,
        alerts and retrains; promote and roll back (admin)."""
        try:
            gw, who = viewing(request)
            check_name(name)
            page, nonce = frame(request, who)
            page.notice = notice_of(request)
            found, infos, _ = await rows(gw)
            info = infos.get(name)
            if info is None:
                raise NotFoundError(f"unknown model {name!r}")
        except MlfleetError as exc:
            return refused(request, exc)
        row = next(r for r in found if r.name == name)
        answers: tuple[Any, Any, Any] = await asyncio.gather(
            gw._ask_monitor("model", name),
            gw._ask_monitor("history", name, HISTORY_LIMIT),
            asyncio.to_thread(gw._moves, name, HISTORY_LIMIT),
            return_exceptions=True,
        )
        got_detail, got_past, got_moves = answers
        monitor_error: str | None = None
        detail: dict[str, Any] = {}
        if isinstance(got_detail, BaseException):
            if not isinstance(got_detail, NotFoundError):  # NotFound: no traffic seen yet
                monitor_error = getattr(got_detail, "message", "the monitor did not answer")
        else:
            detail = dict(got_detail)
        # A monitor started before history() existed answers without it: no trail, no lists.
        past: dict[str, Any] = {} if isinstance(got_past, BaseException) else dict(got_past)
        data = render.ModelPage(
            row=row,
            versions=info.versions,
            history=info.history,
            lineage=lineage(info, gw.settings),
            detail=detail.get("detail"),
            trail=list(past.get("statistics") or []),
            alerts=list(past.get("alerts") or []),
            retrains=list(past.get("retrains") or []),
            statuses=list(past.get("statuses") or []),
            moves=[] if isinstance(got_moves, BaseException) else list(got_moves),
            monitor_error=monitor_error,
        )
        return page_response(request, render.model_page(page, data), nonce)

    @html_page(
        "/dashboard/models/{name}/confirm",
        {**DENIED, 404: {"description": "Unknown model or version."}},
    )
    async def dashboard_confirm(
        name: str, request: Request, action: str = "promote", version: str | None = None
    ) -> Response:
        """The confirmation step of a promote or a rollback (admin)."""
        try:
            gw, who = acting(request, name)
            if action not in ("promote", "rollback"):
                raise NotFoundError("the action is promote or rollback")
            if action == "promote":
                version = check_version(version or "")
            infos = {m.name: m for m in await gw.fleet()}
            if name not in infos:
                raise NotFoundError(f"unknown model {name!r}")
        except MlfleetError as exc:
            return refused(request, exc)
        page, nonce = frame(request, who)
        champ = infos[name].champion
        content = render.confirm_page(
            page,
            name,
            action,
            version if action == "promote" else None,
            champ.version if champ else None,
        )
        return page_response(request, content, nonce)

    async def act(
        name: str,
        request: Request,
        run: Callable[[Backend, dict[str, str]], Awaitable[Any]],
        done: str,
    ) -> Response:
        try:
            gw, who = acting(request, name)
            form = await read_form(request)
            access.check_csrf(request, who, form.get("csrf", ""))
            result = await run(gw, form)
        except MlfleetError as exc:
            return refused(request, exc)
        cache.clear()
        version = quote(str(result.get("champion", "")), safe="")
        return RedirectResponse(
            f"/dashboard/models/{quote(name, safe='')}?done={done}&version={version}",
            status_code=303,
            headers=HEADERS,
        )

    @app.post(
        "/dashboard/models/{name}/promote",
        tags=["dashboard"],
        include_in_schema=False,  # HTML pages for people, not the JSON API
        response_model=None,
        status_code=303,
        responses={**DENIED, 404: {"description": "Unknown model or version."}},
    )
    async def dashboard_promote(name: str, request: Request) -> Response:
        """The confirmation form of a promote (``version``, ``csrf``): the same promotion as
        ``POST /v1/models/{name}/promote``; then back to the model's page (303)."""

        async def run(gw: Backend, form: dict[str, str]) -> Any:
            return await gw.apply_promote(name, check_version(form.get("version", "")))

        return await act(name, request, run, "promote")

    @app.post(
        "/dashboard/models/{name}/rollback",
        tags=["dashboard"],
        include_in_schema=False,  # HTML pages for people, not the JSON API
        response_model=None,
        status_code=303,
        responses={
            **DENIED,
            404: {"description": "Unknown model."},
            409: {"description": "No earlier champion."},
        },
    )
    async def dashboard_rollback(name: str, request: Request) -> Response:
        """The confirmation form of a rollback (``csrf``): the same rollback as
        ``POST /v1/models/{name}/rollback``; then back to the model's page (303)."""

        async def run(gw: Backend, form: dict[str, str]) -> Any:
            return await gw.apply_rollback(name)

        return await act(name, request, run, "rollback")

    @html_page(
        "/dashboard/datasets/{version}/report",
        {**DENIED, 404: {"description": "No such report on the gateway's node."}},
    )
    async def dashboard_report(version: str, request: Request) -> Response:
        """A dataset version's validation report (read-only, shown sandboxed)."""
        try:
            gw, _ = viewing(request)
            path = await asyncio.to_thread(find_report, gw.settings.datasets_dir, version)
            if path is None:
                raise NotFoundError(
                    "no validation report of that dataset version on the gateway's node"
                )
        except MlfleetError as exc:
            return refused(request, exc)
        content = await asyncio.to_thread(path.read_text, errors="replace")
        return HTMLResponse(content, headers=REPORT_HEADERS)

    @app.get(
        "/dashboard/login",
        tags=["dashboard"],
        include_in_schema=False,  # HTML pages for people, not the JSON API
        response_class=HTMLResponse,
    )
    async def dashboard_login_form() -> HTMLResponse:
        """The key form."""
        return html(render.key_form())

    @app.post(
        "/dashboard/login",
        tags=["dashboard"],
        include_in_schema=False,  # HTML pages for people, not the JSON API
        response_model=None,
        status_code=303,
        responses=DENIED,
    )
    async def dashboard_login(request: Request) -> Response:
        """The key form's post (``key``): sets the session cookie and goes to the fleet.
        The key is never shown back, logged or put in a URL."""
        try:
            gw = gateway()
            if not access.same_origin(request):
                raise DashboardDenied(403, "csrf", "the form came from another site")
            form = await read_form(request)
            if gw.settings.api_keys:
                access.login(form.get("key", ""), gw.settings.api_keys)
        except DashboardDenied as exc:
            if wants_html(request) and exc.http_status in (400, 401, 403):
                return html(render.key_form(exc.message), exc.http_status)
            raise
        response = RedirectResponse("/", status_code=303, headers=HEADERS)
        if gw.settings.api_keys:
            access.set_session(response, request, form["key"].strip())
        return response

    @app.post(
        "/dashboard/logout",
        tags=["dashboard"],
        include_in_schema=False,  # HTML pages for people, not the JSON API
        response_model=None,
        status_code=303,
    )
    async def dashboard_logout() -> Response:
        """Forget the session cookie; back to the key form."""
        response = RedirectResponse("/dashboard/login", status_code=303, headers=HEADERS)
        access.end_session(response)
        return response


__all__ = ["Backend", "find_report", "lineage", "model_row", "register_dashboard"]
