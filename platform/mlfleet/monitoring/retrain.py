"""Retraining that closes the loop: when drift lasts, train again as a Ray Job.

Three parts, kept apart so the decision is unit-tested without Ray:

- :class:`RetrainPolicy` (pure): a spec's ``retrain: {on_drift: true, sustained_windows:
  3, cooldown_minutes: 60}``. :meth:`RetrainPolicy.decide` says retrain when the model's
  status was ``drift`` at the last ``sustained_windows`` consecutive evaluations (a
  ``warning`` or ``ok`` between them starts the count again), never within
  ``cooldown_minutes`` of the previous retrain, and not while a retrain job still runs.
- :func:`submit_retrain` submits ``jobs/train.py`` as a Ray Job through
  :class:`ray.job_submission.JobSubmissionClient`, with the spec's sources plus the
  model's labelled feedback (``$MLFLEET_HOME/feedback/NAME/*.parquet``, passed as
  ``--extra-source`` once there is some). It is ``mlfleet train``: the new version is
  registered as challenger and goes through the same promotion gate, so a worse model is
  never promoted. :func:`job_status` reports the job and, once it succeeded, the
  training's result (version, promoted, the gate's decision) read from its logs.
- :class:`RetrainHook` (the monitor actor's ``on_sustained_drift(model, streak)``, made
  by :func:`retrain_hook`): reads the model's spec from the fleet's folder, asks the
  policy, submits, records every retrain in the monitor's store with its reason and Ray
  job id, and follows the job to record its outcome.

How the job runs:

- **Address**: ``MLFLEET_RETRAIN_JOBS_ADDRESS`` when set (a dashboard URL, or a GCS
  ``host:port``); otherwise the cluster this process is connected to: in the monitor
  actor, ``ray.get_runtime_context().gcs_address``, from which the client reads the
  dashboard's URL in the cluster's GCS. The Jobs API needs the dashboard. Token auth
  (``RAY_AUTH_MODE=token``) works as it does for any Ray client: the client sends the
  process's cluster token.
- **Entrypoint**: ``<python> <jobs_dir>/train.py --spec <spec> --json [--extra-source
  <glob>]``, all absolute: ``python`` is this process's interpreter (in the monitor
  actor, the head's venv, which has mlfleet installed), ``jobs_dir`` is
  ``MLFLEET_JOBS_DIR`` or the ``jobs/`` folder of the checkout mlfleet is installed from
  (an editable install, as ``make setup`` makes). No ``working_dir`` is uploaded.
- **Environment**: ``MLFLEET_HOME`` (so the job reads the feedback and writes datasets
  where the monitor looks) and ``MLFLEET_MLFLOW_TRACKING_URI`` when set without a
  password. Ray shows a job's runtime environment in its dashboard, so credentials (a
  database password in the tracking URI) must come from the head's own environment.
  Ray sets ``RAY_ADDRESS`` for the job's driver, so training joins the same cluster.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from mlfleet.errors import MlfleetError, SpecError
from mlfleet.monitoring.feedback import feedback_source
from mlfleet.settings import Settings
from mlfleet.spec import LoadedSpec, RetrainSpec, load_fleet_specs, load_spec

DRIFT = "drift"
TRAIN_SCRIPT = "train.py"
FINISHED = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
SUBMIT_ATTEMPTS = 5  # tries of one submission; waits of 1, 2, 4, 8 s between them
SUBMIT_RETRY_SECONDS = 1.0
# The checkout's root, seen from platform/mlfleet/monitoring/retrain.py.
_CHECKOUT = Path(__file__).resolve().parents[3]

logger = logging.getLogger(__name__)


class RetrainError(MlfleetError):
    """A retrain job cannot be submitted or looked up (no Jobs API, no jobs/train.py)."""

    code = "retrain_failed"
    http_status = 503


@dataclass(frozen=True)
class Decision:
    """Whether to retrain now, and why (recorded by the monitor either way)."""

    retrain: bool
    reason: str


@dataclass(frozen=True)
class RetrainPolicy:
    """When sustained drift triggers a retrain (the spec's ``retrain:`` block).

    Attributes:
        on_drift: Retrain on sustained drift at all (off: the monitor only alerts).
        sustained_windows: Consecutive evaluations at ``drift`` that make drift sustained.
        cooldown_minutes: The least time between two retrains of one model.
    """

    on_drift: bool = False
    sustained_windows: int = 3
    cooldown_minutes: float = 60.0

    def __post_init__(self) -> None:
        if self.sustained_windows < 1:
            raise ValueError("sustained_windows must be at least 1")
        if self.cooldown_minutes < 0:
            raise ValueError("cooldown_minutes cannot be negative")

    @classmethod
    def of(cls, rule: RetrainSpec | None) -> RetrainPolicy:
        """The policy of a spec's ``retrain:`` block (None: the defaults, retraining off)."""
        if rule is None:
            return cls()
        return cls(rule.on_drift, rule.sustained_windows, float(rule.cooldown_minutes))

    def decide(
        self,
        model: str,
        statuses: Sequence[str],
        last_retrain_at: float | None,
        now: float,
        *,
        running_job: str | None = None,
    ) -> Decision:
        """Retrain ``model`` now?

        Args:
            model: The model's name (for the reason).
            statuses: The model's status at its recent evaluations, oldest first, the
                evaluation that just ran last (at least ``sustained_windows`` of them).
            last_retrain_at: When the last retrain was submitted (Unix seconds), or None.
            now: The time of this evaluation (Unix seconds).
            running_job: The id of a retrain job that has not finished yet, if any.
        """
        streak = 0
        for status in reversed(statuses):
            if status != DRIFT:
                break
            streak += 1
        return self.decide_streak(model, streak, last_retrain_at, now, running_job=running_job)

    def decide_streak(
        self,
        model: str,
        drift_streak: int,
        last_retrain_at: float | None,
        now: float,
        *,
        running_job: str | None = None,
    ) -> Decision:
        """:meth:`decide` for a monitor that counts the consecutive ``drift`` evaluations
        (its drift streak) instead of keeping the statuses."""
        needed = self.sustained_windows
        if not self.on_drift:
            return Decision(False, f"{model}: retraining on drift is off")
        if drift_streak < needed:
            return Decision(
                False,
                f"{model}: drift at {drift_streak} of the last {needed} evaluations needed",
            )
        sustained = f"{model}: drift at the last {needed} consecutive evaluations"
        if running_job is not None:
            return Decision(False, f"{sustained}, but retrain job {running_job} is still running")
        if last_retrain_at is not None:
            minutes = (now - last_retrain_at) / 60.0
            if minutes < self.cooldown_minutes:
                return Decision(
                    False,
                    f"{sustained}, but the last retrain was {minutes:.0f} min ago "
                    f"(cooldown {self.cooldown_minutes:g} min)",
                )
            return Decision(True, f"{sustained}; last retrain {minutes:.0f} min ago")
        return Decision(True, sustained)


# --- the job -------------------------------------------------------------------------------


def train_script(settings: Settings) -> Path:
    """The absolute path of ``jobs/train.py`` that retrain jobs run.

    Raises:
        RetrainError: it is not where ``MLFLEET_JOBS_DIR`` (or the checkout) says.
    """
    folder = settings.jobs_dir if settings.jobs_dir is not None else _CHECKOUT / "jobs"
    script = (folder / TRAIN_SCRIPT).expanduser().resolve()
    if not script.is_file():
        raise RetrainError(
            f"{script} not found: set MLFLEET_JOBS_DIR to the folder holding train.py on the head"
        )
    return script


def retrain_entrypoint(
    spec_path: Path, script: Path, python: str, extra_sources: Sequence[str] = ()
) -> str:
    """The job's shell command: absolute interpreter, script and spec, quoted."""
    argv = [python, str(script), "--spec", str(spec_path), "--json"]
    for source in extra_sources:
        argv += ["--extra-source", source]
    return shlex.join(argv)


def job_env(settings: Settings) -> dict[str, str]:
    """The job's environment variables (see the module: never a credential)."""
    env = {"MLFLEET_HOME": str(settings.home), "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    uri = settings.mlflow_tracking_uri
    if uri and urlsplit(uri).password is None:
        env["MLFLEET_MLFLOW_TRACKING_URI"] = uri
    return env


def jobs_address(settings: Settings) -> str:
    """The Jobs API to use (see the module).

    Raises:
        RetrainError: no address is set and this process is not connected to Ray.
    """
    if settings.retrain_jobs_address:
        return settings.retrain_jobs_address
    import ray

    if ray.is_initialized():
        return str(ray.get_runtime_context().gcs_address)
    if settings.ray_address:
        return settings.ray_address
    raise RetrainError(
        "no Ray cluster to submit the retrain job to: run the monitor on the cluster or set "
        "MLFLEET_RETRAIN_JOBS_ADDRESS"
    )


@lru_cache(maxsize=4)
def _client(address: str) -> Any:
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # Ray raises ValueError, ConnectionError, RuntimeError…
        raise RetrainError(f"the Ray Jobs API at {address} does not answer: {exc}") from None


def submit_retrain(
    model: str,
    spec_path: str | Path,
    settings: Settings,
    *,
    reason: str = "",
    extra_sources: Sequence[str] | None = None,
    address: str | None = None,
    python: str | None = None,
) -> str:
    """Submit ``jobs/train.py`` for ``model`` as a Ray Job; return its job id.

    Args:
        model: The model's name (its spec's ``name``): whose feedback is added.
        spec_path: The model's spec file, as readable on the head.
        settings: Home, jobs folder and Jobs API address.
        reason: Why (the policy's reason), kept in the job's metadata.
        extra_sources: Sources added to the spec's; default: the model's labelled
            feedback when there is any (:func:`~mlfleet.monitoring.feedback.feedback_source`).
        address: The Jobs API; default :func:`jobs_address`.
        python: The job's interpreter; default this process's (the head's venv when
            called from the monitor actor).

    A submission the Jobs API refuses with a 5xx or no answer (a head that just started
    has no job agent for a few seconds) is tried again, up to ``SUBMIT_ATTEMPTS`` times
    over about 15 s, with the same submission id: the call blocks meanwhile, so an async
    monitor runs it in a thread (``asyncio.to_thread``).

    Raises:
        RetrainError: the job cannot be submitted.
    """
    if extra_sources is None:
        found = feedback_source(settings.home, model)
        extra_sources = [] if found is None else [found]
    spec = Path(spec_path).expanduser().resolve()
    if not spec.is_file():
        raise RetrainError(f"spec file not found: {spec}")
    entrypoint = retrain_entrypoint(
        spec, train_script(settings), python or sys.executable, extra_sources
    )
    submission_id = (
        f"mlfleet-retrain-{model}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    )
    client = _client(address or jobs_address(settings))
    problem = ""
    for attempt in range(1, SUBMIT_ATTEMPTS + 1):
        try:
            return str(
                client.submit_job(
                    entrypoint=entrypoint,
                    submission_id=submission_id,
                    runtime_env={"env_vars": job_env(settings)},
                    metadata={"mlfleet.model": model, "mlfleet.reason": reason[:500]},
                )
            )
        except Exception as exc:  # Ray raises RuntimeError with the HTTP status in it
            problem = str(exc)
        if attempt > 1 and "already exists" in problem:
            return submission_id  # an earlier attempt got through, its answer did not
        if "status code 4" in problem or attempt == SUBMIT_ATTEMPTS:
            break
        # A head that just started answers 500 "No available agent to submit job" for a
        # few seconds; so does one under load.
        time.sleep(SUBMIT_RETRY_SECONDS * 2 ** (attempt - 1))
    raise RetrainError(f"submitting the retrain job of {model} failed: {problem}")


@dataclass(frozen=True)
class RetrainJob:
    """A retrain job as the monitor records it.

    Attributes:
        job_id: The Ray job's submission id.
        status: Ray's job status (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED).
        finished: Whether the status is final.
        message: Ray's message (e.g. the exit code of a failed job).
        result: Once succeeded, the training's JSON result (``version``, ``promoted``,
            ``decision``, ``score``, ``champion_score``…), as ``mlfleet train --json``
            prints it.
    """

    job_id: str
    status: str
    finished: bool
    message: str = ""
    result: dict[str, Any] | None = field(default=None)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "job_id": self.job_id,
            "status": self.status,
            "finished": self.finished,
            "message": self.message,
            "result": self.result,
        }


def train_result(logs: str) -> dict[str, Any] | None:
    """The last ``mlfleet train --json`` result printed in a job's logs, or None."""
    decoder = json.JSONDecoder()
    start = len(logs)
    while (start := logs.rfind("{", 0, start)) != -1:
        if start > 0 and logs[start - 1] != "\n":
            continue  # the result starts a line; other braces belong to log lines
        try:
            found, _ = decoder.raw_decode(logs, start)
        except json.JSONDecodeError:
            continue
        if isinstance(found, Mapping) and "version" in found and "promoted" in found:
            return dict(found)
    return None


def job_status(job_id: str, settings: Settings, *, address: str | None = None) -> RetrainJob:
    """Where a retrain job stands, with the training's result once it succeeded.

    Raises:
        RetrainError: the Jobs API does not answer or does not know the job.
    """
    client = _client(address or jobs_address(settings))
    try:
        info = client.get_job_info(job_id)
        status = str(getattr(info.status, "value", info.status))
        result = train_result(client.get_job_logs(job_id)) if status == "SUCCEEDED" else None
    except Exception as exc:
        raise RetrainError(f"retrain job {job_id}: {exc}") from None
    return RetrainJob(
        job_id=job_id,
        status=status,
        finished=status in FINISHED,
        message=str(info.message or ""),
        result=result,
    )


# --- the monitor's hook --------------------------------------------------------------------

SUBMITTED = "submitted"  # the job is submitted and not finished yet
SUBMIT_FAILED = "submit_failed"  # the Jobs API refused it (no job id)
LOST = "lost"  # no final status within WATCH_SECONDS
WATCH_SECONDS = 24 * 3600.0
WATCH_POLL_SECONDS = 10.0


class RetrainStore(Protocol):
    """Where retrains are recorded (``mlfleet.monitoring.store.MonitorStore``)."""

    def record_retrain(
        self,
        model: str,
        *,
        reason: str,
        version: str | None = None,
        status: str = SUBMITTED,
        job_id: str | None = None,
        details: dict[str, Any] | None = None,
        at: float | None = None,
    ) -> str:
        """Record a retrain; return its id."""
        ...

    def update_retrain(
        self,
        retrain_id: str,
        *,
        status: str | None = None,
        job_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Update a retrain's status or details."""
        ...

    def retrains(self, model: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The latest retrains (of one model), newest first."""
        ...


class RetrainHook:
    """``on_sustained_drift(model, streak)``: the monitor's retrain policy at work.

    Called (on a hook thread) at each evaluation that finds ``model`` drifting for
    ``streak`` consecutive evaluations. It reads the model's spec from the fleet's folder
    and its ``retrain:`` block, asks the policy with the last retrain the store holds, and
    when it says yes submits the job (:func:`submit_retrain`) and records it in the store
    with its reason and job id (status ``submitted``; ``submit_failed`` with the error
    when the Jobs API refuses). A thread then follows the job and records its final
    status (``succeeded``, ``failed``, ``stopped``) and the training's result (new
    version, promoted or not, the gate's decision). Jobs still ``submitted`` when the
    hook starts (a restarted monitor) are followed again.

    Args:
        settings: Home, Jobs API address, jobs folder.
        store: Where retrains are recorded.
        specs_dir: The fleet's specs folder (``*/model.yaml``), readable on the head.
        policy: Replaces every spec's ``retrain:`` block (default: each spec's own).
        poll_seconds: How often a submitted job's status is read.
        clock: The current Unix time.
    """

    def __init__(
        self,
        settings: Settings,
        store: RetrainStore,
        specs_dir: str | Path | None,
        *,
        policy: RetrainPolicy | None = None,
        poll_seconds: float = WATCH_POLL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.specs_dir = None if specs_dir is None else Path(specs_dir)
        self.policy = policy
        self.poll_seconds = poll_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._specs: dict[str, Path] = {}
        self._running: dict[str, str] = {}  # model -> job id of its unfinished retrain
        for row in store.retrains(limit=200):
            if row.get("status") == SUBMITTED and row.get("job_id"):
                self._follow(str(row["model"]), str(row["id"]), str(row["job_id"]))

    def __call__(self, model: str, streak: int) -> None:
        """Retrain ``model`` if its policy says so (see the class)."""
        with self._lock:  # hook threads may call concurrently; one decision at a time
            loaded = self._spec(model)
            if loaded is None:
                logger.warning("retrain: no spec of %s under %s", model, self.specs_dir)
                return
            spec = loaded.path
            policy = self.policy or RetrainPolicy.of(loaded.spec.retrain)
            decision = policy.decide_streak(
                model,
                streak,
                self._last_submitted(model),
                self.clock(),
                running_job=self._running.get(model),
            )
            if not decision.retrain:
                logger.debug("retrain: %s", decision.reason)
                return
            found = feedback_source(self.settings.home, model)
            sources = [] if found is None else [found]
            details: dict[str, Any] = {
                "streak": streak,
                "spec": str(spec),
                "extra_sources": sources,
            }
            try:
                job_id = submit_retrain(
                    model, spec, self.settings, reason=decision.reason, extra_sources=sources
                )
            except RetrainError as exc:
                logger.error("retrain of %s not submitted: %s", model, exc)
                self.store.record_retrain(
                    model,
                    reason=decision.reason,
                    status=SUBMIT_FAILED,
                    details={**details, "error": str(exc)},
                    at=self.clock(),
                )
                return
            logger.warning(
                "retrain of %s submitted as Ray job %s: %s", model, job_id, decision.reason
            )
            retrain_id = self.store.record_retrain(
                model,
                reason=decision.reason,
                status=SUBMITTED,
                job_id=job_id,
                details=details,
                at=self.clock(),
            )
            self._follow(model, retrain_id, job_id)

    def _spec(self, model: str) -> LoadedSpec | None:
        """The model's spec, read afresh (its ``retrain:`` block may have been edited).

        Its file is found with :func:`~mlfleet.spec.load_fleet_specs` (again for a model
        added since); a folder that no longer loads keeps the files found before.
        """
        path = self._specs.get(model)
        if path is not None:
            return load_spec(path)
        if self.specs_dir is None:
            return None
        try:
            found = {loaded.spec.name: loaded for loaded in load_fleet_specs(self.specs_dir)}
        except SpecError as exc:
            logger.warning("retrain: the specs under %s do not load: %s", self.specs_dir, exc)
            return None
        self._specs = {name: loaded.path for name, loaded in found.items()}
        return found.get(model)

    def _last_submitted(self, model: str) -> float | None:
        for row in self.store.retrains(model, limit=50):
            if row.get("job_id") and row.get("status") != SUBMIT_FAILED:
                return float(row["at"])
        return None

    def _follow(self, model: str, retrain_id: str, job_id: str) -> None:
        self._running[model] = job_id
        thread = threading.Thread(
            target=self._watch,
            args=(model, retrain_id, job_id),
            name=f"mlfleet-retrain-{model}",
            daemon=True,
        )
        thread.start()

    def _watch(self, model: str, retrain_id: str, job_id: str) -> None:
        deadline = time.monotonic() + WATCH_SECONDS
        try:
            while True:
                try:
                    outcome = job_status(job_id, self.settings)
                except RetrainError as exc:
                    logger.warning("retrain of %s: %s", model, exc)
                else:
                    if outcome.finished:
                        self.store.update_retrain(
                            retrain_id,
                            status=outcome.status.lower(),
                            details={"job": outcome.to_json()},
                        )
                        logger.warning("retrain of %s: %s", model, _outcome_line(outcome))
                        return
                if time.monotonic() > deadline:
                    self.store.update_retrain(
                        retrain_id, status=LOST, details={"error": "no final status in time"}
                    )
                    return
                time.sleep(self.poll_seconds)
        except Exception:
            logger.exception("retrain of %s: following job %s failed", model, job_id)
        finally:
            with self._lock:
                if self._running.get(model) == job_id:
                    del self._running[model]


def _outcome_line(outcome: RetrainJob) -> str:
    result = outcome.result
    if outcome.status != "SUCCEEDED" or result is None:
        return f"job {outcome.job_id} {outcome.status.lower()}: {outcome.message}"
    verdict = "promoted to champion" if result.get("promoted") else "kept as challenger"
    return f"v{result.get('version')} {verdict}: {result.get('decision')}"


def retrain_hook(
    settings: Settings, store: RetrainStore, specs_dir: str | Path | None
) -> RetrainHook:
    """The monitor actor's sustained-drift hook (see :class:`RetrainHook`)."""
    return RetrainHook(settings, store, specs_dir)
