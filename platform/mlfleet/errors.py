"""One exception family for everything a user can get wrong.

Each error carries a stable ``code`` (for HTTP envelopes and JSON output) and the exit
code the CLI should use, so the edges map errors without knowing every subclass.
"""

from __future__ import annotations


class MlfleetError(Exception):
    """Base of every error mlfleet raises on purpose.

    Attributes:
        code: A short machine-readable identifier, e.g. ``contract_invalid``.
        exit_code: The CLI exit status for this error (2 = usage or contract problems).
        http_status: The status the HTTP layer answers with.
    """

    code: str = "error"
    exit_code: int = 2
    http_status: int = 400

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class UsageError(MlfleetError):
    """The command was called wrongly (bad option value, conflicting arguments)."""

    code = "usage"


class ContractError(MlfleetError):
    """A data contract file is missing, unreadable or invalid."""

    code = "contract_invalid"


class SourceError(MlfleetError):
    """A data source cannot be found, parsed or read."""

    code = "source_invalid"


class SpecError(MlfleetError):
    """A model spec is missing or invalid, or names what the pipeline cannot use."""

    code = "spec_invalid"


class NotFoundError(MlfleetError):
    """A named thing (dataset, version, model) does not exist."""

    code = "not_found"
    http_status = 404


class SettingsError(MlfleetError):
    """The environment or settings file holds an invalid value."""

    code = "settings_invalid"
