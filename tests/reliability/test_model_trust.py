"""Registered models load only as skops against mlfleet's allow-list (issue 10, hole 1).

A real MLflow SQLite store holds a good version and hostile ones: a pickle model and a
skops model holding a type outside the allow-list, whose MLmodel lists it as trusted. Each
payload writes a sentinel file if any of its code runs. Whoever can write to the store moves
``champion`` to them; every mlfleet loader refuses with a clear error and runs nothing.
The live gateway's side is in ``test_promotion_safety.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlfleet import registry
from mlfleet.settings import Settings, get_settings
from tests.support import REPO
from tests.support.cli import run_cli
from tests.support.messy import loans_frame
from tests.support.untrusted import (
    SKOPS_PAYLOAD_TYPE,
    register_good_model,
    register_pickle_model,
    register_skops_payload,
)

NAME = "loan-trust"


@dataclass
class Store:
    settings: Settings
    good: str
    pickle: str
    skops: str
    pickle_sentinel: Path
    skops_sentinel: Path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    home = tmp_path_factory.mktemp("trust")
    settings = get_settings(home=home)
    registry.configure(settings)
    good = register_good_model(settings, NAME, loans_frame(300, seed=1))
    registry.promote(NAME, good)
    sentinels = home / "pickle-ran", home / "skops-ran"
    return Store(
        settings,
        good,
        register_pickle_model(settings, NAME, sentinels[0]),
        register_skops_payload(settings, NAME, sentinels[1]),
        *sentinels,
    )


def _attacker_moves_champion(version: str) -> None:
    """What anyone with write access to the store can do, bypassing mlfleet."""
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(NAME, registry.CHAMPION, version)


def _champion() -> str:
    info = registry.alias_version(NAME, registry.CHAMPION)
    assert info is not None
    return info.version


def test_load_pipeline_refuses_a_pickle_or_untrusted_skops_champion(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", raising=False)
    registry.configure(store.settings)
    assert "MLFLOW_ALLOW_PICKLE_DESERIALIZATION" not in os.environ
    try:
        _attacker_moves_champion(store.pickle)
        with pytest.raises(registry.UntrustedModelError) as pickled:
            registry.load_pipeline(NAME, _champion())
        _attacker_moves_champion(store.skops)
        with pytest.raises(registry.UntrustedModelError) as skopsed:
            registry.load_pipeline(NAME, _champion())
    finally:
        _attacker_moves_champion(store.good)
    print(f"\npickle champion: {pickled.value.code}: {pickled.value}")
    print(f"skops champion with {SKOPS_PAYLOAD_TYPE}: {skopsed.value.code}: {skopsed.value}")
    assert "pickle" in str(pickled.value) and "skops" in str(pickled.value)
    assert SKOPS_PAYLOAD_TYPE in str(skopsed.value)
    for error in (pickled.value, skopsed.value):
        assert error.http_status == 422
        assert str(store.settings.home) not in str(error) and "/" not in str(error)
    assert not store.pickle_sentinel.exists() and not store.skops_sentinel.exists()
    # The good version still loads and predicts, in the same process.
    frame = loans_frame(5, seed=2)
    assert len(registry.load_pipeline(NAME, store.good).predict(frame)) == 5


def test_promote_refuses_before_moving_the_champion(store: Store) -> None:
    registry.configure(store.settings)
    for version in (store.pickle, store.skops):
        with pytest.raises(registry.UntrustedModelError):
            registry.promote(NAME, version)
        assert _champion() == store.good
    assert registry.describe(NAME).history[-1] == store.good
    assert not store.pickle_sentinel.exists() and not store.skops_sentinel.exists()


def test_cli_promote_refuses_in_one_line(store: Store) -> None:
    env = {**os.environ, "MLFLEET_HOME": str(store.settings.home)}
    env.pop("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", None)
    done = run_cli(["models", "promote", NAME, store.pickle], env=env, timeout=120)
    print(f"\nmlfleet models promote {NAME} {store.pickle}: exit {done.returncode}: {done.stderr}")
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert "skops" in done.stderr and str(store.settings.home) not in done.stderr
    registry.configure(store.settings)
    assert _champion() == store.good
    assert not store.pickle_sentinel.exists()

    asked = run_cli(
        ["models", "list"], env={**env, "MLFLEET_TRUST_REGISTRY_MODELS": "true"}, timeout=120
    )
    print(f"MLFLEET_TRUST_REGISTRY_MODELS=true: exit {asked.returncode}: {asked.stderr}")
    assert asked.returncode != 0 and "MLFLEET_TRUST_REGISTRY_MODELS" in asked.stderr


def test_the_payloads_run_under_plain_mlflow(
    store: Store, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Without mlfleet's loader, MLflow obeys the MLmodel and runs both payloads: the
    sentinels above are absent because mlfleet refused, not because the payloads are dud."""
    proof = tmp_path_factory.mktemp("proof")
    versions = (
        register_pickle_model(store.settings, NAME, proof / "pickle-ran"),
        register_skops_payload(store.settings, NAME, proof / "skops-ran"),
    )
    script = textwrap.dedent(
        f"""
        import mlflow, mlflow.sklearn
        mlflow.set_tracking_uri({store.settings.tracking_uri!r})
        for version in {versions!r}:
            try:
                mlflow.sklearn.load_model(f"models:/{NAME}/{{version}}")
            except Exception as exc:  # the pickle payload returns None, not a model
                print(type(exc).__name__)
        """
    )
    env = {**os.environ, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true"}
    subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, check=True, timeout=120)
    ran = sorted(p.name for p in proof.iterdir())
    print(f"\nplain MLflow with MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true ran: {ran}")
    assert ran == ["pickle-ran", "skops-ran"]


def test_every_estimator_family_training_uses_loads_under_the_allow_list(store: Store) -> None:
    """Models built as training builds them register and load back, predicting the same."""
    import mlflow
    import yaml
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.tree import DecisionTreeClassifier

    from mlfleet.contract.schema import parse_contract
    from mlfleet.training.features import build_pipeline
    from mlfleet.training.tracking import experiment_id
    from tests.support.messy import LOANS_CONTRACT
    from tests.support.untrusted import LOAN_FEATURES

    registry.configure(store.settings)
    contract = parse_contract(yaml.safe_load(LOANS_CONTRACT), origin="loans")
    train, check = loans_frame(300, seed=3), loans_frame(50, seed=4)
    estimators = [
        RandomForestClassifier(n_estimators=5, random_state=0),
        HistGradientBoostingClassifier(max_iter=5),
        KNeighborsClassifier(algorithm="ball_tree", metric="manhattan"),
        MLPClassifier(solver="sgd", max_iter=5, random_state=0),
        DecisionTreeClassifier(max_depth=3),
    ]
    name = "loan-families"
    with mlflow.start_run(experiment_id=experiment_id(store.settings, name)):
        for estimator in estimators:
            model = build_pipeline(contract, LOAN_FEATURES, estimator)
            model.fit(train[LOAN_FEATURES], train["defaulted"])
            version = registry.register_model(
                model, name, signature=None, input_example=None, extra_files={}
            )
            loaded = registry.load_pipeline(name, version)
            assert list(loaded.predict(check)) == list(model.predict(check))
        # A pipeline holding a callable mlfleet would not load is refused before registering.
        hostile = build_pipeline(contract, LOAN_FEATURES, FunctionTransformer(func=eval))
        with pytest.raises(registry.UntrustedModelError, match=r"builtins\.eval"):
            registry.register_model(
                hostile, name, signature=None, input_example=None, extra_files={}
            )
    print(f"\n{len(estimators)} estimator families registered and loaded under the allow-list")
