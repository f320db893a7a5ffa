"""`platform/` holds our sources but must never shadow the standard library's module."""

from __future__ import annotations

import platform
import sysconfig
from pathlib import Path

from tests.support import REPO


def test_platform_folder_has_no_init() -> None:
    assert not (REPO / "platform" / "__init__.py").exists()


def test_import_platform_is_the_standard_library() -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert Path(platform.__file__).resolve().parent == stdlib


def test_fleet_builder_is_typed_for_serve() -> None:
    """Serve passes FleetArgs only when it can see the annotation at run time."""
    import inspect

    from mlfleet.serving.app import FleetArgs
    from serve_apps.fleet import app_builder

    assert inspect.signature(app_builder).parameters["args"].annotation is FleetArgs
