"""Modules that log, register or hold plain training data must not drag Ray in."""

from __future__ import annotations

import subprocess
import sys

import pytest

RAY_FREE = [
    "mlfleet.training.tracking",
    "mlfleet.training.trials",
    "mlfleet.training.promotion",
    "mlfleet.registry",
    "mlfleet.monitoring.state",
]


@pytest.mark.parametrize("module", RAY_FREE)
def test_module_imports_without_ray(module: str) -> None:
    # A fresh interpreter: this test process may already hold ray from other tests.
    probe = (
        "import importlib, sys\n"
        f"importlib.import_module({module!r})\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"{module} imports {out.stdout.strip()}"
