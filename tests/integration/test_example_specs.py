"""Every example spec trains, and its model takes the training data as pandas reads it.

The MLflow signature is one more reader of the contract: a user who loads the curated
training data with pandas and calls plain ``mlflow.pyfunc`` must get predictions, and the
same ones the fleet serves from the contract's reading of those rows.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mlfleet import registry
from mlfleet.contract import semantics
from mlfleet.settings import Settings, get_settings
from mlfleet.spec import load_spec
from mlfleet.training.run import train
from tests.support import REPO
from tests.support.messy import example_spec_copy

EXAMPLES = sorted(p.parent.name for p in (REPO / "specs").glob("*/model.yaml"))


@pytest.fixture(scope="module")
def settings(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = get_settings(home=tmp_path_factory.mktemp("examples-home"))
    registry.configure(settings)
    return settings


def test_there_are_example_specs() -> None:
    assert {"penguins", "diabetes", "breast-cancer"} <= set(EXAMPLES)


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES)
def test_plain_pyfunc_predicts_the_training_data_as_pandas_reads_it(
    example: str, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.pyfunc

    # Plain MLflow loads only when told to trust the registry; mlfleet never tells it so.
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")

    loaded = load_spec(example_spec_copy(REPO, tmp_path, example, num_samples=2))
    result = train(loaded, settings)
    data_dir = settings.datasets_dir / loaded.contract.name / result.dataset_version / "data"
    frame = pd.read_parquet(data_dir)  # every column, target and keys included
    model = mlflow.pyfunc.load_model(f"models:/{result.name}/{result.version}")
    predictions = list(model.predict(frame))
    assert len(predictions) == len(frame)
    # The fleet predicts from the contract's reading of the same rows: same answers.
    served = registry.load_pipeline(result.name, result.version).predict(
        semantics.model_frame(
            {n: frame[n] for n in loaded.features}, loaded.contract, loaded.features
        )
    )
    assert predictions == list(served)
    # Int columns are `long` where pandas reads int64 (diabetes' age), never `double`.
    inputs = {c.name: c.type.name for c in model.metadata.get_input_schema().inputs}
    for name in loaded.features:
        col = loaded.contract.column(name)
        expected = {"int": "long" if frame[name].dtype.kind == "i" else "double"}.get(
            col.type, "double" if col.type == "float" else "string"
        )
        assert inputs[name] == expected, name
