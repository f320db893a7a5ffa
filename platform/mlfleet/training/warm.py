"""A warm trainer on mlfleet's own local head: `mlfleet train` hands it the work.

A training process spends about two seconds before and after its search on what every
training repeats: starting Python, importing Ray Tune, scikit-learn, MLflow and skops,
opening the tracking store and mapping the installed packages (MLflow checks the model's
requirements against them). Ray 2.60 ends every worker with the driver that leased it, so
warm Ray workers cannot carry these over between commands. A detached actor can: on the
head mlfleet started (`cluster up`, `serve up`) one trainer keeps them loaded, and the
command only joins the head, sends the request and prints what comes back.

The trainer runs the very same :func:`mlfleet.training.run.train` as the command would, with
the command's settings, working directory and ``MLFLEET_*`` / ``MLFLOW_*`` environment.
It takes one training at a time; the command trains in its own process when the trainer
is busy, missing (it is started then, for the next command), or runs other code than the
command (a trainer from an older checkout is replaced).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlfleet.errors import MlfleetError
from mlfleet.settings import Settings

if TYPE_CHECKING:
    from mlfleet.spec import LoadedSpec

TRAINER_NAME = "mlfleet-trainer"
# The environment a training reads beyond its settings: mlfleet's own and MLflow's (a
# tracking server's credentials, say). Ray's own variables stay the trainer's.
CARRIED_ENV_PREFIXES = ("MLFLEET_", "MLFLOW_")


@dataclass(frozen=True)
class SpecSummary:
    """What a command shows of the spec it trains (read where the training runs)."""

    name: str
    mode: str
    num_samples: int

    @classmethod
    def of(cls, loaded: LoadedSpec) -> SpecSummary:
        search = loaded.spec.search
        return cls(loaded.spec.name, search.mode, search.num_samples)


class Cancelled(MlfleetError):
    """The command that asked for the training was interrupted."""

    code = "cancelled"
    exit_code = 130


def code_fingerprint(root: Path | None = None) -> str:
    """The code a trainer runs: this interpreter and the files (name, size, mtime) of
    mlfleet's package (or of ``root``).

    A trainer started from other code (an older checkout, another virtualenv) has another
    fingerprint and is replaced rather than used.
    """
    root = root or Path(__file__).resolve().parents[1]
    digest = hashlib.sha256(sys.executable.encode())
    for path in sorted(root.rglob("*.py")):
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def carried_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The variables of ``environ`` (default: this process's) a training takes along."""
    environ = dict(os.environ) if environ is None else environ
    return {k: v for k, v in environ.items() if k.startswith(CARRIED_ENV_PREFIXES)}


@contextlib.contextmanager
def _as_command(env: dict[str, str], cwd: str) -> Iterator[None]:
    """The command's working directory and carried environment, for one training.

    Process-wide, which is why the trainer takes one training at a time.
    """
    saved_cwd = os.getcwd()
    saved = carried_env()
    for key in saved:
        os.environ.pop(key, None)
    os.environ.update(env)
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        for key in env:
            os.environ.pop(key, None)
        os.environ.update(saved)


class WarmTrainer:
    """The actor: trainings one at a time, with everything they import already loaded."""

    def __init__(self) -> None:
        # Of the code this process runs: the head's interpreter and files, which need not be
        # those of the command that started it.
        self._fingerprint = code_fingerprint()
        self._busy = threading.Lock()
        self._cancel = threading.Event()
        # What a training imports and maps the first time, paid here once.
        from mlflow.utils import requirements_utils

        from mlfleet import registry
        from mlfleet.training import run  # noqa: F401

        registry.preload()
        # MLflow maps every installed package to its modules before it writes a model's
        # requirements (~0.5 s); the map is kept for the process.
        init_map = getattr(requirements_utils, "_init_packages_to_modules_map", None)
        if init_map is not None:
            init_map()

    def fingerprint(self) -> str:
        return self._fingerprint

    def cancel(self) -> None:
        """Stop the running training at its next stage or trial (before it registers)."""
        self._cancel.set()

    def train(self, request: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        """Run one training; yields ("spec", SpecSummary), ("stage", message) and ("trial",
        TrialOutcome) as they happen, then ("result", TrainResult) or ("error",
        MlfleetError). Yields only ("busy", None) when a training is already running."""
        if not self._busy.acquire(blocking=False):
            yield ("busy", None)
            return
        try:
            self._cancel.clear()
            yield from self._train(request)
        finally:
            self._busy.release()

    def _train(self, request: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        from mlfleet.spec import load_spec
        from mlfleet.training.run import train

        events: queue.Queue[tuple[str, Any]] = queue.Queue()

        def report(kind: str) -> Callable[[Any], None]:
            def put(item: Any) -> None:
                if self._cancel.is_set():
                    raise Cancelled("training interrupted; nothing was registered")
                events.put((kind, item))

            return put

        def work() -> None:
            try:
                with _as_command(request["env"], request["cwd"]):
                    settings = Settings.model_validate_json(request["settings"])
                    loaded = load_spec(request["spec"])
                    events.put(("spec", SpecSummary.of(loaded)))
                    result = train(
                        loaded,
                        settings,
                        dataset_version=request["dataset_version"],
                        extra_sources=request["extra_sources"],
                        on_trial_done=report("trial"),
                        on_stage=report("stage"),
                    )
                result.trainer = "warm"
                events.put(("result", result))
            except MlfleetError as exc:
                events.put(("error", exc))
            except BaseException as exc:  # reported to the command, which raises it
                events.put(("error", MlfleetError(f"the warm trainer failed: {exc!r}")))

        thread = threading.Thread(target=work, name="warm-training", daemon=True)
        thread.start()
        while True:
            kind, item = events.get()
            yield (kind, item)
            if kind in ("result", "error"):
                break
        thread.join()


def _usable_head(settings: Settings) -> bool:
    """Whether this command would join mlfleet's own local head (not a named cluster, not
    inside a Ray job), where the trainer shares the command's files and machine."""
    from mlfleet.cluster import answering_head
    from mlfleet.ray_runtime import JOB_DRIVER_ENV

    if not settings.warm_trainer or settings.ray_address:
        return False
    if JOB_DRIVER_ENV in os.environ or os.environ.get("RAY_ADDRESS"):
        return False
    return answering_head(settings) is not None


def start_trainer() -> Any:
    """Start the trainer on the joined head, without waiting for it to be ready."""
    import ray

    from mlfleet.ray_runtime import NAMESPACE

    return (
        ray.remote(WarmTrainer)
        .options(
            name=TRAINER_NAME,
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            num_cpus=0,
            # On the head, beside the command's files (a cluster's other nodes need not
            # have them); Ray gives every head this resource.
            resources={"node:__internal_head__": 0.001},
            # train() and cancel() at once; trainings themselves take turns (the lock).
            max_concurrency=4,
        )
        .remote()
    )


def _find_trainer() -> Any | None:
    import ray

    from mlfleet.ray_runtime import NAMESPACE

    try:
        return ray.get_actor(TRAINER_NAME, namespace=NAMESPACE)
    except ValueError:
        return None


def _ready_trainer() -> Any | None:
    """The trainer when it is up and runs this command's code, else None. A trainer of other
    code is stopped (:func:`warm_up_after` starts its successor)."""
    import ray

    handle = _find_trainer()
    if handle is None:
        return None
    try:
        theirs = str(ray.get(handle.fingerprint.remote(), timeout=0.5))
    except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError):
        return None  # still starting (or dying): this command trains itself
    if theirs != code_fingerprint():
        ray.kill(handle, no_restart=True)
        return None
    return handle


def warm_up_after(settings: Settings) -> None:
    """After a training in the command's own process: start the trainer for the next one
    when mlfleet's local head has none. Started afterwards, so its imports do not compete
    with this training's search for the cores."""
    if _usable_head(settings) and _find_trainer() is None:
        start_trainer()


def train_on_head(
    spec: Path,
    settings: Settings,
    *,
    dataset_version: str | None,
    extra_sources: Sequence[str],
    on_spec: Callable[[SpecSummary], None],
    on_trial_done: Callable[[Any], None],
    on_stage: Callable[[str], None],
) -> Any | None:
    """Train on the warm trainer of mlfleet's local head; None when it cannot take the
    work (no such head, trainer missing, starting, of other code or busy), and the caller
    trains in its own process (then calls :func:`warm_up_after`).

    Raises:
        MlfleetError: what the training raised there (the same errors as in process).
    """
    if not _usable_head(settings):
        return None
    import ray

    from mlfleet.ray_runtime import connect

    connect(settings)
    handle = _ready_trainer()
    if handle is None:
        return None
    request = {
        "spec": str(spec),  # as given: errors name it so; the trainer works in "cwd"
        "settings": settings.trusted_json(),
        "env": carried_env(),
        "cwd": os.getcwd(),
        "dataset_version": dataset_version,
        "extra_sources": list(extra_sources),
    }
    events = handle.train.remote(request)
    try:
        for ref in events:
            kind, item = ray.get(ref)
            if kind == "busy":
                return None
            if kind == "spec":
                on_spec(item)
            elif kind == "stage":
                on_stage(item)
            elif kind == "trial":
                on_trial_done(item)
            elif kind == "error":
                raise item
            elif kind == "result":
                return item
    except KeyboardInterrupt:
        handle.cancel.remote()
        raise
    except ray.exceptions.RayActorError as exc:
        raise MlfleetError(
            f"the warm trainer died during the training: {str(exc).splitlines()[0][:200]}"
        ) from None
    raise MlfleetError("the warm trainer ended without a result")
