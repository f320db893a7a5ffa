"""ModelSpec: the declarative file per model (``specs/NAME/model.yaml``), a public API.

Everything a training run needs: where the data comes from (a contract and sources), the
task, features, split, the hyper-parameter search and the promotion rule; later, how the
model is served. Unknown keys are errors so a typo never silently changes a run.
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlfleet.contract import semantics
from mlfleet.contract.schema import Contract, load_contract
from mlfleet.errors import SpecError

# The name monitoring.features gives the predictions: the monitor calls them so too
# (mlfleet.monitoring.reference.PREDICTION, which this layer cannot import).
PREDICTION = "prediction"
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
# Only estimators from these modules may be named in a spec: a spec is data, and an
# arbitrary import string would let a YAML file run any code on the cluster.
ALLOWED_ESTIMATOR_PREFIXES = (
    "sklearn.ensemble.",
    "sklearn.linear_model.",
    "sklearn.tree.",
    "sklearn.neighbors.",
    "sklearn.svm.",
    "sklearn.naive_bayes.",
    "sklearn.neural_network.",
    "sklearn.dummy.",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitSpec(_Strict):
    """How the holdout set is cut from the validated data."""

    test_fraction: float = Field(default=0.2, gt=0, lt=1, description="Share held out.")
    seed: int = Field(default=7, description="Random seed of the split and the search.")
    stratify: bool = Field(default=True, description="Keep class shares (classification).")


Distribution = dict[str, Any]


def _check_distribution(name: str, value: Any) -> None:
    if not isinstance(value, dict):
        return  # a constant
    if len(value) != 1:
        raise ValueError(f"param {name!r}: give one distribution, e.g. {{uniform: [0, 1]}}")
    kind, args = next(iter(value.items()))
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise ValueError(f"param {name!r}: choice takes a non-empty list")
        return
    if kind not in ("uniform", "loguniform", "randint", "quniform"):
        raise ValueError(
            f"param {name!r}: unknown distribution {kind!r} "
            "(use uniform, loguniform, randint, quniform or choice)"
        )
    size = 3 if kind == "quniform" else 2
    if (
        not isinstance(args, list)
        or len(args) != size
        or not all(isinstance(a, int | float) for a in args)
    ):
        raise ValueError(f"param {name!r}: {kind} takes a list of {size} numbers")
    if args[0] >= args[1]:
        raise ValueError(f"param {name!r}: {kind} needs low < high")
    if kind == "loguniform" and args[0] <= 0:
        raise ValueError(f"param {name!r}: loguniform needs a positive low bound")


class Candidate(_Strict):
    """One estimator family and its search space."""

    estimator: str = Field(description="Dotted path of an allowed scikit-learn estimator.")
    params: dict[str, Any] = Field(default_factory=dict, description="Constant or distribution.")

    @field_validator("estimator")
    @classmethod
    def _allowed(cls, value: str) -> str:
        if not value.startswith(ALLOWED_ESTIMATOR_PREFIXES):
            raise ValueError(
                f"{value!r} is not an allowed estimator (modules: "
                + ", ".join(p.rstrip(".") for p in ALLOWED_ESTIMATOR_PREFIXES)
                + ")"
            )
        return value

    @field_validator("params")
    @classmethod
    def _distributions(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, dist in value.items():
            _check_distribution(name, dist)
        return value

    def estimator_class(self) -> type:
        """Import the estimator class (only from the allow-list)."""
        module_name, _, class_name = self.estimator.rpartition(".")
        try:
            module = importlib.import_module(module_name)
            cls = getattr(module, class_name)
        except (ImportError, AttributeError):
            raise SpecError(f"estimator {self.estimator!r} does not exist") from None
        if not isinstance(cls, type):
            raise SpecError(f"estimator {self.estimator!r} is not a class")
        return cls


class SearchSpec(_Strict):
    """The hyper-parameter search run on Ray Tune."""

    metric: str = Field(description="Any scikit-learn scorer name, e.g. f1_macro, r2.")
    mode: Literal["max", "min"] = Field(default="max", description="Whether bigger is better.")
    num_samples: int = Field(default=16, ge=1, le=10_000, description="Configurations tried.")
    max_concurrent: int = Field(default=2, ge=1, description="Trials running at once.")
    scheduler: Literal["asha", "fifo"] = Field(
        default="asha", description="asha stops weak trials early on growing data fractions."
    )
    candidates: Annotated[list[Candidate], Field(min_length=1)]

    @field_validator("metric")
    @classmethod
    def _known_scorer(cls, value: str) -> str:
        from sklearn.metrics import get_scorer_names

        if value not in get_scorer_names():
            raise ValueError(f"{value!r} is not a scikit-learn scorer name")
        return value


class PromotionSpec(_Strict):
    """When a new version replaces the champion."""

    min_improvement: float = Field(
        default=0.0, ge=0, description="Margin the challenger must win by on the same holdout."
    )


class AutoscalingSpec(_Strict):
    """Ray Serve autoscaling for a dedicated deployment."""

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=2, ge=1)
    target_ongoing_requests: float = Field(default=16, gt=0)

    @model_validator(mode="after")
    def _order(self) -> AutoscalingSpec:
        if self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must be >= min_replicas")
        return self


class ScalingSpec(_Strict):
    """Model-aware scaling of a pool model; unset fields take Settings' ``scaling_*``.

    A pool model whose request rate stays at or above ``promote_rps`` gets a dedicated
    deployment of its own; once it falls to ``fold_rps`` or below it goes back to the pool.
    """

    enabled: bool | None = Field(
        default=None, description="Move this model (default: MLFLEET_SCALING_ENABLED)."
    )
    promote_rps: float | None = Field(
        default=None, gt=0, description="Requests per second that earn a dedicated deployment."
    )
    fold_rps: float | None = Field(
        default=None, ge=0, description="Requests per second at or below which it is folded."
    )

    @model_validator(mode="after")
    def _hysteresis(self) -> ScalingSpec:
        if (
            self.promote_rps is not None
            and self.fold_rps is not None
            and self.fold_rps >= self.promote_rps
        ):
            raise ValueError("fold_rps must be below promote_rps")
        return self


class ServingSpec(_Strict):
    """How the model is served (pool = multiplexed with the long tail)."""

    mode: Literal["pool", "dedicated"] = Field(
        default="pool",
        description="dedicated: a deployment of its own, always; pool: multiplexed, and "
        "promoted to a dedicated deployment while hot when scaling is on.",
    )
    scaling: ScalingSpec = Field(default_factory=ScalingSpec)
    autoscaling: AutoscalingSpec = Field(default_factory=AutoscalingSpec)
    max_batch_size: int = Field(default=32, ge=1, le=4096)
    batch_wait_timeout_s: float = Field(default=0.002, ge=0, le=1)
    num_cpus: float = Field(default=0.25, gt=0, le=64)


class ColumnMonitoring(_Strict):
    """How one column (a feature, or ``prediction`` for the predictions) is judged.

    Unset fields fall back to the model's ``monitoring:`` block.
    """

    method: str | None = Field(
        default=None, description="A registered drift method: psi, jensenshannon, chisquare, ks."
    )
    drift: float | None = Field(default=None, description="Drift threshold (method's default).")
    warning: float | None = Field(default=None, description="Warning threshold.")
    min_rows: int | None = Field(default=None, ge=1, description="No verdict below this.")


class WindowSpec(_Strict):
    """The current window (unset: MLFLEET_MONITOR_WINDOW_MINUTES / _ROWS)."""

    minutes: int | None = Field(default=None, ge=1, le=24 * 60)
    rows: int | None = Field(default=None, ge=1)


class MonitoringSpec(_Strict):
    """How the monitor judges this model's live traffic against its reference.

    Method names are checked by the monitor, which holds the registry of drift methods
    (``mlfleet.monitoring.stats``); thresholds default to the method's own.
    """

    window: WindowSpec = Field(default_factory=WindowSpec)
    method: str = Field(
        default="psi", description="Drift method for every column unless overridden."
    )
    drift: float | None = Field(default=None, description="Drift threshold (method's default).")
    warning: float | None = Field(default=None, description="Warning threshold.")
    drift_share: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="The model drifts when at least this share of its judged features does "
        "(default 0.5), or when its predictions do.",
    )
    min_rows: int | None = Field(
        default=None, ge=1, description="No verdict on a column with fewer values (200)."
    )
    features: dict[str, ColumnMonitoring] = Field(
        default_factory=dict,
        description="Per-column overrides, by feature name (``prediction``: the predictions).",
    )


class RetrainSpec(_Strict):
    """When the monitor asks for a retrain: drift at N consecutive evaluations."""

    on_drift: bool = Field(default=False, description="Retrain on sustained drift.")
    sustained_windows: int = Field(
        default=3, ge=1, description="Consecutive evaluations with status drift that count."
    )
    cooldown_minutes: float = Field(
        default=60, ge=0, description="At most one retrain per model within this time."
    )


class ModelSpec(_Strict):
    """A model of the fleet."""

    name: Annotated[str, Field(pattern=MODEL_NAME_PATTERN, description="Registered model name.")]
    contract: str = Field(description="Data contract path, relative to the spec file.")
    sources: Annotated[list[str], Field(min_length=1)] = Field(
        description="Sources (relative to the spec file), validated before training."
    )
    task: Literal["classification", "regression"]
    features: list[str] | None = Field(
        default=None, description="Feature columns (default: every contract column but target)."
    )
    split: SplitSpec = Field(default_factory=SplitSpec)
    search: SearchSpec
    promotion: PromotionSpec = Field(default_factory=PromotionSpec)
    serving: ServingSpec = Field(default_factory=ServingSpec)
    max_quarantine_fraction: float = Field(default=0.05, ge=0, le=1)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    retrain: RetrainSpec = Field(default_factory=RetrainSpec)


def default_features(contract: Contract) -> list[str]:
    """Every encodable contract column except the target and the keys (ids carry no signal).

    Encodable: the kinds the training pipeline turns into features (numeric and
    categorical); time and free text are left out.
    """
    out = []
    skip = {contract.target, *(contract.keys or [])}
    for col in contract.columns:
        if col.name in skip:
            continue
        if semantics.kind(col) in ("numeric", "categorical"):
            out.append(col.name)
    return out


class LoadedSpec(BaseModel):
    """A spec with its resolved paths, contract and content hash."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    spec: ModelSpec
    path: Path
    contract: Contract
    sha: str

    @property
    def sources(self) -> list[str]:
        """SOURCE arguments resolved against the spec's folder."""
        out = []
        for src in self.spec.sources:
            if src.startswith("sqlite:///"):
                rest = src.removeprefix("sqlite:///")
                db, _, query = rest.partition("?")
                path = Path(db) if Path(db).is_absolute() else self.path.parent / db
                out.append(f"sqlite:///{path.resolve()}?{query}")
            else:
                p = Path(src)
                out.append(str(p if p.is_absolute() else self.path.parent / p))
        return out

    @property
    def features(self) -> list[str]:
        """Feature columns in contract order."""
        if self.spec.features is not None:
            return list(self.spec.features)
        return default_features(self.contract)

    @property
    def target(self) -> str:
        """The label column (the contract's target)."""
        assert self.contract.target is not None
        return self.contract.target


def _describe(error: Any) -> str:
    where = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown key {where!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def load_spec(path: str | Path) -> LoadedSpec:
    """Read a model spec, its contract, and check that they fit together.

    Raises:
        SpecError: naming the field when the spec is missing or invalid.
    """
    path = Path(path).resolve()
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(f"spec file not found: {path}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise SpecError(f"{path}: not valid YAML") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping with name, contract, sources, task, search")
    try:
        spec = ModelSpec.model_validate(data)
    except ValidationError as exc:
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        raise SpecError(f"{path}: {_describe(errors[0])}") from None
    contract_path = Path(spec.contract)
    if not contract_path.is_absolute():
        contract_path = path.parent / contract_path
    contract = load_contract(contract_path)
    if contract.target is None:
        raise SpecError(f"{path}: the contract {contract_path.name} names no target column")
    for feature in spec.features or []:
        if feature not in contract.column_names:
            raise SpecError(f"{path}: features: {feature!r} is not a column of the contract")
        if feature == contract.target:
            raise SpecError(f"{path}: features: the target {feature!r} cannot be a feature")
    for candidate in spec.search.candidates:
        _check_estimator(path, candidate, spec.task)
    loaded_features = spec.features if spec.features is not None else default_features(contract)
    for column in spec.monitoring.features:
        if column != PREDICTION and column not in loaded_features:
            raise SpecError(
                f"{path}: monitoring.features: {column!r} is not a feature of the model"
            )
    sha = hashlib.sha256((spec.model_dump_json() + contract.sha).encode()).hexdigest()
    return LoadedSpec(spec=spec, path=path, contract=contract, sha=sha)


def _check_estimator(path: Path, candidate: Candidate, task: str) -> None:
    from sklearn.base import is_classifier, is_regressor

    cls = candidate.estimator_class()
    try:
        instance = cls()
    except TypeError:
        raise SpecError(
            f"{path}: {candidate.estimator} cannot be built without arguments"
        ) from None
    if task == "classification" and not is_classifier(instance):
        raise SpecError(f"{path}: {candidate.estimator} is not a classifier")
    if task == "regression" and not is_regressor(instance):
        raise SpecError(f"{path}: {candidate.estimator} is not a regressor")
    valid = set(instance.get_params())
    for name in candidate.params:
        if name not in valid:
            raise SpecError(f"{path}: {candidate.estimator} has no parameter {name!r}")


def load_fleet_specs(folder: str | Path) -> list[LoadedSpec]:
    """Every model spec of a fleet folder (``*/model.yaml``), in name order of their folders.

    Raises:
        SpecError: a spec is invalid, or two specs name the same model.
    """
    out: list[LoadedSpec] = []
    names: dict[str, Path] = {}
    for path in sorted(Path(folder).glob("*/model.yaml")):
        loaded = load_spec(path)
        name = loaded.spec.name
        if name in names:
            raise SpecError(f"{path}: the model {name!r} is already named by {names[name]}")
        names[name] = path
        out.append(loaded)
    return out
