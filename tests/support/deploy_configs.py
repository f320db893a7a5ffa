"""What the deployment configs (cluster.yaml, deploy/) are checked against: the project's
own settings and lock, read the way uv and mlfleet read them."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable

from mlfleet.settings import Settings
from tests.support import REPO

_SETTING_VAR = re.compile(r"\bMLFLEET_[A-Z0-9_]+")


def unknown_settings(text: str) -> set[str]:
    """The ``MLFLEET_*`` names in ``text`` that no Settings field answers to (a typo there is
    ignored by pydantic-settings, silently)."""
    fields = set(Settings.model_fields)
    return {
        n for n in _SETTING_VAR.findall(text) if n.removeprefix("MLFLEET_").lower() not in fields
    }


def locked_version(package: str) -> str:
    """The version uv.lock pins for ``package``."""
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    versions = [p["version"] for p in lock["package"] if p["name"] == package]
    assert len(versions) == 1, f"uv.lock pins {package} {len(versions)} times"
    return str(versions[0])


def shell_flag(commands: Iterable[str], flag: str) -> list[str]:
    """Every value given to ``--flag=VALUE`` or ``--flag VALUE`` in ``commands``."""
    pattern = re.compile(rf"(?<!\S){re.escape(flag)}(?:=|\s+)(\S+)")
    return [m.group(1) for command in commands for m in pattern.finditer(command)]
