"""The only module that talks to MLflow's model registry.

It registers versions (the sklearn pipeline in skops format with its side files), loads
them, reads their side files and size, and moves the aliases. Aliases carry the serving
state: ``champion`` is what the fleet serves, ``challenger`` the latest candidate. Every
change of champion is appended to a registered-model tag, so a rollback returns to the
previous champion even after several promotions.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlfleet.contract.schema import Contract
from mlfleet.errors import ContractError, MlfleetError, NotFoundError
from mlfleet.settings import Settings

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "mlfleet.champion_history"
TAG_PREFIX = "mlfleet."
FEATURES_TAG = "mlfleet.features"  # JSON list of the features the model reads
MODEL_ARTIFACT = "model"  # the model's folder inside its run
EXTRA_FILES = "extra_files"  # where MLflow keeps a version's side files
REGISTERED_MODELS_PAGE = 1000  # the most MLflow returns per page
ALLOWED_MODEL_TYPE_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.")
MODEL_REQUIREMENTS = ("scikit-learn", "numpy", "pandas", "scipy", "skops")


class RegistryError(MlfleetError):
    """A registry operation is not possible (e.g. nothing to roll back to)."""

    code = "registry_conflict"
    http_status = 409


def configure(settings: Settings) -> None:
    """Point MLflow (tracking and registry) at the settings' URI."""
    import logging
    import os
    import warnings

    import mlflow

    # MLflow logs its database migrations and environment guesses at INFO on every start.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")

    if settings.trust_registry_models:
        # MLflow's own switch: it must be in the environment of whoever loads models.
        os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    _sqlite_wal(settings.tracking_uri)
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


def _history_of(tags: dict[str, str] | None) -> list[str]:
    try:
        return [str(v) for v in json.loads((tags or {}).get(HISTORY_TAG, "[]"))]
    except json.JSONDecodeError:
        return []


def _history(name: str) -> list[str]:
    return _history_of(_client().get_registered_model(name).tags)


def tag_version(name: str, version: str, tags: dict[str, Any]) -> None:
    """Set tags on a version (values become strings)."""
    client = _client()
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))


def set_challenger(name: str, version: str) -> None:
    """Mark ``version`` as the candidate."""
    _client().set_registered_model_alias(name, CHALLENGER, str(version))


def promote(name: str, version: str) -> VersionInfo:
    """Make ``version`` the champion and remember the change for rollbacks.

    Raises:
        NotFoundError: when the version does not exist.
    """
    info = get_version(name, version)
    client = _client()
    history = _history(name)
    if not history or history[-1] != str(version):
        history.append(str(version))
    client.set_registered_model_alias(name, CHAMPION, str(version))
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    challenger = alias_version(name, CHALLENGER)
    if challenger is not None and challenger.version == str(version):
        client.delete_registered_model_alias(name, CHALLENGER)
    return info


def rollback(name: str) -> VersionInfo:
    """Return the champion alias to the previous champion.

    Raises:
        NotFoundError: for an unknown model.
        RegistryError: when there is no earlier champion.
    """
    if not model_exists(name):
        raise NotFoundError(f"no registered model named {name!r}")
    history = _history(name)
    if len(history) < 2:
        raise RegistryError(f"model {name!r} has no previous champion to roll back to")
    history.pop()
    previous = history[-1]
    client = _client()
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    return get_version(name, previous)


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
    try:
        model = client.get_registered_model(name)
    except Exception as exc:
        if _not_found(exc):
            raise NotFoundError(f"no registered model named {name!r}") from None
        raise
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


def model_versions(name: str) -> list[VersionInfo]:
    """Every version of a model, newest first."""
    versions = _every(_client().search_model_versions, filter_string=f"name = '{name}'")
    return sorted((_version_info(v) for v in versions), key=lambda v: -int(v.version))


# --- model versions: register, load, side files, size ---------------------------------------


def _model_uri(name: str, version: str) -> str:
    return f"models:/{name}/{version}"


def trusted_types(model: Any) -> list[str]:
    """The types skops must be told to trust to load ``model``.

    They are computed from the model we built ourselves and limited to scientific Python:
    anything else means the pipeline holds something a spec should not be able to inject.
    """
    import skops.io

    found = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    odd = [t for t in found if not t.startswith(ALLOWED_MODEL_TYPE_PREFIXES)]
    if odd:
        raise ValueError(f"refusing to log a model holding untrusted types: {odd}")
    return list(found)


def pip_requirements() -> list[str]:
    """Pinned requirements of the served model (no 8 s inference of requirements)."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in MODEL_REQUIREMENTS]


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
    import mlflow.sklearn

    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for filename, content in extra_files.items():
            path = Path(tmp) / filename
            path.write_text(
                content if isinstance(content, str) else json.dumps(content, indent=2, default=str)
            )
            files.append(str(path))
        info = mlflow.sklearn.log_model(
            model,
            name=MODEL_ARTIFACT,
            signature=signature,
            input_example=input_example,
            registered_model_name=name,
            pip_requirements=pip_requirements(),
            serialization_format="skops",
            skops_trusted_types=trusted_types(model),
            extra_files=files,
            await_registration_for=60,
        )
    return str(info.registered_model_version)


def load_pipeline(name: str, version: str) -> Any:
    """The sklearn pipeline of a version (MLflow's sklearn flavor, skops format)."""
    import mlflow.sklearn

    return mlflow.sklearn.load_model(_model_uri(name, version))


def version_artifact(name: str, version: str, filename: str) -> str:
    """The text of a side file registered with a version (contract.yaml, profile.json, ...)."""
    import mlflow.artifacts

    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{_model_uri(name, version)}/{EXTRA_FILES}/{filename}", dst_path=tmp
        )
        return Path(local).read_text()


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
