"""Suite case 5 (second half): the gateway's OpenAPI document describes what it does.

Schemathesis reads the live ``/openapi.json`` of a real fleet and sends what it generates
from it, valid and invalid, with an admin key, under every check it has: every answer's
status must be documented, its body must match the documented schema (the error envelope
included), valid data must not be refused for its shape and invalid data must be, auth
must be enforced where it is declared, wrong methods get 405 with ``Allow``, and nothing
answers 5xx.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlfleet.settings import get_settings
from tests.support.fleet import DUMMY, Model, api_key, serving, train_fleet, write_loans_fleet
from tests.support.waiting import wait_for

pytestmark = pytest.mark.ray

KEY = "mlf_openapi_admin_key"
MODEL = "loan-api"
FLEET: dict[str, Model] = {MODEL: (*DUMMY, "pool")}
MAX_EXAMPLES = 50  # per operation and phase: ~30 s of requests on 2 busy cores
SEED = 20261128  # the same cases on every run: a failure reproduces
REFUSALS = ["400", "401", "403", "404", "405", "409", "413", "415", "422"]


@pytest.fixture(scope="module")
def gateway(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("openapi")
    write_loans_fleet(root, FLEET, rows=300, seed=17)
    settings = get_settings(home=root / "home", api_keys=[api_key("ops", KEY, "predict", "admin")])
    train_fleet(settings, root / "specs", FLEET)
    with serving(settings, root / "specs") as url:
        auth = {"X-API-Key": KEY}
        # The drift monitor and the champion answer first: their 503s while starting are
        # documented, but schemathesis counts any 5xx as a failure.
        wait_for(
            lambda: (
                httpx.get(f"{url}/v1/monitoring", headers=auth, timeout=30).status_code == 200
                and httpx.get(f"{url}/readyz", timeout=30).status_code == 200
            ),
            timeout=120,
            what="the monitor and the champion",
        )
        yield url


def test_schemathesis_finds_nothing(gateway: str, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    # Schema-violating requests must be refused with one of these. Schemathesis' default
    # list lacks 413, which is how every route refuses a body over the byte limit (a
    # limit no JSON schema can state), and includes 5xx, which must never happen.
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        f"[checks.negative_data_rejection]\nexpected-statuses = {json.dumps(REFUSALS)}\n"
    )
    st = Path(sys.executable).with_name("st")
    # One worker: with two threads, hypothesis' ast.parse of a filter's lambda hits CPython
    # 3.11's "AST constructor recursion depth mismatch" (a race in the interpreter) now and
    # then, an error of the tool and not of the gateway.
    command = [
        str(st), "--config-file", str(config), "run", f"{gateway}/openapi.json",
        "--checks", "all",
        "--header", f"Authorization: Bearer {KEY}",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", str(SEED),
        "--workers", "1",
        "--phases", "examples,coverage,fuzzing",
        "--request-timeout", "30",
        "--generation-database", "none",
        "--no-color",
        "--report", "json",
        "--report-json-path", str(report),
    ]  # fmt: skip
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert report.exists(), run.stdout[-4000:] + run.stderr[-2000:]
    result: dict[str, Any] = json.loads(report.read_text())
    cases, operations = result["test_cases"], result["operations"]
    failures = sum(group["count"] for group in result["failures"])
    errors = sum(group["count"] for group in result["errors"])
    print(
        f"schemathesis: {operations['tested']}/{operations['total']} operations, "
        f"{cases['generated']} cases, {failures} failures, {errors} errors, "
        f"{result['running_time']} s (exit {run.returncode})"
    )
    assert operations["tested"] == operations["total"] >= 10, operations
    assert failures == 0 and errors == 0 and run.returncode == 0, run.stdout[-8000:]
