"""The gateway: one FastAPI ingress for the whole fleet on Ray Serve.

It authenticates, resolves each model's ``champion`` alias to a version (cached and
refreshed in the background), validates rows against that version's data contract and
forwards them to the multiplexed pool or the model's dedicated deployment. Errors are a
small JSON envelope, never a stack trace or an echo of the payload.

Monitoring: what the gateway predicts itself is counted by its sketch sender (the pool and
dedicated replicas count theirs), and every prediction, wherever it ran, is logged by
request id for feedback labels to join. Feedback and the monitoring routes forward to the
monitor actor.
"""

import asyncio
import json
import logging
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from mlfleet import registry
from mlfleet.errors import MlfleetError, NotFoundError
from mlfleet.monitoring.protocol import FeedbackResult, Label
from mlfleet.monitoring.sender import MonitorLink, MonitorUnavailable, SketchSender, sender_id
from mlfleet.serving import heap
from mlfleet.serving.auth import ADMIN_HEADER, ApiKey, authenticate, bearer, keyless_refusal
from mlfleet.serving.dashboard.routes import register_dashboard
from mlfleet.serving.inline import INLINE_WHEN_ONGOING_AT_MOST, InlineModels
from mlfleet.serving.models import (
    MODEL_NAME_PATTERN,
    VERSION_PATTERN,
    ModelCard,
    check_name,
    check_version,
    load_card,
    load_model,
)
from mlfleet.serving.models import predict as predict_with
from mlfleet.serving.names import POOL, SCALER, dedicated_deployment_name
from mlfleet.serving.scaling import scaling_active
from mlfleet.serving.schemas import (
    ErrorEnvelope,
    FeedbackRequest,
    FeedbackResponse,
    PredictRequest,
    PredictResponse,
    Readiness,
    RequestInvalid,
    RowValidator,
)
from mlfleet.serving.traffic import TrafficCounter
from mlfleet.settings import Settings
from mlfleet.spec import ServingSpec

log = logging.getLogger("mlfleet.gateway")
READY_TIMEOUT_S = 60.0
FEEDBACK_FLUSH_TIMEOUT_S = 5.0
# JSON nesting deeper than any request form needs (predict's deepest is 4) is refused
# before parsing: json.loads recurses, and a body of 100k brackets would blow its stack.
MAX_JSON_DEPTH = 32
# Bodies larger than this are parsed in a worker thread, off the event loop (~1 ms of
# json.loads); smaller ones are parsed inline, where a thread hop would cost more.
OFFLOAD_JSON_BYTES = 64 << 10
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"
# Absolute paths and file-like URIs in an error message: a server's layout is nobody's
# business (MLflow and pyarrow name the files they fail on).
_SERVER_PATH = re.compile(
    r"\b(?:file|sqlite|s3|gs|hdfs|dbfs|mlflow-artifacts|models|runs):/+[^\s'\"]*"
    r"|(?<![\w.:/~-])/[^\s'\"/:;,]+(?:/[^\s'\"/:;,]*)+"
)
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89abAB]|\\u[dD][c-fC-F]")


class ApiError(MlfleetError):
    """An HTTP-level problem with a fixed status (401, 403, 413, 415, 400)."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.http_status = status
        self.headers = headers or {}


def overloaded(retry_after: int) -> ApiError:
    """The 503 that sheds a request a model's replicas have no room for."""
    return ApiError(
        503,
        "overloaded",
        f"the model's replicas are busy; retry after {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )


class PromoteRequest(BaseModel):
    """Body of ``POST /v1/models/{name}/promote``."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(
        pattern=VERSION_PATTERN, description="The registry version to make champion."
    )


class RecordingRequest(BaseModel):
    """Body of ``PUT /v1/monitoring/recording``."""

    model_config = ConfigDict(extra="forbid")

    recording: StrictBool = Field(
        description="false pauses recording across the fleet (nothing is counted or logged "
        "for the monitor); true resumes it."
    )


def scrub(message: str) -> str:
    """``message`` without server paths or file URIs (each becomes ``<path>``)."""
    return _SERVER_PATH.sub("<path>", message) if "/" in message else message


def envelope(
    status: int,
    code: str,
    message: str,
    request_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The error body every failure uses."""
    body: dict[str, Any] = {"error": {"code": code, "message": scrub(message)}}
    if request_id:
        body["error"]["request_id"] = request_id
    return JSONResponse(status_code=status, content=body, headers=headers)


class _Guard:
    """Checks every request before any route sees it: keyless mode's loopback-only rule
    (403) and a declared body over the limit (413). Plain ASGI, a couple of µs a request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway = _GATEWAY
        if gateway is not None and scope["type"] == "http":
            refusal = gateway.refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app() -> FastAPI:
    """The FastAPI app (routes are bound to the Gateway deployment class below)."""
    app = FastAPI(
        title="mlfleet gateway",
        version="1",
        description="Predictions for every model of the fleet, one endpoint.",
    )

    @app.exception_handler(MlfleetError)
    async def _mlfleet_error(request: Request, exc: MlfleetError) -> JSONResponse:
        response = envelope(exc.http_status, exc.code, exc.message)
        if isinstance(exc, ApiError):
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        # A 405 carries the route's ``Allow`` header (RFC 9110).
        return envelope(exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        return envelope(422, "invalid_request", _first_problem(first))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = uuid.uuid4().hex
        log.exception("unhandled error %s", request_id)
        return envelope(500, "internal", "internal error; see the gateway logs", request_id)

    app.add_middleware(_Guard)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


app = create_app()


def authorize(request: Request, keys: list[ApiKey], scope: str) -> ApiKey | None:
    """The caller's key if it may use ``scope``; 401/403 otherwise.

    Without keys (keyless mode, loopback clients only) predict routes are open, and admin
    routes need the ``X-Mlfleet-Admin: 1`` header, which no web page can send cross-origin.
    """
    if not keys:
        if scope == "admin" and request.headers.get(ADMIN_HEADER) != "1":
            raise ApiError(
                403,
                "forbidden",
                f"without API keys, admin routes need the header {ADMIN_HEADER}: 1",
            )
        return None
    presented = bearer(request.headers.get("authorization")) or request.headers.get("x-api-key")
    key = authenticate(presented, keys)
    if key is None:
        raise ApiError(
            401,
            "unauthorized",
            "a valid API key is required (Authorization: Bearer <key> or X-API-Key)",
        )
    if scope not in key.scopes:
        raise ApiError(403, "forbidden", f"this key lacks the {scope!r} scope")
    return key


def too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the body is over {limit} bytes")


async def _read_json(request: Request, limit: int) -> Any:
    """The request's JSON body, read only after the caller authenticated it.

    Refuses (4xx) a wrong content type, a body over ``limit`` bytes (before reading past
    it), invalid JSON or UTF-8, nesting deeper than :data:`MAX_JSON_DEPTH`, and escaped
    lone UTF-16 surrogates (which no UTF-8 text, pyarrow column or JSON answer can hold).
    """
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "unsupported_media_type", "send JSON (Content-Type: application/json)")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large(limit)
    data = bytes(body)
    if len(data) > OFFLOAD_JSON_BYTES:
        return await asyncio.to_thread(parse_json, data)
    return parse_json(data)


def parse_json(data: bytes) -> Any:
    """``data`` parsed as a request body (see :func:`_read_json`); 400 when it cannot be."""
    # Brackets can only nest as deep as there are of them: the exact scan runs only when
    # the cheap count leaves room for doubt (a many-row body), never for a small request.
    if data.count(b"[") + data.count(b"{") > MAX_JSON_DEPTH and json_depth(data) > MAX_JSON_DEPTH:
        raise ApiError(400, "bad_json", f"the JSON nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        payload = json.loads(data)
    except RecursionError:
        raise ApiError(400, "bad_json", "the JSON nests too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad_json", "the body is not valid JSON") from None
    if b"\\u" in data and _ESCAPED_SURROGATE.search(data):
        try:  # paired surrogates are fine; a lone one cannot be encoded
            json.dumps(payload, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise ApiError(
                400, "bad_json", "the JSON holds an unpaired UTF-16 surrogate (\\ud800-\\udfff)"
            ) from None
    return payload


_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in ``data`` (brackets in strings skipped)."""
    depth = deepest = 0
    for match in _JSON_TOKEN.finditer(data):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


Body = TypeVar("Body", bound=BaseModel)


def _first_problem(error: Any) -> str:
    """One pydantic error as ``where: what``, with long keys of the client's cut short."""
    where = ".".join(str(p)[:64] for p in error.get("loc", ()) if p != "body")
    what = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{where}: {what}" if where else what


def _parsed(model: type[Body], payload: Any, field: str) -> Body:
    """``payload`` as ``model``; 422 naming the first problem (``field``: what it must hold)."""
    if not isinstance(payload, dict):
        raise RequestInvalid(f"the body must be a JSON object with '{field}'")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise RequestInvalid(_first_problem(exc.errors()[0])) from None


class Gateway:
    """State and routes of the ingress deployment (wrapped by ``serve.ingress`` in app.py)."""

    def __init__(
        self,
        pool: Any,
        dedicated: dict[str, Any],
        settings_json: str,
        specs_dir: str | None = None,
        servings: dict[str, Any] | None = None,
    ) -> None:
        self.settings = Settings.model_validate_json(settings_json)
        registry.configure(self.settings)
        self.pool = pool
        self.dedicated = dedicated
        self.champions: dict[str, str | None] = {}
        self.models: list[registry.ModelInfo] | None = None  # the fleet as last listed
        self._listings_started = 0
        self._listing = 0  # the number of the listing in ``models``
        self._champions_from = 0  # the number of the listing ``champions`` come from
        self._listed_at = 0.0  # when the listing in ``models`` started (monotonic)
        self._relisting: asyncio.Task[list[registry.ModelInfo]] | None = None
        self.cards: dict[tuple[str, str], ModelCard] = {}
        self.validators: dict[tuple[str, str], RowValidator] = {}
        self.inline = InlineModels(
            self.settings.gateway_inline_models,
            self.settings.gateway_inline_max_bytes,
            size_of=registry.model_bytes,
            load=load_model,
        )
        self.ongoing = 0  # predict requests this replica is handling right now
        self.traffic = TrafficCounter()  # per model requests, errors, latency (dashboard)
        self.sketches = SketchSender(sender_id("gateway"), self.settings)
        heap.watch()
        self.monitor = MonitorLink()
        # Model-aware scaling (mlfleet.serving.scaler): this replica counts its requests per
        # model, reports them to the scaler and learns from its reply which pool models have
        # a deployment of their own now (``scaled``: model -> handle).
        self.servings = {
            m: ServingSpec.model_validate(serving) for m, serving in (servings or {}).items()
        }
        self.scaling_on = scaling_active(self.servings, self.settings)
        self.scaler = MonitorLink(find=_find_scaler, name=SCALER)
        self.scaled: dict[str, Any] = {}
        self.scaled_epoch = 0
        self.scaling_rates: dict[str, float] = {}
        self.requests: Counter[str] = Counter()
        self._gateway_id = sender_id("gateway")
        self._reporter: asyncio.Task[None] | None = None
        self._store: Any = None  # the monitor's store, opened when moves are first read
        # However the app was deployed (`serve up`, `serve run`, `serve deploy`), its
        # monitor (and scaler) runs: started here if absent, off this replica's start-up path.
        threading.Thread(
            target=_ensure_monitor,
            args=(self.settings, specs_dir, self.servings if self.scaling_on else None),
            daemon=True,
        ).start()
        self._refresher: asyncio.Task[None] | None = None
        # /readyz answers from this cache; a background task refreshes it.
        self._readiness: tuple[bool, dict[str, Any]] | None = None
        self._readiness_task: asyncio.Task[None] | None = None
        self._readiness_check: asyncio.Task[tuple[bool, dict[str, Any]]] | None = None
        self.keyless = not self.settings.api_keys
        self.behind_haproxy = _haproxy_ingress()
        self._content_limit = str(self.settings.max_request_bytes)
        # One gateway per replica process: the routes below find it here. (Serve's
        # class-based routes lose their rewritten signatures when the class is pickled by
        # reference, so plain functions it is.)
        global _GATEWAY
        _GATEWAY = self
        if self.keyless:
            log.warning(
                "no API keys configured: the gateway serves loopback clients only, "
                "and admin routes need the %s: 1 header",
                ADMIN_HEADER,
            )

    def refusal(self, scope: Scope) -> JSONResponse | None:
        """The answer that ends a request before routing, or None to let it through."""
        if self.keyless:
            client = scope.get("client")
            host = None
            for name, value in scope["headers"]:
                if name == b"host":
                    host = value.decode("latin-1")
                    break
            reason = keyless_refusal(client[0] if client else None, host, self.behind_haproxy)
            if reason is not None:
                return envelope(403, "forbidden", reason)
        for name, value in scope["headers"]:
            if name == b"content-length":
                # Compared as digits, not parsed: a 10 GB claim costs nothing to refuse.
                declared = value.decode("latin-1").lstrip("0") or "0"
                limit = self._content_limit
                if not declared.isdigit() or (len(declared), declared) > (len(limit), limit):
                    return envelope(413, "payload_too_large", f"the body is over {limit} bytes")
                break
        return None

    # --- the fleet's models and champion aliases, cached ---------------------------------

    def _ensure_refresher(self) -> None:
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop())
        if self.scaling_on and (self._reporter is None or self._reporter.done()):
            self._reporter = asyncio.get_running_loop().create_task(self._report_loop())

    # --- model-aware scaling: counts out, placement in ------------------------------------

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.scaling_interval_seconds)
            counts, self.requests = self.requests, Counter()
            try:
                reply = await self.scaler.call(
                    "report", self._gateway_id, dict(counts), self.scaled_epoch
                )
            except Exception:  # the scaler restarts or is busy: keep the counts and routes
                self.requests.update(counts)
                log.debug("could not report to the scaler", exc_info=True)
                continue
            try:
                self._place(reply)
            except Exception:
                log.warning("could not apply the scaler's placement", exc_info=True)

    def _place(self, reply: dict[str, Any]) -> None:
        """Route each promoted model to its own application (and no longer a folded one)."""
        from ray import serve

        placement: dict[str, str] = reply["placement"]
        for model in list(self.scaled):
            if placement.get(model) != getattr(self.scaled[model], "app_name", None):
                del self.scaled[model]
        for model, app_name in placement.items():
            if model not in self.scaled and model not in self.dedicated:
                self.scaled[model] = serve.get_deployment_handle(
                    dedicated_deployment_name(model), app_name
                )
        self.scaled_epoch = int(reply["epoch"])
        self.scaling_rates = dict(reply.get("rates") or {})

    def _dedicated_handle(self, name: str) -> Any | None:
        """The deployment of ``name``'s own: a spec's ``mode: dedicated`` or promoted."""
        return self.dedicated.get(name) or self.scaled.get(name)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.alias_refresh_seconds)
            try:
                await self._refresh_champions()
            except Exception:  # the registry may be briefly unavailable: keep serving
                log.warning("could not refresh the fleet's champions", exc_info=True)
            # What requests imported since (the dashboard's charts, an error's formatting):
            # frozen once, so that full collections do not walk it again (serving.heap).
            heap.settle()

    def _ticket(self) -> int:
        """Listings are numbered as they start: one that started before the listing in hand
        (a slow background refresh overtaken by a promotion's) is dropped."""
        self._listings_started += 1
        return self._listings_started

    async def _refresh_champions(self) -> None:
        """The champions alone, every few seconds: one registry call (the registered models
        with their aliases). The whole listing, every version with its tags, is read only
        when asked for (:meth:`fleet`): at 100 models it is ~10x the work, and on a
        thread it still holds the GIL against the event loop (a tail on every request in
        flight while it runs)."""
        ticket = self._ticket()
        champions = await asyncio.to_thread(registry.champions)
        if ticket > self._champions_from:
            self._champions_from = ticket
            self.champions = champions

    async def _refresh_models(self) -> list[registry.ModelInfo]:
        """List the fleet (two registry calls) and update the champions from it."""
        ticket = self._ticket()
        started = time.monotonic()
        models = await asyncio.to_thread(registry.list_models)
        if ticket > self._listing:
            self._listing, self._listed_at = ticket, started
            self.models = models
        if ticket > self._champions_from:
            self._champions_from = ticket
            self.champions = {m.name: m.champion.version if m.champion else None for m in models}
        return self.models if self.models is not None else models

    async def fleet(self) -> list[registry.ModelInfo]:
        """Every registered model with its champion and challenger, never older than the
        refresh interval: re-read when older (callers meanwhile share that one read)."""
        self._ensure_refresher()
        fresh = time.monotonic() - self._listed_at <= self.settings.alias_refresh_seconds
        if self.models is not None and fresh:
            return self.models
        if self._relisting is None or self._relisting.done():
            self._relisting = asyncio.get_running_loop().create_task(self._refresh_models())
        return await asyncio.shield(self._relisting)

    async def _refresh(self, name: str) -> str | None:
        info = await asyncio.to_thread(registry.alias_version, name, registry.CHAMPION)
        version = info.version if info else None
        if version is None and not await asyncio.to_thread(registry.model_exists, name):
            self.champions.pop(name, None)
            raise NotFoundError(f"unknown model {name!r}")
        self.champions[name] = version
        return version

    async def champion(self, name: str) -> str:
        """The champion version of ``name`` (cached; refreshed every few seconds)."""
        self._ensure_refresher()
        version = self.champions.get(name) if name in self.champions else await self._refresh(name)
        if version is None:
            raise NotFoundError(f"model {name!r} has no champion version yet")
        return version

    async def card(self, name: str, version: str) -> ModelCard:
        """Contract and features of a version (cached forever: versions are immutable)."""
        key = (name, version)
        if key not in self.cards:
            info = await asyncio.to_thread(registry.get_version, name, version)
            self.cards[key] = await asyncio.to_thread(load_card, name, version, info.tags)
            card = self.cards[key]
            self.validators[key] = RowValidator(card.contract, card.features)
        return self.cards[key]

    async def heap_stats(self) -> dict[str, Any]:
        """This replica's heap settles and full collections (for operators and benchmarks)."""
        return heap.stats()

    async def inline_stats(self) -> list[dict[str, Any]]:
        """The model versions this replica holds and what their predictions here cost."""
        return self.inline.stats()

    # --- routes -----------------------------------------------------------------------------

    async def healthz(self) -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    async def readyz(self, request: Request) -> JSONResponse:
        """Whether every champion answers (503 otherwise), from a cache refreshed in the
        background: a caller never makes the fleet load anything. The per-model details
        need a valid key (any scope), or keyless mode.
        """
        ok, models = await self._cached_readiness()
        body: dict[str, Any] = {"ready": ok}
        if self.keyless or self._any_key(request):
            body["models"] = models
        return JSONResponse(status_code=200 if ok else 503, content=body)

    def _any_key(self, request: Request) -> bool:
        presented = bearer(request.headers.get("authorization")) or request.headers.get("x-api-key")
        return authenticate(presented, self.settings.api_keys) is not None

    async def _cached_readiness(self) -> tuple[bool, dict[str, Any]]:
        """The last readiness check; a fresh one only when there is none yet or a champion
        moved since (one check shared by every caller waiting on it)."""
        if self._readiness_task is None or self._readiness_task.done():
            self._readiness_task = asyncio.get_running_loop().create_task(self._readiness_loop())
        cached = self._readiness
        if cached is None or self._champions_moved(cached[1]):
            return await self._check_readiness()
        return cached

    def _champions_moved(self, checked: dict[str, Any]) -> bool:
        current = {name: v for name, v in self.champions.items() if v is not None}
        return current != {name: entry["version"] for name, entry in checked.items()}

    async def _check_readiness(self) -> tuple[bool, dict[str, Any]]:
        if self._readiness_check is None or self._readiness_check.done():
            self._readiness_check = asyncio.get_running_loop().create_task(self.readiness())
        try:
            self._readiness = await asyncio.shield(self._readiness_check)
        except Exception:  # the registry may be briefly unavailable
            log.warning("could not check readiness", exc_info=True)
            self._readiness = (False, {})
        return self._readiness

    async def _readiness_loop(self) -> None:
        while True:
            await self._check_readiness()
            await asyncio.sleep(self.settings.readiness_refresh_seconds)

    async def predict(self, name: str, request: Request, response: Response) -> PredictResponse:
        """Predict with the champion (or the version pinned by ``X-Model-Version``)."""
        self.ongoing += 1
        started = time.perf_counter()
        status = 500
        try:
            answer = await self._predict(name, request, response)
            status = 200
            return answer
        except MlfleetError as exc:
            status = exc.http_status
            raise
        finally:
            self.ongoing -= 1
            if name in self.champions:  # a known model: unknown names must not grow memory
                self.traffic.record(name, time.perf_counter() - started, status)

    async def _predict(self, name: str, request: Request, response: Response) -> PredictResponse:
        settings = self.settings
        authorize(request, settings.api_keys, "predict")
        request_id = request.headers.get("x-request-id")
        if request_id is None:
            request_id = uuid.uuid4().hex
        elif not REQUEST_ID.fullmatch(request_id):
            raise ApiError(
                400,
                "bad_request_id",
                "X-Request-Id must be 1-128 letters, digits, '.', '_' or '-'",
            )
        check_name(name)
        pinned = request.headers.get("x-model-version")
        if pinned is not None:
            check_version(pinned)
        payload = await _read_json(request, settings.max_request_bytes)
        body = _parsed(PredictRequest, payload, "instances")
        body.check_count(settings.max_instances)
        version = pinned or await self.champion(name)
        if self.scaling_on:
            self.requests[name] += 1
        await self.card(name, version)
        validator = self.validators[(name, version)]
        large = body.count() > settings.gateway_offload_rows
        if large:  # ~3 µs a row: a big request must not stall every other one on this loop
            frame, logged = await asyncio.to_thread(_read_rows, validator, body)
        else:
            frame, logged = validator.read(body.rows())
        local = self.inline.get(name, version)
        if local is not None and await self._answers_itself(name, version):
            served_by = "gateway"
            if large:
                result = await asyncio.to_thread(predict_with, local, frame)
            else:
                spent = time.thread_time()
                result = predict_with(local, frame)
                self.inline.observe(name, version, time.thread_time() - spent)
        elif name in self.dedicated:
            served_by = "dedicated"
            deployment = self.dedicated[name]
            result = await self._on_replica(lambda: deployment.predict.remote(version, frame))
        elif (scaled := self.scaled.get(name)) is not None:
            served_by = "dedicated"
            try:
                result = await self._on_replica(lambda: scaled.predict.remote(version, frame))
            except ApiError:
                raise
            except Exception:
                # Folded back while this request was on its way (its application is being
                # deleted): the pool serves it. A prediction is pure, so asking again is safe.
                log.info("the scaled deployment of %s failed a request; using the pool", name)
                served_by, result = "pool", await self._in_pool(name, version, frame)
        else:
            served_by = "pool"
            result = await self._in_pool(name, version, frame)
        # Counted where it was predicted (the pool and dedicated replicas count their own);
        # logged for every path, so that labels join whichever one answered.
        self.sketches.record(
            name,
            version,
            logged,
            result,
            request_id=request_id,
            log=True,
            sketch=served_by == "gateway",
        )
        response.headers["X-Served-By"] = served_by
        return PredictResponse(model=name, version=version, request_id=request_id, **result)

    async def _answers_itself(self, name: str, version: str) -> bool:
        """Whether the gateway predicts a model version it holds rather than forwarding it.

        A pool model whose predictions here are short (median CPU within
        ``gateway_inline_under_load_ms``; the hop would cost more): always. Any other (a
        slower model, or one with a deployment of its own, whose replicas batch): only when
        this request is the only one in hand.
        """
        if (
            name not in self.dedicated
            and name not in self.scaled
            and self.inline.answer_here(
                name, version, self.settings.gateway_inline_under_load_ms / 1000
            )
        ):
            return True
        # Let requests already waiting on the socket reach the handler first, so that
        # ``ongoing`` sees them: an inline prediction blocks this loop while it runs.
        await asyncio.sleep(0)
        return self.ongoing <= INLINE_WHEN_ONGOING_AT_MOST

    async def _in_pool(self, name: str, version: str, frame: Any) -> Any:
        handle = self.pool.options(multiplexed_model_id=f"{name}/{version}")
        return await self._on_replica(lambda: handle.predict.remote(frame))

    async def _on_replica(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """A prediction on a model replica, shed or repeated when the replicas fail it.

        Its queue full (Serve's ``max_queued_requests``): 503 with Retry-After, in the
        envelope. The replica died with the request in hand: asked once more, of a live
        replica (Serve's router has dropped the dead one); a prediction is pure, so
        repeating it is safe. Nothing is added on the request's happy path.
        """
        try:
            try:
                return await call()
            except RayActorError:
                log.warning("a model replica died during a request; asking another")
                return await call()
        except BackPressureError:
            raise overloaded(self.settings.overload_retry_after_seconds) from None

    async def list_models(self, request: Request) -> dict[str, Any]:
        """Every model: champion, serving mode, replicas, dataset version, columns."""
        authorize(request, self.settings.api_keys, "predict")
        models = await self.fleet()
        replicas = await asyncio.to_thread(_replica_counts)
        own = {**self.scaled, **self.dedicated}
        out = []
        for info in models:
            champ = info.champion
            entry: dict[str, Any] = {
                "name": info.name,
                "champion": champ.version if champ else None,
                "challenger": info.challenger.version if info.challenger else None,
                "serving_mode": "dedicated" if info.name in own else "pool",
                "scaled": info.name in self.scaled,
                "replicas": replicas.get(_deployment_of(info.name, own), 0),
                "dataset_version": champ.tags.get("mlfleet.dataset_version") if champ else None,
                "columns": None,
            }
            if champ is not None:
                card = await self.card(info.name, champ.version)
                entry["columns"] = [
                    {"name": c.name, "type": c.type, "nullable": c.nullable}
                    for c in card.contract.columns
                    if c.name in card.features
                ]
            out.append(entry)
        return {"models": out}

    async def describe(self, name: str, request: Request) -> dict[str, Any]:
        """One model: contract, metrics, lineage tags."""
        authorize(request, self.settings.api_keys, "predict")
        check_name(name)
        info = await asyncio.to_thread(registry.describe, name)
        champ = info.champion
        body: dict[str, Any] = {
            "name": name,
            "champion": champ.version if champ else None,
            "challenger": info.challenger.version if info.challenger else None,
            "serving_mode": "dedicated" if self._dedicated_handle(name) else "pool",
            "scaled": name in self.scaled,
            "champion_history": info.history,
        }
        if champ is not None:
            card = await self.card(name, champ.version)
            tags = champ.tags
            body.update(
                {
                    "features": card.features,
                    "task": card.task,
                    "contract": card.contract.model_dump(exclude_none=True),
                    "metrics": {
                        k.removeprefix("mlfleet.holdout."): float(v)
                        for k, v in tags.items()
                        if k.startswith("mlfleet.holdout.")
                    },
                    "lineage": {
                        k.removeprefix("mlfleet."): v
                        for k, v in tags.items()
                        if k
                        in (
                            "mlfleet.dataset_version",
                            "mlfleet.contract_sha",
                            "mlfleet.spec_sha",
                            "mlfleet.git_sha",
                            "mlfleet.run_id",
                        )
                    },
                }
            )
        return body

    async def promote(self, name: str, version: str, request: Request) -> dict[str, Any]:
        """Make a version the champion (admin), once it loads where it will serve.

        The alias moves only after the card and the model loaded: a version that cannot
        serve answers 422 naming why, and the old champion keeps serving.
        """
        authorize(request, self.settings.api_keys, "admin")
        return await self.apply_promote(name, version)

    async def apply_promote(self, name: str, version: str) -> dict[str, Any]:
        """Promote once the caller is authorised (the admin route and the dashboard)."""
        check_name(name)
        check_version(version)
        await asyncio.to_thread(
            registry.promote, name, version, verify=self._verifier(asyncio.get_running_loop())
        )
        await self._refresh_models()  # this replica shows the change at once
        return {"model": name, "champion": version}

    async def rollback(self, name: str, request: Request) -> dict[str, Any]:
        """Return the champion to the previous one (admin), once that one loads."""
        authorize(request, self.settings.api_keys, "admin")
        return await self.apply_rollback(name)

    async def apply_rollback(self, name: str) -> dict[str, Any]:
        """Roll back once the caller is authorised (the admin route and the dashboard)."""
        check_name(name)
        info = await asyncio.to_thread(
            registry.rollback, name, verify=self._verifier(asyncio.get_running_loop())
        )
        await self._refresh_models()  # this replica shows the change at once
        return {"model": name, "champion": info.version}

    def _verifier(self, loop: asyncio.AbstractEventLoop) -> registry.Verify:
        """A registry ``verify`` (it runs in a worker thread) that loads a version on this loop."""

        def verify(name: str, version: str) -> None:
            asyncio.run_coroutine_threadsafe(self._serves(name, version), loop).result()

        return verify

    async def _serves(self, name: str, version: str) -> None:
        """Load a version's card here and its model in the replica that will serve it.

        Raises:
            ModelLoadError: (422) naming what does not load.
            ApiError: 503 when the model replicas could not be asked.
        """
        try:
            await self.card(name, version)
        except (registry.ModelLoadError, NotFoundError):
            raise
        except MlfleetError as exc:  # e.g. an invalid registered contract
            raise registry.ModelLoadError(
                f"model {name!r} version {version}: {exc.message}"
            ) from None
        deployment = self._dedicated_handle(name)
        pool = self.pool.options(multiplexed_model_id=f"{name}/{version}")

        def ask() -> Any:
            return deployment.ready.remote(version) if deployment else pool.ready.remote()

        try:
            await asyncio.wait_for(self._on_replica(ask), READY_TIMEOUT_S)
        except ApiError:  # the replicas shed it (503 overloaded, with Retry-After)
            raise
        except Exception as exc:
            cause = getattr(exc, "cause", None)  # a Ray task error wraps the replica's own
            if isinstance(cause, MlfleetError):
                raise cause from None
            log.warning("model replicas could not load %s/%s", name, version, exc_info=True)
            raise ApiError(
                503,
                "model_unavailable",
                f"the model replicas could not load model {name!r} version {version} in "
                f"time; the champion is unchanged, try again",
            ) from None

    # --- monitoring ---------------------------------------------------------------------------

    async def _known(self, name: str) -> None:
        """404 unless ``name`` is a registered model."""
        check_name(name)
        if name in self.champions:
            return
        if not await asyncio.to_thread(registry.model_exists, name):
            raise NotFoundError(f"unknown model {name!r}")

    async def _ask_monitor(self, method: str, *args: Any) -> Any:
        """A monitor call; 503 when it cannot be reached, its own errors as they are."""
        try:
            return await self.monitor.call(method, *args)
        except MonitorUnavailable:
            raise ApiError(
                503, "monitor_unavailable", "the drift monitor is not reachable; try again shortly"
            ) from None
        except Exception as exc:
            cause = getattr(exc, "cause", None)  # a Ray task error wraps the monitor's own
            if isinstance(cause, MlfleetError):
                raise cause from None
            raise

    async def feedback(self, name: str, request: Request) -> FeedbackResponse:
        """Join ground-truth labels to logged predictions of ``name``."""
        authorize(request, self.settings.api_keys, "predict")
        check_name(name)
        payload = await _read_json(request, self.settings.max_request_bytes)
        body = _parsed(FeedbackRequest, payload, "labels")
        await self._known(name)
        labels = [Label(request_id=x.request_id, label=x.label, row=x.row) for x in body.labels]
        # What this replica logged must reach the monitor before the labels that join it.
        await self._flush_logged()
        result: FeedbackResult = await self._ask_monitor("feedback", name, labels)
        return FeedbackResponse(
            matched=result.matched, unknown=list(result.unknown), written=result.written
        )

    async def _flush_logged(self) -> None:
        try:
            await asyncio.wait_for(self.sketches.flush(), FEEDBACK_FLUSH_TIMEOUT_S)
        except Exception:  # the monitor may be down: feedback says so on its own call
            log.debug("flush before feedback failed", exc_info=True)

    async def monitoring(self, request: Request) -> dict[str, Any]:
        """Every monitored model's status (the monitor's ``fleet()``)."""
        authorize(request, self.settings.api_keys, "predict")
        models, recording = await asyncio.gather(
            self._ask_monitor("fleet"), self._ask_monitor("recording")
        )
        return {"models": models, **recording}

    async def set_recording(self, on: bool, by: str) -> dict[str, Any]:
        """Pause or resume recording across the fleet (the monitor tells every sender);
        ``by`` names the key that asked."""
        body: dict[str, Any] = await self._ask_monitor("set_recording", on, by)
        return body

    async def monitoring_model(
        self, name: str, request: Request, version: str | None = None
    ) -> dict[str, Any]:
        """One model's per-feature statistics and histograms (the monitor's ``model()``)."""
        authorize(request, self.settings.api_keys, "predict")
        await self._known(name)
        args = (name,) if version is None else (name, check_version(version))
        body: dict[str, Any] = await self._ask_monitor("model", *args)
        return body

    # --- model-aware scaling ---------------------------------------------------------------

    async def scaling(self, request: Request, model: str | None, limit: int) -> dict[str, Any]:
        """Where each model with a deployment of its own runs, and the scaler's moves."""
        authorize(request, self.settings.api_keys, "predict")
        if model is not None:
            check_name(model)
        try:
            moves = await asyncio.to_thread(self._moves, model, limit)
        except Exception:
            log.warning("could not read the scaling moves", exc_info=True)
            raise ApiError(
                503, "store_unavailable", "the monitor's store cannot be read; try again shortly"
            ) from None
        s = self.settings
        return {
            "enabled": self.scaling_on,
            "policy": {
                "enabled_by_default": s.scaling_enabled,
                "promote_rps": s.scaling_promote_rps,
                "fold_rps": s.scaling_fold_rps,
                "window_seconds": s.scaling_window_seconds,
                "min_dwell_seconds": s.scaling_min_dwell_seconds,
                "max_dedicated": s.scaling_max_dedicated,
            },
            "dedicated": sorted(self.dedicated),
            "scaled": sorted(self.scaled),
            "rates": self.scaling_rates,
            "moves": moves,
        }

    def _moves(self, model: str | None, limit: int) -> list[dict[str, Any]]:
        if self._store is None:
            from mlfleet.monitoring.store import MonitorStore

            self._store = MonitorStore(self.settings.monitor_store)
        moves: list[dict[str, Any]] = self._store.moves(model, limit)
        return moves

    async def __del__(self) -> None:
        """Serve's graceful shutdown: flush what this replica still holds (bounded wait)."""
        await self.sketches.close()

    async def sender_stats(self) -> dict[str, Any]:
        """This replica's sketch sender (for operators and tests)."""
        return self.sketches.stats()

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        models = await self.fleet()
        status: dict[str, Any] = {}
        ok = True
        for info in models:
            if info.champion is None:
                continue
            version = info.champion.version
            try:
                if (own := self._dedicated_handle(info.name)) is not None:
                    call = own.ready.remote(version)
                else:
                    call = self.pool.options(
                        multiplexed_model_id=f"{info.name}/{version}"
                    ).ready.remote()
                await asyncio.wait_for(call, READY_TIMEOUT_S)
                status[info.name] = {"version": version, "ready": True}
            except Exception as exc:
                ok = False
                status[info.name] = {
                    "version": version,
                    "ready": False,
                    "error": type(exc).__name__,
                }
        return ok, status


def _read_rows(validator: RowValidator, body: PredictRequest) -> tuple[Any, Any]:
    return validator.read(body.rows())


def _haproxy_ingress() -> bool:
    """Whether Serve's HAProxy ingress forwards requests to this replica (Ray's own flag,
    as this replica's Serve read it)."""
    try:
        from ray.serve._private import constants
    except ImportError:
        return False
    return bool(getattr(constants, "RAY_SERVE_ENABLE_HA_PROXY", False))


def _ensure_monitor(
    settings: Settings, specs_dir: str | None, servings: dict[str, ServingSpec] | None
) -> None:
    """Start the fleet's monitor unless it runs, and its scaler when ``servings`` are given
    (a gateway replica's start-up, in a thread)."""
    from mlfleet.monitoring.actor import ensure_monitor

    if specs_dir is not None and not Path(specs_dir).is_dir():
        log.warning("specs folder %s is not on this node: monitoring uses defaults", specs_dir)
        specs_dir = None
    try:
        ensure_monitor(settings, specs_dir=specs_dir)
    except Exception:  # serving goes on; the monitoring routes answer 503 meanwhile
        log.warning("could not start the drift monitor", exc_info=True)
    if servings is not None:
        from mlfleet.serving.scaler import ensure_scaler

        try:
            ensure_scaler(settings, servings)
        except Exception:  # serving goes on from the pool; the gateway keeps asking
            log.warning("could not start the scaler", exc_info=True)


def _find_scaler() -> Any | None:
    # Imported when first needed: the scaler's module brings the store (SQLAlchemy).
    from mlfleet.serving.scaler import find_scaler

    return find_scaler()


def _deployment_of(name: str, dedicated: dict[str, Any]) -> str:
    return dedicated_deployment_name(name) if name in dedicated else POOL


def _replica_counts() -> dict[str, int]:
    from ray import serve

    counts: dict[str, int] = {}
    try:
        status = serve.status()
    except Exception:
        return counts
    for application in status.applications.values():
        for dep_name, dep in application.deployments.items():
            counts[dep_name] = int(
                sum(
                    n
                    for state, n in dep.replica_states.items()
                    if str(getattr(state, "value", state)) == "RUNNING"
                )
            )
    return counts


_GATEWAY: Gateway | None = None


def _gateway() -> Gateway:
    if _GATEWAY is None:
        raise ApiError(503, "starting", "the gateway is starting")
    return _GATEWAY


# --- OpenAPI: what each route answers -------------------------------------------------------

_ERRORS: dict[int, str] = {
    400: "Malformed body: invalid JSON or UTF-8, nesting deeper than 32 levels, an unpaired "
    "surrogate, or a malformed X-Request-Id.",
    401: "Missing or invalid API key.",
    403: "The key lacks the scope; or, without API keys configured, the client is not on "
    "this machine (or an admin route lacks X-Mlfleet-Admin: 1).",
    404: "Unknown model or version (or a name that cannot be one).",
    409: "The registry's state does not allow it (e.g. no previous champion to roll back to).",
    413: "The body is over MLFLEET_MAX_REQUEST_BYTES.",
    415: "The body is not sent as application/json.",
    422: "The body does not have the documented shape, or its rows break the model's "
    "contract (the message names the row and field); for promote and rollback, the "
    "version does not load (the old champion keeps serving).",
    503: "The gateway is starting or overloaded (see Retry-After), or a service it needs "
    "(the drift monitor) cannot be reached.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for ``codes``: each the error envelope. Every route can also
    answer 403 (keyless mode), 413 (body limit) and 503 (starting or overloaded)."""
    every = sorted({*codes, 403, 413, 503})
    return {code: {"model": ErrorEnvelope, "description": _ERRORS[code]} for code in every}


KEYED = (401, 403)
_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]
_NAME = PathParam(description="Model name.", json_schema_extra={"pattern": MODEL_NAME_PATTERN})


def _keyed(**extra: Any) -> dict[str, Any]:
    """``openapi_extra`` of a route that needs a key."""
    return {"security": _SECURITY, **extra}


def _body(schema: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        }
    }


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document, with the request bodies the handlers read themselves
    (bounded as this gateway's settings bound them) and its two ways to present a key."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    max_instances = (
        _GATEWAY.settings.max_instances
        if _GATEWAY is not None
        else Settings.model_fields["max_instances"].default
    )
    bodies: dict[str, dict[str, Any]] = {
        "PredictRequest": PredictRequest.openapi_schema(max_instances),
        "PromoteRequest": PromoteRequest.model_json_schema(),
        "RecordingRequest": RecordingRequest.model_json_schema(),
        "FeedbackRequest": FeedbackRequest.model_json_schema(
            ref_template="#/components/schemas/{model}"
        ),
    }
    for name, schema in bodies.items():
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    # Names of paths are not validated by FastAPI (the handlers answer 404 themselves), so
    # its default 422 "HTTPValidationError" answer is not one these routes give.
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            answer = operation.get("responses", {}).get("422", {})
            ref = str(answer.get("content", {}).get("application/json", {}).get("schema", {}))
            if "HTTPValidationError" in ref:
                del operation["responses"]["422"]
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    components["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "Authorization: Bearer <key>",
        },
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    app.openapi_schema = doc
    return doc


@app.get(
    "/healthz",
    tags=["health"],
    responses={k: v for k, v in errors().items() if k != 503},
)
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@app.get(
    "/readyz",
    tags=["health"],
    response_model=Readiness,
    response_model_exclude_none=True,
    responses={
        **errors(),
        503: {
            "description": "Not every champion answers (or the gateway is starting).",
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            {"$ref": "#/components/schemas/Readiness"},
                            {"$ref": "#/components/schemas/ErrorEnvelope"},
                        ]
                    }
                }
            },
        },
    },
    openapi_extra={"security": [{}, *_SECURITY]},
)
async def readyz(request: Request) -> JSONResponse:
    """Whether every champion answers (503 otherwise), from a cache refreshed in the
    background. Only ``{"ready": ...}`` without a key; per-model details with a valid key
    (any scope)."""
    return await _gateway().readyz(request)


@app.get("/v1/models", tags=["models"], responses=errors(*KEYED), openapi_extra=_keyed())
async def list_models(request: Request) -> dict[str, Any]:
    """Every model: champion, serving mode, replicas, dataset version, contract columns."""
    return await _gateway().list_models(request)


@app.get(
    "/v1/models/{name}",
    tags=["models"],
    responses=errors(*KEYED, 404),
    openapi_extra=_keyed(),
)
async def describe(request: Request, name: str = _NAME) -> dict[str, Any]:
    """One model: contract, metrics and lineage tags of its champion."""
    return await _gateway().describe(name, request)


@app.post(
    "/v1/models/{name}/predict",
    tags=["predict"],
    response_model=PredictResponse,
    responses={
        200: {
            "headers": {
                "X-Served-By": {
                    "description": "Where it ran: gateway, dedicated or pool.",
                    "schema": {"type": "string", "enum": ["gateway", "dedicated", "pool"]},
                }
            }
        },
        **errors(*KEYED, 400, 404, 415, 422),
    },
    openapi_extra=_keyed(
        **_body("PredictRequest"),
        parameters=[
            {
                "name": "X-Model-Version",
                "in": "header",
                "required": False,
                "description": "Predict with this version instead of the champion.",
                "schema": {"type": "string", "pattern": VERSION_PATTERN},
            },
            {
                "name": "X-Request-Id",
                "in": "header",
                "required": False,
                "description": "Your id for this request (feedback labels refer to it); "
                "one is made up when absent.",
                "schema": {"type": "string", "pattern": REQUEST_ID_PATTERN},
            },
        ],
    ),
)
async def predict(request: Request, response: Response, name: str = _NAME) -> PredictResponse:
    """Predict with the champion, or the version pinned by the ``X-Model-Version`` header.

    At most ``MLFLEET_MAX_INSTANCES`` rows (422 ``too_many_instances`` beyond). The
    ``X-Served-By`` response header says where it ran: ``gateway`` (a small model
    answered inside an otherwise idle gateway), ``dedicated`` or ``pool``.
    """
    return await _gateway().predict(name, request, response)


@app.post(
    "/v1/models/{name}/promote",
    tags=["admin"],
    responses=errors(*KEYED, 400, 404, 409, 415, 422),
    openapi_extra=_keyed(**_body("PromoteRequest")),
)
async def promote(request: Request, name: str = _NAME) -> dict[str, Any]:
    """Make ``version`` the champion (admin scope)."""
    gateway = _gateway()
    # The key first: nobody gets a body read, let alone parsed, without one.
    authorize(request, gateway.settings.api_keys, "admin")
    check_name(name)
    payload = await _read_json(request, gateway.settings.max_request_bytes)
    body = _parsed(PromoteRequest, payload, "version")
    return await gateway.promote(name, body.version, request)


@app.post(
    "/v1/models/{name}/rollback",
    tags=["admin"],
    responses=errors(*KEYED, 404, 409, 422),
    openapi_extra=_keyed(),
)
async def rollback(request: Request, name: str = _NAME) -> dict[str, Any]:
    """Point the champion back at the previous champion (admin scope)."""
    return await _gateway().rollback(name, request)


@app.post(
    "/v1/models/{name}/feedback",
    tags=["monitoring"],
    response_model=FeedbackResponse,
    responses=errors(*KEYED, 400, 404, 415, 422),
    openapi_extra=_keyed(**_body("FeedbackRequest")),
)
async def feedback(request: Request, name: str = _NAME) -> FeedbackResponse:
    """Ground truth for earlier predictions, by the ``request_id`` they answered with.

    ``row`` picks a row of a multi-row request (default 0). Labels join the predictions the
    monitor still holds; their realised accuracy (or MAE) then shows in
    ``GET /v1/monitoring``. Scope ``predict``. 404: unknown model (or one the monitor has
    no data for yet); 503: the drift monitor is not reachable.
    """
    return await _gateway().feedback(name, request)


@app.get("/v1/monitoring", tags=["monitoring"], responses=errors(*KEYED), openapi_extra=_keyed())
async def monitoring(request: Request) -> dict[str, Any]:
    """Every monitored model: status, drifted features, rows in the window, estimated and
    realised performance, last alert and last retrain. 503: the drift monitor is not
    reachable."""
    return await _gateway().monitoring(request)


@app.put(
    "/v1/monitoring/recording",
    tags=["admin"],
    responses=errors(*KEYED, 400, 415, 422),
    openapi_extra=_keyed(**_body("RecordingRequest")),
)
async def monitoring_recording(request: Request) -> dict[str, Any]:
    """Pause (``{"recording": false}``) or resume (``true``) recording across the fleet:
    while paused, no replica counts or logs predictions for the monitor (labels for them do
    not join). Every replica follows within about two flush intervals; a restarted monitor
    records again. ``GET /v1/monitoring`` shows the state and its last change. Admin scope;
    503: the drift monitor is not reachable."""
    gateway = _gateway()
    key = authorize(request, gateway.settings.api_keys, "admin")
    payload = await _read_json(request, gateway.settings.max_request_bytes)
    body = _parsed(RecordingRequest, payload, "recording")
    return await gateway.set_recording(body.recording, key.name if key else "keyless admin")


@app.get(
    "/v1/monitoring/{name}",
    tags=["monitoring"],
    responses=errors(*KEYED, 404),
    openapi_extra=_keyed(),
)
async def monitoring_model(
    request: Request,
    name: str = _NAME,
    version: str | None = Query(
        default=None,
        description="A version with rows in the window (default: the one the "
        "model's status is about).",
        json_schema_extra={"pattern": VERSION_PATTERN},
    ),
) -> dict[str, Any]:
    """One model: per feature the drift statistics and verdict, with the reference and
    current histograms. 404: unknown model or version, or no data for it yet."""
    return await _gateway().monitoring_model(name, request, version)


@app.get(
    "/v1/scaling",
    tags=["models"],
    responses=errors(*KEYED, 404, 422),  # 503: the monitor's store cannot be read
    openapi_extra=_keyed(),
)
async def scaling(
    request: Request,
    model: str | None = Query(
        default=None,
        description="Only this model's moves.",
        json_schema_extra={"pattern": MODEL_NAME_PATTERN},
    ),
    limit: int = Query(default=50, ge=1, le=500, description="At most this many moves."),
) -> dict[str, Any]:
    """Model-aware scaling: whether it is on, its policy, the models with a deployment of
    their own (``dedicated`` by their spec, ``scaled`` by the scaler), the request rates
    the scaler saw last, and its moves, newest first: each with when, why (the rate against
    the threshold), and how it ended. Scope ``predict``."""
    return await _gateway().scaling(request, model, limit)


# The fleet dashboard (GET / and /dashboard/...): its own module, bound to this app.
register_dashboard(app, _gateway, _replica_counts)
