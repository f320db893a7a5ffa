"""Retraining that closes the loop: when drift lasts, train again as a Ray Job.

Two parts, kept apart so the decision is unit-tested without Ray:

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
import shlex
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from mlfleet.errors import MlfleetError
from mlfleet.monitoring.feedback import feedback_source
from mlfleet.settings import Settings

DRIFT = "drift"
TRAIN_SCRIPT = "train.py"
FINISHED = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
SUBMIT_ATTEMPTS = 5  # tries of one submission; waits of 1, 2, 4, 8 s between them
SUBMIT_RETRY_SECONDS = 1.0
# The checkout's root, seen from platform/mlfleet/monitoring/retrain.py.
_CHECKOUT = Path(__file__).resolve().parents[3]


class RetrainError(MlfleetError):
    """A retrain job cannot be submitted or looked up (no Jobs API, no jobs/train.py)."""

    code = "retrain_failed"
    http_status = 503


class RetrainRule(Protocol):
    """The spec's ``retrain:`` block, as any object with these attributes."""

    @property
    def on_drift(self) -> bool: ...

    @property
    def sustained_windows(self) -> int: ...

    @property
    def cooldown_minutes(self) -> float: ...


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
    def of(cls, rule: RetrainRule | None) -> RetrainPolicy:
        """The policy of a spec's ``retrain:`` block (None: the defaults, retraining off)."""
        if rule is None:
            return cls()
        return cls(bool(rule.on_drift), int(rule.sustained_windows), float(rule.cooldown_minutes))

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
        needed = self.sustained_windows
        if not self.on_drift:
            return Decision(False, f"{model}: retraining on drift is off")
        run = 0
        for status in reversed(statuses):
            if status != DRIFT:
                break
            run += 1
        if run < needed:
            return Decision(
                False,
                f"{model}: drift at {min(run, needed)} of the last {needed} evaluations needed",
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
