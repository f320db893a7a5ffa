"""The data contract: a YAML file describing columns, types, rules and keys.

The format is a public API (see the README); unknown keys are rejected so a typo never
silently disables a rule.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlfleet.contract import semantics
from mlfleet.errors import ContractError

ColumnType = Literal["int", "float", "str", "bool", "category", "datetime"]
NormalizeOp = Literal["strip", "lower", "upper", "title", "collapse_whitespace"]


NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class ColumnSpec(BaseModel):
    """One column of the contract."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, description="Column name as it appears in sources.")]
    type: ColumnType = Field(description="Logical type the values are parsed to.")
    nullable: bool = Field(default=False, description="Whether a missing value is allowed.")
    min: int | float | None = Field(
        default=None, description="Smallest allowed value (int, float)."
    )
    max: int | float | None = Field(default=None, description="Largest allowed value (int, float).")
    values: list[str] | None = Field(
        default=None, description="Allowed categories (category, str), after normalisation."
    )
    pattern: str | None = Field(default=None, description="Regex a str value must contain.")
    formats: list[str] | None = Field(
        default=None, description="strptime formats accepted for datetime columns."
    )
    normalize: list[NormalizeOp] = Field(
        default_factory=list, description="Text clean-up applied before any check."
    )

    @model_validator(mode="after")
    def _rules_fit_type(self) -> ColumnSpec:
        where = f"column {self.name!r}"
        if (self.min is not None or self.max is not None) and self.type not in ("int", "float"):
            raise ValueError(f"{where}: 'min'/'max' apply to int and float columns only")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"{where}: 'min' ({self.min}) is greater than 'max' ({self.max})")
        if self.values is not None and self.type not in ("category", "str"):
            raise ValueError(f"{where}: 'values' applies to category and str columns only")
        if self.type == "category" and not self.values:
            raise ValueError(f"{where}: a category column needs a non-empty 'values' list")
        if self.pattern is not None:
            if self.type not in ("str", "category"):
                raise ValueError(f"{where}: 'pattern' applies to str columns only")
            problem = semantics.regex_error(self.pattern)
            if problem is not None:
                # Patterns run on RE2 (linear time); one it cannot compile is refused here,
                # not on the first batch or request that reaches it.
                raise ValueError(f"{where}: 'pattern' is not a valid regex (RE2: {problem})")
        if self.formats is not None and self.type != "datetime":
            raise ValueError(f"{where}: 'formats' applies to datetime columns only")
        if self.formats is not None and not self.formats:
            raise ValueError(f"{where}: 'formats' must list at least one format")
        return self

    @property
    def datetime_formats(self) -> tuple[str, ...]:
        """The formats tried, in order, when parsing this datetime column."""
        return semantics.datetime_formats(self)


class Contract(BaseModel):
    """A dataset's contract: its columns, optional target and de-duplication keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=NAME_PATTERN, description="Dataset name.")]
    target: str | None = Field(default=None, description="Label column, if any.")
    keys: list[str] | None = Field(
        default=None, description="Columns identifying a row; duplicates are judged on them."
    )
    columns: Annotated[list[ColumnSpec], Field(min_length=1)]
    null_values: list[str] | None = Field(
        default=None, description="Text tokens read as missing (default: '', NA, null, …)."
    )

    @model_validator(mode="after")
    def _names_resolve(self) -> Contract:
        names = [c.name for c in self.columns]
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise ValueError(f"column {name!r} is declared twice")
            seen.add(name)
        if self.target is not None and self.target not in seen:
            raise ValueError(f"target {self.target!r} is not a declared column")
        for key in self.keys or []:
            if key not in seen:
                raise ValueError(f"key {key!r} is not a declared column")
        if self.keys is not None and not self.keys:
            raise ValueError("keys must name at least one column (or be omitted)")
        return self

    @property
    def column_names(self) -> list[str]:
        """Column names in contract order."""
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnSpec:
        """The column named ``name``."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def null_tokens(self) -> tuple[str, ...]:
        """Text tokens read as missing, lower-cased."""
        return semantics.null_tokens(self.null_values)

    def to_yaml(self) -> str:
        """Render the contract as YAML in the documented, flow-style-per-column layout."""
        lines = [f"name: {self.name}"]
        if self.target is not None:
            lines.append(
                f"target: {yaml.safe_dump(self.target, default_style=None).strip()}".replace(
                    "\n...", ""
                )
            )
        if self.keys is not None:
            lines.append("keys: " + yaml.safe_dump(self.keys, default_flow_style=True).strip())
        if self.null_values is not None:
            lines.append(
                "null_values: " + yaml.safe_dump(self.null_values, default_flow_style=True).strip()
            )
        lines.append("columns:")
        for col in self.columns:
            data = col.model_dump(exclude_none=True, exclude_defaults=True)
            data = {"name": col.name, "type": col.type, **data}
            body = yaml.safe_dump(data, sort_keys=False, default_flow_style=True, width=10**6)
            lines.append(f"  - {body.strip()}")
        return "\n".join(lines) + "\n"

    @property
    def sha(self) -> str:
        """Content hash of the contract's meaning (not its formatting)."""
        canonical = self.model_dump_json(exclude_none=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


def _describe(error: Any, data: Any) -> str:
    loc = list(error["loc"])
    # Point at columns by name, not index: "columns[age].mn" beats "columns.3.mn".
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int) and isinstance(node, list) and item < len(node):
            entry = node[item]
            name = entry.get("name") if isinstance(entry, dict) else None
            parts[-1] = f"{parts[-1]}[{name if name else item}]"
            node = entry
        else:
            parts.append(str(item))
            node = node.get(item) if isinstance(node, dict) else None
    where = ".".join(parts)
    if error["type"] == "extra_forbidden":
        return f"unknown key {where!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def parse_contract(data: Any, *, origin: str = "contract") -> Contract:
    """Build a contract from already-loaded YAML data.

    Raises:
        ContractError: naming the offending key or column.
    """
    if not isinstance(data, dict):
        raise ContractError(f"{origin}: expected a mapping with 'name' and 'columns'")
    try:
        return Contract.model_validate(data)
    except ValidationError as exc:
        # An unknown key usually explains the other errors (a misspelt required key).
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        raise ContractError(f"{origin}: {_describe(errors[0], data)}") from None


def load_contract(path: str | Path) -> Contract:
    """Read and validate a contract YAML file.

    Raises:
        ContractError: when the file is missing, is not YAML or breaks a rule.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ContractError(f"contract file not found: {path}") from None
    except OSError as exc:
        raise ContractError(f"cannot read contract {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ContractError(f"{path}: not valid YAML{where}") from None
    return parse_contract(data, origin=str(path))
