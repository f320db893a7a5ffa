"""The one place configuration is read: environment variables prefixed ``MLFLEET_``.

Nothing here runs at import time; call :func:`get_settings` where settings are needed.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlfleet.errors import SettingsError


class Settings(BaseSettings):
    """mlfleet's settings; each field is overridable as ``MLFLEET_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="MLFLEET_", extra="ignore")

    home: Path = Field(
        default=Path(".mlfleet"),
        description="Root folder for datasets, the MLflow SQLite store and monitor state.",
    )
    ray_address: str = Field(
        default="",
        description="Ray cluster to connect to (e.g. '127.0.0.1:6379'); empty starts an "
        "embedded local Ray for the duration of the command.",
    )
    ray_num_cpus: int | None = Field(
        default=None,
        ge=1,
        description="CPUs for an embedded local Ray (default: all of this machine's).",
    )
    mlflow_tracking_uri: str = Field(
        default="",
        description="MLflow tracking URI; empty means sqlite:///<home>/mlflow.db.",
    )

    trust_registry_models: bool = Field(
        default=True,
        description="Let MLflow deserialize registered sklearn models (MLflow 3.17 refuses "
        "unless MLFLOW_ALLOW_PICKLE_DESERIALIZATION is true). mlfleet only registers models it "
        "built, with skops trusted types limited to sklearn/numpy/scipy; turn this off when "
        "others can write to the registry.",
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

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI in force (SQLite under ``home`` unless set)."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"


def get_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with explicit overrides on top.

    Raises:
        SettingsError: naming the variable when a value does not parse.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "settings"
        raise SettingsError(f"MLFLEET_{field.upper()}: {first['msg']}") from None
