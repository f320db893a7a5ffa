"""The peer of bench_fleet.py's warm models: the FastAPI app a user would write by hand to
serve a few models from one process.

    BENCH_TRACKING_URI=sqlite:///... BENCH_MODELS=name/1,other/3 \
        uvicorn benchmarks.plain_fleet_app:app --workers 1

It loads each registered sklearn pipeline once at start-up and predicts a request's
instances with one call (``predict_proba`` for classifiers, the class taken from it;
``predict`` for regressors). No contract checks, no monitoring, no auth: the floor a
hand-written server sets on this machine, to read mlfleet's figures against.
"""

from __future__ import annotations

import os
from typing import Any

import mlflow.sklearn
import pandas as pd
from fastapi import FastAPI, HTTPException

mlflow.set_tracking_uri(os.environ["BENCH_TRACKING_URI"])
models = {
    uri.split("/")[0]: mlflow.sklearn.load_model(f"models:/{uri}")
    for uri in os.environ["BENCH_MODELS"].split(",")
}
app = FastAPI()


@app.post("/v1/models/{name}/predict")
def predict(name: str, request: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    model = models.get(name)
    if model is None:
        raise HTTPException(404, f"no model {name!r}")
    frame = pd.DataFrame(request["instances"])
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(frame)
        return {
            "model": name,
            "predictions": model.classes_[proba.argmax(axis=1)].tolist(),
            "probabilities": proba.round(6).tolist(),
        }
    return {"model": name, "predictions": model.predict(frame).tolist()}
