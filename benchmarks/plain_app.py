"""The peer of bench_serve.py: the FastAPI app a user would write by hand for one model.

    MLFLEET_HOME=... BENCH_MODEL=models:/name/1 uvicorn benchmarks.plain_app:app --workers 1

It loads the same registered sklearn pipeline, validates the row with pydantic and predicts.
It is the careful version of that app: one ``predict_proba`` call, with the predicted class
taken from it, so the pipeline's preprocessing runs once per request (as it does in mlfleet).
"""

from __future__ import annotations

import os

import mlflow.sklearn
import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel


class Row(BaseModel):
    bill_length_mm: float | None = None
    bill_depth_mm: float | None = None
    flipper_length_mm: float | None = None
    body_mass_g: float | None = None
    island: str
    sex: str | None = None


class Request(BaseModel):
    instances: list[Row]


mlflow.set_tracking_uri(os.environ["BENCH_TRACKING_URI"])
model = mlflow.sklearn.load_model(os.environ["BENCH_MODEL"])
app = FastAPI()


@app.post("/v1/models/{name}/predict")
def predict(name: str, request: Request) -> dict:
    frame = pd.DataFrame([r.model_dump() for r in request.instances])
    frame["island"] = frame["island"].str.strip().str.lower()
    proba = model.predict_proba(frame)
    return {
        "model": name,
        "predictions": model.classes_[proba.argmax(axis=1)].tolist(),
        "probabilities": proba.round(6).tolist(),
    }
