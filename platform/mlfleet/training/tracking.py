"""MLflow logging for a training: experiment, parent and child runs, the model version.

Only the driver calls these (SQLite accepts one writer at a time).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from mlfleet.settings import Settings
from mlfleet.training.trials import TrialOutcome

ALLOWED_MODEL_TYPE_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.")


def experiment_id(settings: Settings, model_name: str) -> str:
    """The experiment of a model, created with an absolute artifact location.

    Without one, artifacts land relative to whichever process logs them (Ray workers run
    in session temp dirs) and are lost.
    """
    import mlflow

    name = f"mlfleet/{model_name}"
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = (settings.home / "mlartifacts" / model_name).resolve()
    location.mkdir(parents=True, exist_ok=True)
    return str(mlflow.create_experiment(name, artifact_location=location.as_uri()))


def log_trials(outcomes: list[TrialOutcome], parent_run_id: str, experiment: str) -> None:
    """One child run per trial: params, the score at each data fraction, the outcome."""
    import mlflow

    for o in outcomes:
        with mlflow.start_run(
            experiment_id=experiment,
            run_name=f"trial-{o.index:03d}",
            nested=True,
            parent_run_id=parent_run_id,
        ):
            mlflow.log_params(
                {"estimator": o.estimator, **{f"param.{k}": v for k, v in o.params.items()}}
            )
            for step, (fraction, value) in enumerate(o.scores):
                mlflow.log_metrics({"val_score": value, "fraction": fraction}, step=step)
            if o.final_score is not None:
                mlflow.log_metric("final_val_score", o.final_score)
            mlflow.set_tags(
                {
                    "mlfleet.trial": o.index,
                    "mlfleet.trial_status": "error"
                    if o.error
                    else ("completed" if o.final_fraction == 1.0 else "stopped_early"),
                }
            )


def trusted_types(model: Any) -> list[str]:
    """The types skops must be told to trust to load ``model``.

    They are computed from the model we built ourselves and limited to scientific Python:
    anything else means the pipeline holds something a spec should not be able to inject.
    """
    import skops.io

    found = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    odd = [t for t in found if not t.startswith(ALLOWED_MODEL_TYPE_PREFIXES)]
    if odd:
        raise ValueError(f"refusing to log a model holding untrusted types: {odd}")
    return list(found)


def pip_requirements() -> list[str]:
    """Pinned requirements of the served model (no 8 s inference of requirements)."""
    from importlib.metadata import version

    return [
        f"{pkg}=={version(pkg)}" for pkg in ("scikit-learn", "numpy", "pandas", "scipy", "skops")
    ]


def log_model(model: Any, X_example: pd.DataFrame, name: str, extra: dict[str, Any]) -> Any:
    """Log the pipeline with signature, input example and side files, and register it."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    example = X_example.head(5)
    signature = infer_signature(example, model.predict(example))
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for filename, content in extra.items():
            path = Path(tmp) / filename
            path.write_text(
                content if isinstance(content, str) else json.dumps(content, indent=2, default=str)
            )
            files.append(str(path))
        return mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=example,
            registered_model_name=name,
            pip_requirements=pip_requirements(),
            serialization_format="skops",
            skops_trusted_types=trusted_types(model),
            extra_files=files,
            await_registration_for=60,
        )
