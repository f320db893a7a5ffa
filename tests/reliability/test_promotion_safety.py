"""Suite case 10, promotion safety: promoting a version that cannot load keeps the old champion
serving and says why; concurrent promotions and rollbacks lose no history entry.

One fleet (a gateway and a pool replica on the session's Ray) serves ``loan-safe``: v1 is the
champion, v2 a good candidate, v3 a pickle model whose unpickling writes a sentinel file, v4 a
good model whose model file was deleted from the artifact store after registering.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlfleet import registry
from mlfleet.settings import Settings, get_settings
from tests.support import REPO
from tests.support.fleet import LOGREG, api_key, serving, write_loans_fleet
from tests.support.messy import loans_frame
from tests.support.untrusted import model_files, register_good_model, register_pickle_model
from tests.support.waiting import wait_for

pytestmark = pytest.mark.ray

NAME = "loan-safe"
ADMIN_KEY = "mlf_safety_admin_key"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
ROW = {"income": 30000.0, "debt_ratio": 2.5, "region": "north"}


@dataclass
class Fleet:
    settings: Settings
    url: str
    good: str
    candidate: str
    pickle: str
    missing: str
    sentinel: Path


@pytest.fixture(scope="module")
def fleet(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("safety")
    specs = write_loans_fleet(root, {NAME: (*LOGREG, "pool")}, rows=50, seed=1)
    settings = get_settings(
        home=root / "home",
        api_keys=[api_key("ops", ADMIN_KEY, "predict", "admin")],
        alias_refresh_seconds=0.5,
        gateway_inline_models=0,  # every prediction goes to the pool, which loads models
    )
    registry.configure(settings)
    good = register_good_model(settings, NAME, loans_frame(300, seed=1))
    registry.promote(NAME, good)
    candidate = register_good_model(settings, NAME, loans_frame(300, seed=2))
    sentinel = root / "pickle-ran"
    pickled = register_pickle_model(settings, NAME, sentinel)
    missing = register_good_model(settings, NAME, loans_frame(300, seed=3))
    (model_files(NAME, missing) / registry.SKOPS_FILE).unlink()
    with serving(settings, specs) as url:
        yield Fleet(settings, url, good, candidate, pickled, missing, sentinel)


@dataclass
class Traffic:
    """A bounded client predicting in a loop; what each answer said."""

    url: str
    answers: list[tuple[int, str | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, headers=ADMIN, timeout=30) as client:
            while not self.stop.is_set():
                r = client.post(f"/v1/models/{NAME}/predict", json={"instances": [ROW]})
                version = r.json().get("version") if r.status_code == 200 else None
                self.answers.append((r.status_code, version))
                self.stop.wait(0.02)


def _promote(client: httpx.Client, version: str) -> httpx.Response:
    return client.post(f"/v1/models/{NAME}/promote", json={"version": version}, headers=ADMIN)


def _champion() -> str:
    info = registry.alias_version(NAME, registry.CHAMPION)
    assert info is not None
    return info.version


def test_a_version_that_cannot_load_is_refused_while_the_champion_serves(fleet: Fleet) -> None:
    traffic = Traffic(fleet.url)
    worker = threading.Thread(target=traffic.run, daemon=True)
    worker.start()
    refused: dict[str, httpx.Response] = {}
    try:
        wait_for(lambda: len(traffic.answers) >= 5, timeout=60, what="first predictions")
        with httpx.Client(base_url=fleet.url, timeout=120) as client:
            started = time.monotonic()
            for version in (fleet.pickle, fleet.missing):
                refused[version] = _promote(client, version)
            refusing_s = time.monotonic() - started
            seen = len(traffic.answers)
            wait_for(lambda: len(traffic.answers) >= seen + 20, timeout=60, what="predictions")
    finally:
        traffic.stop.set()
        worker.join(timeout=60)
    bodies = {v: (r.status_code, r.json()["error"]) for v, r in refused.items()}
    by_answer = Counter(traffic.answers)
    print(
        f"\npromote v{fleet.pickle} (pickle): {bodies[fleet.pickle]}; "
        f"promote v{fleet.missing} (model file deleted): {bodies[fleet.missing]}; "
        f"both answered in {refusing_s:.1f} s; predictions meanwhile: {dict(by_answer)}"
    )
    assert bodies[fleet.pickle][0] == 422 and bodies[fleet.pickle][1]["code"] == "model_untrusted"
    assert "skops" in bodies[fleet.pickle][1]["message"]
    assert bodies[fleet.missing][0] == 422
    assert bodies[fleet.missing][1]["code"] == "model_unloadable"
    assert registry.SKOPS_FILE in bodies[fleet.missing][1]["message"]
    for _, error in bodies.values():
        assert str(fleet.settings.home) not in error["message"]
    assert set(by_answer) == {(200, fleet.good)}, "the old champion stopped answering"
    assert _champion() == fleet.good
    assert registry.describe(NAME).history[-1] == fleet.good
    assert not fleet.sentinel.exists(), "the pickle payload ran"


def test_a_champion_moved_behind_mlfleets_back_to_pickle_runs_nothing(fleet: Fleet) -> None:
    from mlflow import MlflowClient

    registry.configure(fleet.settings)
    MlflowClient().set_registered_model_alias(NAME, registry.CHAMPION, fleet.pickle)
    try:
        with httpx.Client(base_url=fleet.url, headers=ADMIN, timeout=60) as client:

            def answered_by_pickle() -> httpx.Response | None:
                r = client.post(f"/v1/models/{NAME}/predict", json={"instances": [ROW]})
                return r if r.status_code != 200 else None

            refused = wait_for(answered_by_pickle, timeout=30, what="gateway sees new champion")
            ready = client.get("/readyz")
    finally:
        MlflowClient().set_registered_model_alias(NAME, registry.CHAMPION, fleet.good)
    print(f"\npredict with a pickle champion: {refused.status_code} {refused.text[:200]}")
    print(f"/readyz meanwhile: {ready.status_code}")
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "model_untrusted"
    assert str(fleet.settings.home) not in refused.text
    assert ready.status_code == 503
    assert not fleet.sentinel.exists(), "the pickle payload ran in the fleet"


def test_a_good_version_promotes_and_rolls_back_through_the_gateway(fleet: Fleet) -> None:
    with httpx.Client(base_url=fleet.url, headers=ADMIN, timeout=120) as client:

        def serving(version: str) -> bool:
            r = client.post(f"/v1/models/{NAME}/predict", json={"instances": [ROW]})
            return r.status_code == 200 and r.json()["version"] == version

        wait_for(lambda: serving(fleet.good), timeout=30, what="v1 serving again")
        promoted = _promote(client, fleet.candidate)
        assert promoted.status_code == 200, promoted.text
        assert serving(fleet.candidate)  # the promoting replica switched at once
        rolled = client.post(f"/v1/models/{NAME}/rollback", headers=ADMIN)
        assert rolled.status_code == 200, rolled.text
        assert rolled.json()["champion"] == fleet.good
        assert serving(fleet.good)
    print(f"\npromote v{fleet.candidate} then rollback: {promoted.json()} / {rolled.json()}")


def _replay(entries: list[dict[str, Any]]) -> list[str]:
    """The champion stack an append-only log leads to, by the documented rules: a seed sets
    the stack, a promotion pushes (unless already on top), a rollback pops."""
    stack: list[str] = []
    for entry in entries:
        if entry["op"] == "seed":
            stack = list(entry["history"])
        elif entry["op"] == "promote" and (not stack or stack[-1] != entry["version"]):
            stack.append(entry["version"])
        elif entry["op"] == "rollback":
            assert len(stack) >= 2, "a rollback was logged with nothing to roll back to"
            stack.pop()
    return stack


WORKER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from mlfleet import registry
    from mlfleet.settings import get_settings

    home, name, versions, ops, go = sys.argv[1:6]
    versions, ops, go = versions.split(","), int(ops), Path(go)
    registry.configure(get_settings(home=home))
    registry.model_exists(name)  # connect before the start line
    while not go.exists():
        time.sleep(0.005)
    done = []
    for i in range(ops):
        try:
            if i % 3 == 2:
                done.append(["rollback", registry.rollback(name).version])
            else:
                version = versions[i % len(versions)]
                done.append(["promote", registry.promote(name, version).version])
        except registry.RegistryError as exc:
            done.append(["refused", exc.code])
    print(json.dumps(done))
    """
)


def test_concurrent_promotions_and_rollbacks_lose_no_history_entry(
    fleet: Fleet, tmp_path: Path
) -> None:
    """Separate processes (each its own MLflow client and SQLite connection) and the live
    gateway (threads in one process) promote and roll back the same model at once."""
    registry.configure(fleet.settings)
    before = registry.champion_log(NAME)
    go = tmp_path / "go"
    processes, ops = 3, 4
    versions = f"{fleet.good},{fleet.candidate}"
    env = {**os.environ, "MLFLEET_HOME": str(fleet.settings.home)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(fleet.settings.home), NAME, versions, str(ops), go],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    http_calls = [("promote", fleet.candidate), ("rollback", None), ("promote", fleet.good)]
    started = time.monotonic()
    go.write_text("go")

    def call(op: str, version: str | None) -> tuple[str, int, dict[str, Any]]:
        with httpx.Client(base_url=fleet.url, headers=ADMIN, timeout=120) as client:
            if op == "promote":
                r = client.post(f"/v1/models/{NAME}/promote", json={"version": version})
            else:
                r = client.post(f"/v1/models/{NAME}/rollback")
            return op, r.status_code, r.json()

    with ThreadPoolExecutor(len(http_calls)) as pool:
        answers = list(pool.map(lambda c: call(*c), http_calls))
    results = []
    for worker in workers:
        out, _ = worker.communicate(timeout=300)
        assert worker.returncode == 0
        results.extend(json.loads(out.strip().splitlines()[-1]))
    elapsed = time.monotonic() - started

    for _, status, body in answers:
        assert status in (200, 409), body
        if status == 409:
            assert body["error"]["code"] == "registry_conflict"
    done = Counter(op for op, _ in results if op != "refused")
    done.update(op for op, status, _ in answers if status == 200)
    log = registry.champion_log(NAME)
    added = log[len(before) :]
    assert log[: len(before)] == before, "an earlier entry changed"
    logged = Counter(entry["op"] for entry in added)
    promoted = Counter(v for op, v in results if op == "promote")
    promoted.update(body["champion"] for op, s, body in answers if op == "promote" and s == 200)
    stack = _replay(log)
    print(
        f"\n{processes} processes x {ops} calls + {len(http_calls)} concurrent HTTP calls in "
        f"{elapsed:.1f} s: done {dict(done)}, refused (nothing to roll back) "
        f"{sum(op == 'refused' for op, _ in results) + sum(s == 409 for _, s, _ in answers)}; "
        f"log entries added {dict(logged)}; champion {_champion()}, history tail {stack[-5:]}"
    )
    assert logged == done, "a promotion or rollback is missing from the history"
    assert Counter(e["version"] for e in added if e["op"] == "promote") == promoted
    assert len({e["id"] for e in added}) == len(added)
    assert _champion() == stack[-1]
    assert registry.describe(NAME).history == stack
