"""Every example spec trains, and its model takes the training data as pandas reads it.

The MLflow signature is one more reader of the contract: a user who loads the curated
training data with pandas and calls plain ``mlflow.pyfunc`` must get predictions, and the
same ones the fleet serves from the contract's reading of those rows.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlfleet import registry
from mlfleet.contract import semantics
from mlfleet.settings import Settings, get_settings
from mlfleet.spec import load_spec
from mlfleet.training.run import train

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.parent.name for p in (REPO / "specs").glob("*/model.yaml"))


def _small_copy(name: str, into: Path) -> Path:
    """The example spec with absolute paths and a two-configuration search."""
    spec = yaml.safe_load((REPO / "specs" / name / "model.yaml").read_text())
    base = REPO / "specs" / name
    spec["contract"] = str(base / spec["contract"])
    spec["sources"] = [
        s.replace("sqlite:///", f"sqlite:///{base}/")
        if s.startswith("sqlite:///")
        else str(base / s)
        for s in spec["sources"]
    ]
    spec["search"]["num_samples"] = 2
    path = into / name / "model.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(spec))
    return path


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
    example: str, settings: Settings, tmp_path: Path
) -> None:
    import mlflow.pyfunc

    loaded = load_spec(_small_copy(example, tmp_path))
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
