"""`mlfleet train` on mlfleet's own local head hands the work to the warm trainer (issue 13).

Every command here is the real CLI in its own process, on a real head, with MLflow on
SQLite under the head's MLFLEET_HOME. The first training on a head runs in the command and
then starts the trainer; later ones run there, with the command's own settings, and fall
back to the command's process when the trainer is busy or switched off.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mlfleet.training.warm import code_fingerprint
from tests.support import REPO
from tests.support.cli import MLFLEET, run_cli
from tests.support.messy import example_spec_copy
from tests.support.ray_head import RayHead, ray_head

pytestmark = pytest.mark.slow

MODEL = "penguin-species"

# Waits, in a process of its own, until the head's trainer answers (Ray joined here would
# stay joined for the rest of the test session).
WAIT_FOR_TRAINER = textwrap.dedent(
    """
    import sys, time
    from mlfleet.ray_runtime import connect, prepare_ray_env
    prepare_ray_env()
    import ray
    from mlfleet.ray_runtime import NAMESPACE
    from mlfleet.settings import get_settings
    from mlfleet.training.warm import TRAINER_NAME
    connect(get_settings())
    deadline = time.monotonic() + 120
    while True:
        try:
            trainer = ray.get_actor(TRAINER_NAME, namespace=NAMESPACE)
            print(ray.get(trainer.fingerprint.remote(), timeout=60))
            break
        except ValueError:
            if time.monotonic() > deadline:
                sys.exit("no trainer")
            time.sleep(0.5)
    """
)


@pytest.fixture(scope="module")
def head() -> Iterator[RayHead]:
    with ray_head() as h:
        yield h


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("warm-specs")
    example_spec_copy(REPO, root, "penguins", num_samples=4)
    return root


@pytest.fixture(scope="module")
def env(head: RayHead) -> dict[str, str]:
    env = {**head.env, "MLFLEET_HOME": str(head.home)}
    env.pop("MLFLEET_RAY_ADDRESS", None)
    env.pop("MLFLEET_WARM_TRAINER", None)
    return env


def train(spec: Path, env: dict[str, str]) -> dict[str, object]:
    out = run_cli(["train", str(spec), "--json"], env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, object] = json.loads(out.stdout)
    return result


def versions(env: dict[str, str]) -> list[str]:
    out = run_cli(["models", "show", MODEL, "--json"], env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return sorted(str(v["version"]) for v in json.loads(out.stdout)["all_versions"])


@pytest.fixture(scope="module")
def warm(head: RayHead, specs: Path, env: dict[str, str]) -> dict[str, object]:
    """The head after its first training, with the trainer that training started ready."""
    first = train(specs / "penguins" / "model.yaml", env)
    assert first["trainer"] == "local"  # no trainer yet: this one starts it
    waited = subprocess.run(
        [sys.executable, "-c", WAIT_FOR_TRAINER],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert waited.returncode == 0, waited.stderr[-2000:]
    assert waited.stdout.strip() == code_fingerprint()
    return first


def test_a_later_training_runs_on_the_warm_trainer(
    warm: dict[str, object], specs: Path, env: dict[str, str]
) -> None:
    spec = specs / "penguins" / "model.yaml"
    second = train(spec, env)
    assert second["trainer"] == "warm"
    assert int(str(second["version"])) == int(str(warm["version"])) + 1
    assert str(second["version"]) in versions(env)
    # The same training: a search of the spec's 4 configurations, the gate against the
    # champion the first one made, on the same dataset version.
    assert second["trials"] == 4
    assert second["previous_champion"] == warm["version"]
    assert second["dataset_version"] == warm["dataset_version"]
    steps = second["steps_s"]
    assert isinstance(steps, dict) and steps["search"] > 0 and steps["log_register"] > 0
    print(f"warm training: {second['seconds']:.2f} s, steps {steps}")


def test_the_command_settings_and_working_directory_reach_the_trainer(
    warm: dict[str, object], specs: Path, env: dict[str, str], tmp_path: Path
) -> None:
    """Another tracking store, named by this command's environment, and a spec path
    relative to this command's working directory (not the trainer's)."""
    other = tmp_path / "other-mlflow.db"
    mine = {**env, "MLFLEET_MLFLOW_TRACKING_URI": f"sqlite:///{other}"}
    before = versions(env)
    out = subprocess.run(
        [*MLFLEET, "train", "penguins/model.yaml", "--json"],
        env=mine,
        cwd=specs,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["trainer"] == "warm"
    assert result["version"] == "1"  # the first version in that store
    assert other.is_file()
    assert versions(mine) == ["1"]
    assert versions(env) == before  # nothing landed in the head's own store


def test_a_bad_spec_is_one_clear_error_from_the_trainer(
    warm: dict[str, object], specs: Path, env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad" / "model.yaml"
    bad.parent.mkdir()
    spec = yaml.safe_load((specs / "penguins" / "model.yaml").read_text())
    spec["search"]["metric"] = "not_a_scorer"
    bad.write_text(yaml.safe_dump(spec))
    out = run_cli(["train", str(bad)], env, timeout=120)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out.stderr
    assert str(bad) in errors[0] and "not_a_scorer" in errors[0]
    # The trainer is still there for the next command.
    assert train(specs / "penguins" / "model.yaml", env)["trainer"] == "warm"


def test_a_busy_trainer_leaves_the_next_training_to_its_command(
    warm: dict[str, object], specs: Path, env: dict[str, str], tmp_path: Path
) -> None:
    long_spec = example_spec_copy(REPO, tmp_path / "long", "penguins", num_samples=24)
    first = start_training(long_spec, env)
    try:
        wait_until_searching(first)
        second = train(specs / "penguins" / "model.yaml", env)
        assert second["trainer"] == "local"
        stderr = first.communicate(timeout=300)[1]
        assert first.returncode == 0, stderr[-3000:]
    finally:
        first.kill()


def test_an_interrupted_training_registers_nothing(
    warm: dict[str, object], specs: Path, env: dict[str, str], tmp_path: Path
) -> None:
    long_spec = example_spec_copy(REPO, tmp_path / "long", "penguins", num_samples=24)
    before = versions(env)
    proc = start_training(long_spec, env)
    try:
        wait_until_searching(proc)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
        assert proc.returncode != 0
    finally:
        proc.kill()
    # The trainer stops at the next trial or stage and takes the next training (until
    # then, trainings run in their commands).
    deadline = time.monotonic() + 120
    made = []
    while True:
        result = train(specs / "penguins" / "model.yaml", env)
        made.append(str(result["version"]))
        if result["trainer"] == "warm":
            break
        assert time.monotonic() < deadline, "the trainer stayed busy"
    after = versions(env)
    # Every new version is one of these trainings': none is the interrupted one's.
    assert sorted(set(after) - set(before)) == sorted(made), (before, after, made)


def test_switched_off_the_command_trains_itself(
    warm: dict[str, object], specs: Path, env: dict[str, str]
) -> None:
    off = {**env, "MLFLEET_WARM_TRAINER": "false"}
    assert train(specs / "penguins" / "model.yaml", off)["trainer"] == "local"


def test_the_fingerprint_follows_the_code(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    module = package / "a.py"
    module.write_text("x = 1\n")
    before = code_fingerprint(package)
    assert code_fingerprint(package) == before
    module.write_text("x = 22\n")
    assert code_fingerprint(package) != before
    os.utime(module, ns=(1, 1))
    changed = code_fingerprint(package)
    (package / "b.py").write_text("")
    assert code_fingerprint(package) != changed


def start_training(spec: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """`mlfleet train` with its progress lines on stderr (no --json), answering Ctrl-C."""
    return subprocess.Popen(
        [*MLFLEET, "train", str(spec)],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A suite started in the background (`make test &`, nohup) inherits SIGINT ignored,
        # and Python keeps an ignored SIGINT ignored: the command would never see Ctrl-C.
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_until_searching(proc: subprocess.Popen[str]) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        if "searching" in line:
            return
    raise AssertionError(f"the training ended before its search (exit {proc.wait()})")


def test_an_interrupted_training_in_the_command_registers_nothing(
    warm: dict[str, object], env: dict[str, str], tmp_path: Path
) -> None:
    """Ctrl-C ends the command; Tune's own handler would have ended only the search and
    let the training register what the cut-short search found."""
    off = {**env, "MLFLEET_WARM_TRAINER": "false"}
    long_spec = example_spec_copy(REPO, tmp_path / "long", "penguins", num_samples=24)
    before = versions(env)
    proc = start_training(long_spec, off)
    try:
        wait_until_searching(proc)
        time.sleep(1)  # trials running
        proc.send_signal(signal.SIGINT)
        stderr = proc.communicate(timeout=120)[1]
        assert proc.returncode == 130, stderr[-2000:]
        assert "Traceback" not in stderr
    finally:
        proc.kill()
    assert versions(env) == before
