"""The one place configuration is read: environment variables prefixed ``MLFLEET_``.

Nothing here runs at import time; call :func:`get_settings` where settings are needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, get_args

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlfleet.errors import SettingsError

Scope = Literal["predict", "admin", "dashboard"]
"""``predict``: predictions, feedback, the model and monitoring routes. ``admin``: promote and
roll back (the API and the dashboard), and view the dashboard. ``dashboard``: view the
dashboard only (read-only)."""
SCOPES: tuple[str, ...] = get_args(Scope)


class ApiKey(BaseModel):
    """One configured gateway key: a name for logs, the key's digest and what it may do.

    Only the digest is configured (``mlfleet.serving.auth`` makes keys and checks them).
    """

    name: str = Field(min_length=1, max_length=64)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex sha256 of the key")
    scopes: list[Scope] = Field(min_length=1)

    @field_validator("sha256", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


class Settings(BaseSettings):
    """mlfleet's settings; each field is overridable as ``MLFLEET_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="MLFLEET_", extra="ignore")

    home: Path = Field(
        default=Path(".mlfleet"),
        description="Root folder for datasets, the MLflow SQLite store and a local head's state.",
    )
    ray_address: str = Field(
        default="",
        description="Ray cluster to connect to (e.g. '127.0.0.1:6379'); empty joins the local "
        "head mlfleet started under MLFLEET_HOME (`serve up`) while it answers, and otherwise "
        "starts an embedded local Ray for the duration of the command.",
    )
    ray_num_cpus: int | None = Field(
        default=None,
        ge=1,
        description="CPUs for an embedded local Ray (default: all of this machine's).",
    )
    warm_trainer: bool = Field(
        default=True,
        description="`mlfleet train` on mlfleet's local head hands the work to a warm trainer "
        "actor there (started by `serve up` or the first training), which keeps Ray Tune, "
        "scikit-learn and MLflow loaded between trainings; false trains in the command's "
        "own process.",
    )
    validate_engine: Literal["auto", "local", "ray"] = Field(
        default="auto",
        description="Where `data validate` checks batches: `local` in the command's own "
        "process (no Ray), `ray` on Ray Data, `auto` local for sources up to "
        "MLFLEET_VALIDATE_LOCAL_MAX_BYTES unless MLFLEET_RAY_ADDRESS names a cluster.",
    )
    # On 2 cores the local engine beat Ray Data at every size measured (5M rows: 120 MB of
    # numeric Parquet, 5.0 s vs 11.3 s; 1M messy rows: 4.4 s vs 6.7 s) and holds one batch
    # at a time; Ray Data earns its keep with many cores or nodes, and on inputs that big.
    validate_local_max_bytes: int = Field(
        default=1024**3,
        ge=0,
        description="With the auto engine, sources up to this many bytes on disk (all of "
        "them together) are validated in process; larger ones on Ray Data.",
    )
    mlflow_tracking_uri: str = Field(
        default="",
        description="MLflow tracking URI; empty means sqlite:///<home>/mlflow.db. The "
        "production profile names a tracking server (http://host:5000) on PostgreSQL.",
    )

    trust_registry_models: Literal[False] = Field(
        default=False,
        description="Removed: it let MLflow unpickle registered models. mlfleet now loads "
        "every model as skops against its own allow-list of types, whatever the model's "
        "MLmodel file says; only false (or leaving it unset) is accepted, so a deployment "
        "that asked for pickle loading hears that it no longer gets it.",
    )

    api_keys: list[ApiKey] = Field(
        default_factory=list,
        description='JSON list of {"name", "sha256", "scopes": ["predict", "admin", '
        '"dashboard"]}; create entries with `mlfleet keys create`. Empty: no auth, and the '
        "gateway binds 127.0.0.1 and refuses every client that is not on this machine "
        "(loopback).",
    )
    serve_host: str = Field(default="127.0.0.1", description="Address the HTTP gateway binds.")
    serve_port: int = Field(default=8000, ge=1, le=65535, description="Gateway HTTP port.")
    serve_haproxy: bool = Field(
        default=True,
        description="Put Ray Serve's HAProxy ingress in front of the gateway on heads mlfleet "
        "starts (about 2 ms less per request than Serve's Python proxy). It makes replica HTTP "
        "ports listen on every interface, so mlfleet only turns it on when API keys are set.",
    )
    max_request_bytes: int = Field(
        default=1 << 20, ge=1024, description="Largest request body; bigger ones get 413."
    )
    max_instances: int = Field(
        default=10_000,
        ge=1,
        description="Most rows one predict request may carry; more get 422 "
        "(too_many_instances) before any model is looked up.",
    )
    gateway_offload_rows: int = Field(
        default=256,
        ge=0,
        description="Predict requests with more rows than this are validated (and, when the "
        "gateway answers them itself, predicted) in a worker thread, off the event loop "
        "(~3 µs a row); smaller ones stay inline, where the thread hop would cost more.",
    )
    readiness_refresh_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How often a gateway replica re-checks that every champion answers, "
        "for /readyz (which answers from that check, never runs one itself).",
    )
    max_num_models_per_replica: int = Field(
        default=8, ge=1, description="Model versions a pool replica keeps loaded (LRU)."
    )
    gateway_inline_models: int = Field(
        default=8,
        ge=0,
        description="Small model versions each gateway replica keeps to answer requests "
        "itself (a handle hop saved): always when it has no other request in hand, and under "
        "load for pool models cheaper than MLFLEET_GATEWAY_INLINE_UNDER_LOAD_MS. 0 turns this "
        "off.",
    )
    gateway_inline_max_bytes: int = Field(
        default=32 << 20, ge=0, description="Largest stored model the gateway keeps."
    )
    gateway_inline_under_load_ms: float = Field(
        default=5.0,
        ge=0,
        description="Under load, a gateway still predicts a pool model it holds itself when "
        "that model's recent predictions there cost at most this much CPU (median). Forwarding "
        "a request costs ~3.5 ms of CPU besides the prediction (~1.6 ms in the gateway, ~2 ms "
        "in the model replica; bench_fleet's warm models) and makes it wait 3-6 ms; a "
        "prediction this short holds the gateway's loop no longer. Slower models, and "
        "dedicated ones, are forwarded under load and batched there. 0: forward every request "
        "that overlaps another.",
    )
    alias_refresh_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often the gateway re-reads the champion aliases; its listing of the "
        "fleet's models (GET /v1/models, the dashboard) is re-read when asked for once older.",
    )

    # --- overload and faults (Serve deployment options; docs/reliability.md) ---
    gateway_min_replicas: int = Field(
        default=1,
        ge=1,
        description="Gateway replicas `mlfleet serve up` keeps at least (it may scale to one "
        "more). On a cluster of several nodes set 2 or more: Serve spreads them over the "
        "nodes, so losing a node does not take every gateway with it (docs/reliability.md, "
        "Multi-node).",
    )
    gateway_max_ongoing_requests: int = Field(
        default=128,
        ge=1,
        description="Requests one gateway replica holds at once. The gateway only validates "
        "and forwards, so it admits more than a model replica does: the excess waits in the "
        "model's queue and is shed there with a JSON 503.",
    )
    gateway_max_queued_requests: int = Field(
        default=256,
        ge=1,
        description="Requests waiting in front of the gateway (in Serve's proxy or a gateway "
        "replica's own ingress) when every gateway replica is full; beyond this Serve answers "
        "503 with Retry-After in plain text (its own body, not mlfleet's envelope).",
    )
    model_max_ongoing_requests: int = Field(
        default=32,
        ge=1,
        description="Requests one pool or dedicated replica works on at once (a dedicated "
        "one takes at least twice its spec's max_batch_size, so that a batch can fill while "
        "the previous one runs). Serve's "
        "default of 5 left a third of 2 CPUs idle under load.",
    )
    model_max_queued_requests: int = Field(
        default=32,
        ge=1,
        description="Requests each gateway replica lets wait for a model's replicas when all "
        "of them are full (a dedicated model: at least its max_batch_size); beyond this the "
        "gateway sheds with 503, Retry-After and the JSON error envelope (code 'overloaded').",
    )
    overload_retry_after_seconds: int = Field(
        default=1,
        ge=0,
        le=3600,
        description="The Retry-After header (seconds) of every 503 that sheds load.",
    )
    replica_health_check_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often Serve checks each replica (its default is 10 s): a replica that "
        "died is noticed and replaced this much sooner; each check is one actor call.",
    )
    replica_shutdown_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How long a replica that is stopped (scale-down, redeploy) may take to "
        "finish its requests and flush its monitoring counts before Serve kills it.",
    )
    mlflow_ui_url: str = Field(
        default="",
        pattern=r"^(https?://\S+)?$",
        description="Base URL of an MLflow UI showing the same tracking server (e.g. "
        "http://127.0.0.1:5000); the dashboard then links each training run to it.",
    )

    # --- model-aware scaling (mlfleet.serving.scaling; a spec's serving.scaling overrides) ---
    scaling_enabled: bool = Field(
        default=False,
        description="Promote pool models that stay hot to a dedicated deployment of their own "
        "and fold them back once cold. Off by default: each promoted model reserves "
        "the CPU share of its spec's serving block (0.25 unless set).",
    )
    scaling_promote_rps: float = Field(
        default=20.0,
        gt=0,
        description="Requests per second, averaged over the window, at or above which a "
        "pool model is promoted.",
    )
    scaling_fold_rps: float = Field(
        default=5.0,
        ge=0,
        description="Requests per second at or below which a promoted model is folded back "
        "(below scaling_promote_rps: the gap keeps a model at the threshold from flapping).",
    )
    scaling_window_seconds: float = Field(
        default=60.0, gt=0, description="Request rates are averaged over this many seconds."
    )
    scaling_min_dwell_seconds: float = Field(
        default=300.0,
        ge=0,
        description="A model that moved stays where it is at least this long.",
    )
    scaling_max_dedicated: int = Field(
        default=2, ge=0, description="Most models promoted at once (the hottest first)."
    )
    scaling_interval_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often gateways report their request counts and learn where each "
        "model is served, and how often the scaler decides.",
    )
    scaling_ready_timeout_seconds: float = Field(
        default=180.0,
        gt=0,
        description="How long a promotion may take to start its deployment and load the "
        "model before it is given up (the model stays in the pool).",
    )

    # --- prediction sites ---
    monitoring_enabled: bool = Field(
        default=True,
        description="Prediction sites (gateway, pool, dedicated) count what they predict for "
        "the drift monitor. Off: nothing is recorded (for measuring what recording costs).",
    )
    monitor_flush_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often a prediction site bins what it predicted and flushes the counts "
        "to the monitor.",
    )
    monitor_flush_rows: int = Field(
        default=1000,
        ge=1,
        description="A prediction site flushes as soon as this many predicted rows wait, "
        "without waiting for the next tick.",
    )
    monitor_max_pending_rows: int = Field(
        default=50_000,
        ge=1,
        description="Rows a prediction site keeps for the monitor while it cannot reach it "
        "(counts, and the gateway's logged predictions); beyond this the oldest are dropped "
        "and counted as dropped_rows.",
    )

    # --- monitor ---
    monitor_store_url: str = Field(
        default="",
        description="SQLAlchemy URL of the monitor's store (buckets, sequence numbers, "
        "statuses, alerts, retrains); empty means sqlite:///<home>/monitor.db. The "
        "production profile names PostgreSQL (postgresql://user@host:5432/monitor).",
    )
    monitor_window_minutes: int = Field(
        default=10,
        ge=1,
        le=24 * 60,
        description="The current window reaches this many minutes back (a spec's "
        "monitoring.window.minutes overrides it per model).",
    )
    monitor_window_rows: int = Field(
        default=5_000,
        ge=1,
        description="...or stops at the first whole minute that brings it to this many rows "
        "(monitoring.window.rows per model).",
    )
    monitor_evaluate_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Every model is evaluated at least this often (and whenever a flush "
        "completes one of its one-minute buckets).",
    )
    monitor_commit_seconds: float = Field(
        default=0.25,
        gt=0,
        le=5,
        description="Group commit: flushes arriving within this interval are stored in one "
        "transaction, and each is acknowledged once it is stored.",
    )
    monitor_retention_days: float = Field(
        default=7.0,
        gt=0,
        description="One-minute buckets and status history older than this are deleted.",
    )
    monitor_num_cpus: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="CPU share reserved for the monitor actor (Serve replicas need the rest).",
    )

    # --- alerts ---
    # What the drift monitor does when a model's status changes (alerts), with the labels
    # that come back (feedback) and when drift lasts (retraining).
    alert_webhook_url: str = Field(
        default="",
        pattern=r"^(https?://\S+)?$",
        description="Where status changes are POSTed as signed JSON (http or https); empty "
        "turns the webhook off (the log line is always written).",
    )
    alert_webhook_secret: SecretStr = Field(
        default=SecretStr(""),
        validate_default=True,
        description="HMAC-SHA256 key of the webhook's X-Mlfleet-Signature header; required "
        "with a webhook URL. Never logged or shown.",
    )
    alert_webhook_attempts: int = Field(
        default=5, ge=1, le=20, description="Deliveries tried per alert before giving up."
    )
    alert_webhook_backoff_seconds: float = Field(
        default=0.5,
        ge=0,
        description="Base delay before a retry; it doubles at each attempt and is jittered "
        "(a random share of it), up to alert_webhook_max_backoff_seconds.",
    )
    alert_webhook_max_backoff_seconds: float = Field(
        default=30.0, ge=0, description="Longest wait between two webhook attempts."
    )
    alert_webhook_timeout_seconds: float = Field(
        default=5.0, gt=0, description="How long one webhook attempt may take."
    )
    feedback_max_rows: int = Field(
        default=200_000,
        ge=1,
        description="Predicted rows kept for delayed labels to join (the oldest go first).",
    )
    jobs_dir: Path | None = Field(
        default=None,
        description="Folder holding jobs/train.py for the monitor's retrain jobs, on the "
        "head; default: the jobs/ folder of the checkout mlfleet is installed from.",
    )
    retrain_jobs_address: str = Field(
        default="",
        description="Ray Jobs API that retrain jobs are submitted to (the dashboard's URL, "
        "or a GCS host:port); empty: the cluster the monitor runs in.",
    )

    @field_validator("alert_webhook_secret")
    @classmethod
    def _webhook_needs_secret(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        if info.data.get("alert_webhook_url") and not value.get_secret_value():
            raise ValueError("required with MLFLEET_ALERT_WEBHOOK_URL (alerts are signed)")
        return value

    @field_validator("scaling_fold_rps")
    @classmethod
    def _fold_below_promote(cls, value: float, info: ValidationInfo) -> float:
        promote = info.data.get("scaling_promote_rps")
        if promote is not None and value >= promote:
            raise ValueError("must be below MLFLEET_SCALING_PROMOTE_RPS")
        return value

    @field_validator("trust_registry_models", mode="before")
    @classmethod
    def _no_pickle(cls, value: object) -> object:
        said = str(value).strip().lower()
        if said in ("false", "0", "no", "off", ""):
            return False
        raise ValueError(
            "no longer supported: registered models load only as skops against "
            "mlfleet's allow-list (see docs/security.md); unset it"
        )

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        # Ray workers run in other working directories: every path we hand them is absolute.
        return value.expanduser().resolve()

    @property
    def datasets_dir(self) -> Path:
        """Folder holding every dataset version, ``<home>/datasets``."""
        return self.home / "datasets"

    def trusted_json(self) -> str:
        """These settings as JSON with their secrets in clear, for handing to mlfleet's own
        processes (the monitor actor signs webhooks with the secret). ``model_dump_json``
        masks secrets, which would leave such a process with ``**********``. Never log it.
        """
        data = self.model_dump(mode="json")
        data["alert_webhook_secret"] = self.alert_webhook_secret.get_secret_value()
        return json.dumps(data)

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI in force (SQLite under ``home`` unless set)."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def monitor_store(self) -> str:
        """The monitor store's SQLAlchemy URL in force (SQLite under ``home`` unless set)."""
        return self.monitor_store_url or f"sqlite:///{self.home / 'monitor.db'}"


def get_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with explicit overrides on top.

    Raises:
        SettingsError: naming the variable when a value does not parse.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"]] or ["settings"]
        where = f" at {'.'.join(loc[1:])}" if len(loc) > 1 else ""
        raise SettingsError(f"MLFLEET_{loc[0].upper()}{where}: {first['msg']}") from None
