"""The only module that talks to MLflow's model registry.

It registers versions (the sklearn pipeline in skops format with its side files), loads
them, reads their side files and size, and moves the aliases. Aliases carry the serving
state: ``champion`` is what the fleet serves, ``challenger`` the latest candidate.

Loading trusts nothing the artifact says about itself: a model loads only from its
``model.skops`` file, and only if every type skops would build is in mlfleet's own
:data:`ALLOWED_MODEL_TYPES` (whatever the MLmodel file names as its format or trusted types).

Every change of champion is an entry in an append-only log (see "champion history" below),
so a rollback returns to the previous champion even after several promotions and
concurrent promotions and rollbacks lose no entry.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mlfleet.contract.schema import Contract
from mlfleet.errors import ContractError, MlfleetError, NotFoundError
from mlfleet.settings import Settings

log = logging.getLogger("mlfleet.registry")

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "mlfleet.champion_history"
TAG_PREFIX = "mlfleet."
FEATURES_TAG = "mlfleet.features"  # JSON list of the features the model reads
MODEL_ARTIFACT = "model"  # the model's folder inside its run
EXTRA_FILES = "extra_files"  # where MLflow keeps a version's side files
REGISTERED_MODELS_PAGE = 1000  # the most MLflow returns per page
MODEL_REQUIREMENTS = ("scikit-learn", "numpy", "pandas", "scipy", "skops")
SKOPS_FILE = "model.skops"  # where MLflow's sklearn flavor writes a skops model
MLMODEL_FILE = "MLmodel"

# The types, beyond those skops trusts on its own (builtins, numpy arrays, the sklearn
# estimators and transformers), that the pipelines mlfleet trains hold once fitted. Derived by
# fitting every estimator of the modules a spec may name (spec.ALLOWED_ESTIMATOR_PREFIXES)
# inside training.features.build_pipeline, with the losses, tree algorithms, distance metrics
# and solvers their parameters can select, and asking skops what it would not trust. Every
# entry is a data holder or pure maths; nothing here calls back into Python code a model file
# could choose (sklearn's PyFuncDistance64, which wraps a callable, is left out on purpose).
_DISTANCES = [
    "BrayCurtis",
    "Canberra",
    "Chebyshev",
    "Dice",
    "Euclidean",
    "Hamming",
    "Haversine",
    "Jaccard",
    "Kulsinski",
    "Mahalanobis",
    "Manhattan",
    "Matching",
    "Minkowski",
    "RogersTanimoto",
    "RussellRao",
    "SEuclidean",
    "SokalMichener",
    "SokalSneath",
]
_LOSSES = [
    "HalfSquaredError",
    "AbsoluteError",
    "PinballLoss",
    "HuberLoss",
    "HalfPoissonLoss",
    "HalfGammaLoss",
    "HalfTweedieLoss",
    "HalfTweedieLossIdentity",
    "HalfBinomialLoss",
    "HalfMultinomialLoss",
    "ExponentialLoss",
]
ALLOWED_MODEL_TYPES = frozenset(
    {
        "numpy.dtype",
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        *(f"sklearn.metrics._dist_metrics.{d}Distance64" for d in _DISTANCES),
        *(f"sklearn._loss.loss.{loss}" for loss in _LOSSES),
    }
)
# How a type name from a model file may appear in an error message (it is the file's text).
_PRINTABLE_TYPE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,120}$")
_KNOWN_FORMATS = ("pickle", "cloudpickle", "skops")


class RegistryError(MlfleetError):
    """A registry operation is not possible (e.g. nothing to roll back to)."""

    code = "registry_conflict"
    http_status = 409


class ModelLoadError(MlfleetError):
    """A version's files cannot be loaded to serve (missing, corrupt, not skops).

    Messages name the model and version, never a server path.
    """

    code = "model_unloadable"
    http_status = 422


class UntrustedModelError(ModelLoadError):
    """A version's model is not a skops file of allowed types; nothing of it was run."""

    code = "model_untrusted"


class RegistryUnavailable(MlfleetError):
    """The MLflow tracking server named by the settings does not answer."""

    code = "registry_unavailable"
    exit_code = 1
    http_status = 503


TRACKING_SERVER_TIMEOUT_S = 5.0


def check_reachable(settings: Settings) -> None:
    """Fail fast, in one line, when the tracking URI is a server that does not answer.

    MLflow's client would retry for minutes and then raise a traceback; a training would
    run its whole search before finding out. Local stores (SQLite, a database URL) are not
    checked: they fail at once with their own error.

    Raises:
        RegistryUnavailable: naming MLFLEET_MLFLOW_TRACKING_URI and what went wrong.
    """
    import httpx

    uri = settings.tracking_uri
    if not uri.startswith(("http://", "https://")):
        return
    where = httpx.URL(uri).copy_with(username=None, password=None)  # never print a password
    try:
        answer = httpx.get(f"{uri.rstrip('/')}/health", timeout=TRACKING_SERVER_TIMEOUT_S)
    except httpx.HTTPError as exc:
        reason = type(exc).__name__
        raise RegistryUnavailable(
            f"MLFLEET_MLFLOW_TRACKING_URI: the MLflow tracking server at {where} does not "
            f"answer ({reason})"
        ) from None
    if answer.status_code >= 500:  # a 401 is a server that wants credentials: it answers
        raise RegistryUnavailable(
            f"MLFLEET_MLFLOW_TRACKING_URI: the MLflow tracking server at {where} answered "
            f"{answer.status_code} to /health"
        )


def preload() -> None:
    """Import what registering and loading models need (MLflow's sklearn flavor, skops:
    about a second), so a caller can do it while it waits on something else."""
    import mlflow.sklearn  # noqa: F401
    import skops.io  # noqa: F401


def configure(settings: Settings) -> None:
    """Point MLflow (tracking and registry) at the settings' URI."""
    import os
    import warnings

    import mlflow

    # MLflow logs its database migrations and environment guesses at INFO on every start.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")

    # MLFLOW_ALLOW_PICKLE_DESERIALIZATION is deliberately never set: mlfleet does not load
    # models through MLflow's flavor loader (see load_pipeline).
    _sqlite_wal(settings.tracking_uri)
    # Against a tracking server MLflow writes "View run … at: http://…" to stdout at the end
    # of every run, which would break `--json` output; mlfleet reports its runs itself.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)


SQLITE_BUSY_TIMEOUT_S = 30.0


def _sqlite_wal(uri: str) -> None:
    """Put a SQLite tracking store in write-ahead-log mode (a setting kept in the file).

    Trainings write while gateways and pools read the registry: in WAL mode readers never
    wait for a writer, and writers queue on MLflow's own busy timeout (20 s a session)
    instead of failing with `database is locked`. One host only: WAL needs shared memory.
    """
    import sqlite3

    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return
    path = Path(uri.removeprefix(prefix).split("?", 1)[0])
    path.parent.mkdir(parents=True, exist_ok=True)  # a new store: MLflow adds the tables
    with sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S) as conn:
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
    conn.close()


def _client() -> Any:
    from mlflow import MlflowClient

    return MlflowClient()


@dataclass
class VersionInfo:
    """A registered model version as mlfleet shows it."""

    name: str
    version: str
    run_id: str | None
    source: str
    created: int
    aliases: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class ModelInfo:
    """A registered model with its champion and challenger."""

    name: str
    champion: VersionInfo | None
    challenger: VersionInfo | None
    versions: int
    history: list[str] = field(default_factory=list)


def _version_info(mv: Any) -> VersionInfo:
    return VersionInfo(
        name=mv.name,
        version=str(mv.version),
        run_id=mv.run_id,
        source=mv.source,
        created=int(mv.creation_timestamp or 0),
        aliases=list(mv.aliases or []),
        tags=dict(mv.tags or {}),
    )


def _not_found(exc: Exception) -> bool:
    return (
        "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", ""))
        or "not found" in str(exc).lower()
        or "does not exist" in str(exc).lower()
    )


def get_version(name: str, version: str) -> VersionInfo:
    """One version of a model.

    Raises:
        NotFoundError: when the model or the version does not exist.
    """
    try:
        return _version_info(_client().get_model_version(name, str(version)))
    except Exception as exc:
        if _not_found(exc):
            raise NotFoundError(f"model {name!r} has no version {version!r}") from None
        raise


def alias_version(name: str, alias: str) -> VersionInfo | None:
    """The version an alias points at, or None."""
    try:
        return _version_info(_client().get_model_version_by_alias(name, alias))
    except Exception as exc:
        if _not_found(exc) or "alias" in str(exc).lower():
            return None
        raise


def model_exists(name: str) -> bool:
    """Whether a registered model of that name exists."""
    try:
        _client().get_registered_model(name)
        return True
    except Exception as exc:
        if _not_found(exc):
            return False
        raise


def _registered_model(client: Any, name: str) -> Any:
    """MLflow's registered model ``name``.

    Raises:
        NotFoundError: for an unknown model.
    """
    try:
        return client.get_registered_model(name)
    except Exception as exc:
        if _not_found(exc):
            raise NotFoundError(f"no registered model named {name!r}") from None
        raise


def _history_of(tags: dict[str, str] | None) -> list[str]:
    try:
        return [str(v) for v in json.loads((tags or {}).get(HISTORY_TAG, "[]"))]
    except json.JSONDecodeError:
        return []


def tag_version(name: str, version: str, tags: dict[str, Any]) -> None:
    """Set tags on a version (values become strings)."""
    client = _client()
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))


def set_challenger(name: str, version: str) -> None:
    """Mark ``version`` as the candidate."""
    _set_alias(_client(), name, CHALLENGER, str(version))


ALIAS_ATTEMPTS = 5


def _set_alias(client: Any, name: str, alias: str, version: str) -> None:
    """Point ``alias`` at ``version``, again if the store failed it for a concurrent writer.

    Two writers of one alias at once can make the store refuse one of them (a tracking
    server on PostgreSQL: "UPDATE statement on table 'registered_model_aliases' expected to
    update 1 row(s); 0 were matched"), as two trainings of one model finishing together did.
    Setting an alias is idempotent, so the refused writer writes again; aliases stay
    last-writer-wins. A failure that persists is raised.
    """
    from mlflow.exceptions import MlflowException

    for attempt in range(ALIAS_ATTEMPTS):
        try:
            client.set_registered_model_alias(name, alias, version)
            return
        except MlflowException:
            if attempt == ALIAS_ATTEMPTS - 1:
                raise
            log.info("setting %s@%s failed, writing again", name, alias, exc_info=True)
            time.sleep(0.05 * (attempt + 1))


# --- champion history: an append-only log with write-once slots ----------------------------
#
# MLflow's tags and aliases are last-writer-wins, so a history kept as one JSON tag loses
# entries when two promotions read-modify-write it at once. MLflow's params are write-once:
# logging a param again with another value fails, and the store decides who was first with
# its primary key (SQLite, Postgres, or a tracking server in front of either). So each model
# gets one "history run" and every change of champion claims the next free param slot
# ``mlfleet.champion.<n>``, re-reading and retrying when another writer took it. Slots are
# claimed only right after the last one a writer saw, so the log has no holes and its order
# is the order in which the changes happened. The ``champion`` alias and the
# ``mlfleet.champion_history`` tag are then set from the replayed log, re-reading until the
# log did not grow meanwhile: whoever writes last has read every entry.

HISTORY_EXPERIMENT = "mlfleet/champion-history"
HISTORY_OF_TAG = "mlfleet.history_of"  # on the history run: which registered model
SLOT_PREFIX = "mlfleet.champion."
SEED_SLOT = 0  # the history found in the legacy tag when the log started
SEED_MAX_ENTRIES = 100  # a param holds at most 6,000 characters
CLAIM_ATTEMPTS = 100
RECONCILE_ATTEMPTS = 100
_history_runs: dict[str, str] = {}  # this process's cache: history key -> run id

Verify = Callable[[str, str], None]


def _slot_key(slot: int) -> str:
    return f"{SLOT_PREFIX}{slot:09d}"


def _history_key(name: str, created: int) -> str:
    """Names the history run of one registered model (a re-created model starts afresh)."""
    import hashlib

    return hashlib.sha256(f"{name}\0{created}".encode()).hexdigest()[:40]


def _history_experiment(client: Any) -> str:
    found = client.get_experiment_by_name(HISTORY_EXPERIMENT)
    if found is None:
        try:
            return str(client.create_experiment(HISTORY_EXPERIMENT))
        except Exception:  # another process created it first (names are unique)
            found = client.get_experiment_by_name(HISTORY_EXPERIMENT)
            if found is None:
                raise
    if found.lifecycle_stage == "deleted":
        client.restore_experiment(found.experiment_id)
    return str(found.experiment_id)


def _history_run(client: Any, name: str) -> str:
    """The id of the run holding ``name``'s champion log, created on first use.

    Two processes may create one each at the same moment: every writer then uses the earliest
    (start time, id), and a creator that lost deletes its own, still empty, run.
    """
    model = _registered_model(client, name)
    key = _history_key(name, int(model.creation_timestamp or 0))
    if key in _history_runs:
        return _history_runs[key]
    experiment = _history_experiment(client)

    def earliest() -> Any:
        runs = client.search_runs([experiment], filter_string=f"tags.`{HISTORY_OF_TAG}` = '{key}'")
        return min(runs, key=lambda r: (r.info.start_time, r.info.run_id), default=None)

    found = earliest()
    if found is None:
        mine = client.create_run(
            experiment, run_name=f"{name} champion history", tags={HISTORY_OF_TAG: key}
        )
        client.set_terminated(mine.info.run_id)  # a ledger, not a running job
        found = earliest()
        if found.info.run_id != mine.info.run_id:
            client.delete_run(mine.info.run_id)
    _history_runs[key] = found.info.run_id
    return str(found.info.run_id)


def _read_log(client: Any, run_id: str) -> list[dict[str, Any]]:
    """The log's entries in slot order (slot 0 is the seed)."""
    params = client.get_run(run_id).data.params
    slots = sorted(
        (int(k.removeprefix(SLOT_PREFIX)), v)
        for k, v in params.items()
        if k.startswith(SLOT_PREFIX) and k.removeprefix(SLOT_PREFIX).isdigit()
    )
    return [json.loads(v) for _, v in slots]


def _replay(entries: list[dict[str, Any]]) -> list[str]:
    """The champion stack the log leads to: a promotion pushes, a rollback pops."""
    stack: list[str] = []
    for entry in entries:
        op = entry.get("op")
        if op == "seed":
            stack = [str(v) for v in entry.get("history", [])]
        elif op == "promote":
            version = str(entry["version"])
            if not stack or stack[-1] != version:
                stack.append(version)
        elif op == "rollback" and len(stack) >= 2:
            stack.pop()
    return stack


def _claim(client: Any, run_id: str, slot: int, value: str) -> bool:
    """Write ``value`` into ``slot`` unless another writer holds it (params are write-once)."""
    from mlflow.exceptions import MlflowException

    try:
        client.log_param(run_id, _slot_key(slot), value)
        return True
    except MlflowException:
        held = client.get_run(run_id).data.params.get(_slot_key(slot))
        if held is None:
            raise  # not a lost race: a real failure
        return held == value


def _seeded_log(client: Any, name: str, run_id: str) -> list[dict[str, Any]]:
    """The log, its seed written first from the legacy one-tag history if it has none."""
    entries = _read_log(client, run_id)
    if entries:
        return entries
    legacy = _history_of(client.get_registered_model(name).tags)[-SEED_MAX_ENTRIES:]
    # The same value from every writer (no time, no nonce): whoever writes it, it is one seed.
    _claim(client, run_id, SEED_SLOT, json.dumps({"op": "seed", "history": legacy}))
    return _read_log(client, run_id)


def _reconcile(client: Any, name: str, run_id: str, entries: list[dict[str, Any]]) -> None:
    """Point ``champion`` and the history tag at the replayed log, until it stops growing."""
    for _ in range(RECONCILE_ATTEMPTS):
        stack = _replay(entries)
        if stack:
            _set_alias(client, name, CHAMPION, stack[-1])
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(stack))
        again = _read_log(client, run_id)
        if len(again) == len(entries):
            return
        entries = again
    raise RegistryError(f"model {name!r}: the champion history keeps changing; try again")


def _append(name: str, op: str, version: str | None, verify: Verify | None) -> str:
    """Claim the next slot of ``name``'s log for ``op``; the champion it leads to.

    ``verify(name, version)`` runs on the version that will serve before anything is
    written (a rollback's target is only known from the log, so it runs inside the loop).

    Raises:
        RegistryError: for a rollback with nothing to return to, or a log that stays busy.
    """
    client = _client()
    run_id = _history_run(client, name)
    verified: set[str] = set()
    nonce = uuid.uuid4().hex
    for attempt in range(CLAIM_ATTEMPTS):
        entries = _seeded_log(client, name, run_id)
        stack = _replay(entries)
        if op == "rollback":
            if len(stack) < 2:
                raise RegistryError(f"model {name!r} has no previous champion to roll back to")
            target = stack[-2]
        else:
            target = str(version)
        if verify is not None and target not in verified:
            verify(name, target)
            verified.add(target)
        entry = {"op": op, "version": target, "at": int(time.time() * 1000), "id": nonce}
        if _claim(client, run_id, len(entries), json.dumps(entry)):
            _reconcile(client, name, run_id, [*entries, entry])
            return target
        time.sleep(0.01 * (1 + attempt % 10))  # someone else wrote: re-read and try again
    raise RegistryError(f"model {name!r}: too many concurrent promotions; try again")


def check_loads(name: str, version: str) -> None:
    """Load what serving needs of a version (its contract and its model), or raise why not.

    Raises:
        ModelLoadError: naming what cannot be loaded (UntrustedModelError for a model that
            is not a skops file of allowed types).
    """
    try:
        version_contract(name, version)
    except ContractError as exc:
        raise ModelLoadError(f"model {name!r} version {version}: {exc.message}") from None
    load_pipeline(name, version)


def promote(name: str, version: str, *, verify: Verify | None = check_loads) -> VersionInfo:
    """Make ``version`` the champion, once ``verify`` has loaded it, and log the change.

    Raises:
        NotFoundError: when the version does not exist.
        ModelLoadError: when it cannot be loaded (the champion is unchanged).
    """
    info = get_version(name, version)
    _append(name, "promote", str(version), verify)
    challenger = alias_version(name, CHALLENGER)
    if challenger is not None and challenger.version == str(version):
        _client().delete_registered_model_alias(name, CHALLENGER)
    return info


def rollback(name: str, *, verify: Verify | None = check_loads) -> VersionInfo:
    """Return the champion alias to the previous champion, once ``verify`` has loaded it.

    Raises:
        NotFoundError: for an unknown model.
        RegistryError: when there is no earlier champion.
        ModelLoadError: when the previous champion no longer loads (nothing changes).
    """
    return get_version(name, _append(name, "rollback", None, verify))


def champion_log(name: str) -> list[dict[str, Any]]:
    """Every change of champion of ``name``, oldest first (slot 0 is the history it started
    from); each entry has ``op``, ``version``, ``at`` (ms) and the writer's ``id``."""
    client = _client()
    return _read_log(client, _history_run(client, name))


def _every(search: Any, **kwargs: Any) -> list[Any]:
    """All pages of an MLflow search."""
    found: list[Any] = []
    token = None
    while True:
        page = search(page_token=token, **kwargs)
        found.extend(page)
        token = page.token
        if not token:
            return found


def _model_info(model: Any, versions: list[Any]) -> ModelInfo:
    """A registered model (with its aliases and tags) and its versions, as mlfleet shows it."""
    aliases = {alias: str(version) for alias, version in (model.aliases or {}).items()}
    by_number = {str(v.version): v for v in versions}

    def aliased(alias: str) -> VersionInfo | None:
        found = by_number.get(aliases.get(alias, ""))
        if found is None:
            return None
        info = _version_info(found)
        # Version searches may leave aliases out; the registered model has them all.
        info.aliases = [a for a, number in aliases.items() if number == info.version]
        return info

    return ModelInfo(
        name=model.name,
        champion=aliased(CHAMPION),
        challenger=aliased(CHALLENGER),
        versions=len(versions),
        history=_history_of(model.tags),
    )


def describe(name: str) -> ModelInfo:
    """A model's champion, challenger and version count (two registry calls).

    Raises:
        NotFoundError: for an unknown model.
    """
    client = _client()
    model = _registered_model(client, name)
    return _model_info(
        model, _every(client.search_model_versions, filter_string=f"name = '{name}'")
    )


def list_models() -> list[ModelInfo]:
    """Every registered model, by name: one search for the models, one for their versions."""
    client = _client()
    models = _every(client.search_registered_models, max_results=REGISTERED_MODELS_PAGE)
    versions: dict[str, list[Any]] = {}
    for v in _every(client.search_model_versions):
        versions.setdefault(v.name, []).append(v)
    return [_model_info(m, versions.get(m.name, [])) for m in sorted(models, key=lambda m: m.name)]


def champions() -> dict[str, str | None]:
    """Every registered model's champion version (None without one): one search of the
    registered models, whose aliases name it; no version is read."""
    models = _every(_client().search_registered_models, max_results=REGISTERED_MODELS_PAGE)
    return {
        m.name: (str(m.aliases[CHAMPION]) if CHAMPION in (m.aliases or {}) else None)
        for m in models
    }


def model_versions(name: str) -> list[VersionInfo]:
    """Every version of a model, newest first."""
    versions = _every(_client().search_model_versions, filter_string=f"name = '{name}'")
    return sorted((_version_info(v) for v in versions), key=lambda v: -int(v.version))


# --- model versions: register, load, side files, size ---------------------------------------


def _model_uri(name: str, version: str) -> str:
    return f"models:/{name}/{version}"


def trusted_types(model: Any) -> list[str]:
    """The types skops must be told to trust to load ``model``.

    They are computed from the model we built ourselves and must all be in
    :data:`ALLOWED_MODEL_TYPES`: a model mlfleet would refuse to load is refused here, before
    it is registered.

    Raises:
        UntrustedModelError: naming the types outside the allow-list.
    """
    import skops.io

    found = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    odd = sorted(set(found) - ALLOWED_MODEL_TYPES)
    if odd:
        raise UntrustedModelError(
            f"refusing to register a model holding types mlfleet does not load: {odd}"
        )
    return list(found)


def pip_requirements() -> list[str]:
    """Pinned requirements of the served model (no 8 s inference of requirements)."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in MODEL_REQUIREMENTS]


def _save_sklearn(*, validate_serving_input: bool = True, **kwargs: Any) -> None:
    """``mlflow.sklearn.save_model``, taking the switch ``Model.log`` hands its flavor too."""
    import mlflow.sklearn

    mlflow.sklearn.save_model(**kwargs)


# mlflow.sklearn as Model.log's flavor (what mlflow.sklearn.log_model passes), except that it
# accepts Model.log's ``validate_serving_input``, which mlflow.sklearn.save_model does not.
_SKLEARN_FLAVOR = SimpleNamespace(__name__="mlflow.sklearn", save_model=_save_sklearn)


def register_model(
    model: Any,
    name: str,
    *,
    signature: Any,
    input_example: Any,
    extra_files: dict[str, Any],
) -> str:
    """Log a sklearn pipeline into the active MLflow run and register it as a new version.

    The model is stored in skops format with exactly the types it needs trusted, pinned
    requirements, ``signature`` and ``input_example`` as the caller built them, and
    ``extra_files`` (name → text, or anything JSON-serialisable) beside it.

    Returns:
        The new version number.
    """
    from mlflow.models import Model

    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for filename, content in extra_files.items():
            path = Path(tmp) / filename
            path.write_text(
                content if isinstance(content, str) else json.dumps(content, indent=2, default=str)
            )
            files.append(str(path))
        info = Model.log(
            artifact_path=None,
            name=MODEL_ARTIFACT,
            flavor=_SKLEARN_FLAVOR,
            flavor_name="mlflow.sklearn",
            sk_model=model,
            signature=signature,
            input_example=input_example,
            registered_model_name=name,
            pip_requirements=pip_requirements(),
            serialization_format="skops",
            skops_trusted_types=trusted_types(model),
            extra_files=files,
            await_registration_for=60,
            # MLflow would read the model back through pyfunc and predict the example:
            # ~0.45 s a training (skops reads every tree's arrays) to re-check a model this
            # process has just predicted with (the signature and the monitoring reference).
            validate_serving_input=False,
        )
    return str(info.registered_model_version)


def _shown_types(types: list[str]) -> str:
    """Type names from a model file, as an error may show them (they are the file's text)."""
    shown = [t if _PRINTABLE_TYPE.match(t) else "<unprintable>" for t in types[:5]]
    return ", ".join(shown) + (f" and {len(types) - 5} more" if len(types) > 5 else "")


def _declared_format(name: str, version: str, tmp: str) -> str | None:
    """The serialization format a version's MLmodel declares (for the error message only)."""
    import yaml

    try:
        text = version_artifact(name, version, MLMODEL_FILE, folder=None, dst=tmp)
        declared = yaml.safe_load(text)["flavors"]["sklearn"].get("serialization_format")
    except Exception:
        return None
    return str(declared) if declared in _KNOWN_FORMATS else "an unknown format"


def load_skops(path: str | Path, where: str) -> Any:
    """The object in a skops file, if every type in it is one skops or mlfleet trusts.

    The types are read from the file's schema before anything is built, so a refused file
    runs none of its code.

    Raises:
        UntrustedModelError: for a file holding types outside :data:`ALLOWED_MODEL_TYPES`.
        ModelLoadError: for a file that is not a readable skops file.
    """
    import skops.io

    try:
        untrusted = list(skops.io.get_untrusted_types(file=path))
    except Exception:
        raise ModelLoadError(f"{where}: the model file is not a readable skops file") from None
    odd = sorted(set(untrusted) - ALLOWED_MODEL_TYPES)
    if odd:
        raise UntrustedModelError(
            f"{where} holds types mlfleet does not load: {_shown_types(odd)}; nothing was run"
        )
    try:
        return skops.io.load(path, trusted=untrusted)
    except Exception as exc:
        raise ModelLoadError(
            f"{where}: the model file cannot be read ({type(exc).__name__})"
        ) from None


def load_pipeline(name: str, version: str) -> Any:
    """The sklearn pipeline of a version, loaded from its skops file against the allow-list.

    The MLmodel file is not obeyed: a version stored in another format (pickle, cloudpickle)
    is refused, and the trusted types it lists are ignored in favour of
    :data:`ALLOWED_MODEL_TYPES`.

    Raises:
        UntrustedModelError: when the model is not skops or holds a type not allowed.
        ModelLoadError: when its files cannot be read.
    """
    import mlflow.artifacts

    where = f"model {name!r} version {version}"
    with tempfile.TemporaryDirectory() as tmp:
        declared = _declared_format(name, version, tmp)
        if declared is not None and declared != "skops":
            raise UntrustedModelError(
                f"{where} is stored as {declared}; mlfleet loads only skops models "
                "(loading pickle can run any code)"
            )
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{_model_uri(name, version)}/{SKOPS_FILE}", dst_path=tmp
            )
        except Exception:
            raise ModelLoadError(f"{where} has no readable {SKOPS_FILE} file") from None
        return load_skops(local, where)


def version_artifact(
    name: str,
    version: str,
    filename: str,
    *,
    folder: str | None = EXTRA_FILES,
    dst: str | None = None,
) -> str:
    """The text of a file registered with a version: a side file (contract.yaml,
    profile.json, ...) by default, or one of the model's own files with ``folder=None``.

    Raises:
        ModelLoadError: when the file cannot be read (the message holds no server path).
    """
    import mlflow.artifacts

    inside = f"{folder}/{filename}" if folder else filename
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{_model_uri(name, version)}/{inside}", dst_path=dst or tmp
            )
            return Path(local).read_text()
        except Exception:
            raise ModelLoadError(
                f"model {name!r} version {version} has no readable {filename}"
            ) from None


def version_artifact_names(name: str, version: str) -> list[str]:
    """The names of the side files registered with a version."""
    import mlflow.artifacts

    listing = mlflow.artifacts.list_artifacts(
        artifact_uri=f"{_model_uri(name, version)}/{EXTRA_FILES}"
    )
    return [Path(a.path).name for a in listing if not a.is_dir]


def version_contract(name: str, version: str) -> Contract:
    """The data contract registered with a version (``contract.yaml``).

    Raises:
        ContractError: when the registered contract is not a valid contract.
    """
    import yaml

    from mlfleet.contract.schema import parse_contract

    origin = f"models:/{name}/{version}/contract.yaml"
    text = version_artifact(name, version, "contract.yaml")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ContractError(f"{origin}: not valid YAML") from None
    return parse_contract(data, origin=origin)


def version_features(tags: dict[str, str], contract: Contract) -> list[str]:
    """The features a version's model reads: its features tag, else every non-target column."""
    return json.loads(tags.get(FEATURES_TAG, "[]")) or [
        c for c in contract.column_names if c != contract.target
    ]


def model_bytes(name: str, version: str) -> int:
    """Stored size of a version's model files (its side files not counted)."""
    import mlflow.artifacts

    listing = mlflow.artifacts.list_artifacts(artifact_uri=_model_uri(name, version))
    return sum(a.file_size or 0 for a in listing if not a.is_dir)
