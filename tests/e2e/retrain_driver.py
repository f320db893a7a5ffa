"""A stand-in drift monitor on a real head, run in its own process by test_retrain_job.py.

    python -m tests.e2e.retrain_driver PLAN.json     (from the checkout)

It joins the head and starts an actor that counts a model's drift streak as the monitor's
state does and calls the real retrain hook (:class:`mlfleet.monitoring.retrain.RetrainHook`)
at each sustained drift: the hook reads the spec, asks the policy, submits the job from
inside the actor (finding the Jobs API there) and follows it. Retrains are recorded in
memory, in the store's format. PLAN.json holds ``gcs_address``, ``home``, ``model``,
``specs_dir``, ``policy`` (the retrain block), ``evaluations`` and ``after_job``
(``[status, unix_time]`` pairs, the latter run once the submitted job has finished).
It prints one JSON line per evaluation, then ``{"retrains": [...]}``.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import ray

from tests.support.waiting import wait_for


class MemoryRetrains:
    """The retrain records of the monitor's store, kept in memory (same methods)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def record_retrain(
        self,
        model: str,
        *,
        reason: str,
        version: str | None = None,
        status: str = "submitted",
        job_id: str | None = None,
        details: dict[str, Any] | None = None,
        at: float | None = None,
    ) -> str:
        row = {
            "id": uuid.uuid4().hex,
            "model": model,
            "version": version,
            "reason": reason,
            "status": status,
            "job_id": job_id,
            "details": dict(details or {}),
            "at": time.time() if at is None else at,
        }
        self.rows.insert(0, row)  # newest first, as the store answers
        return str(row["id"])

    def update_retrain(
        self,
        retrain_id: str,
        *,
        status: str | None = None,
        job_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        row = next(r for r in self.rows if r["id"] == retrain_id)
        if status is not None:
            row["status"] = status
        if job_id is not None:
            row["job_id"] = job_id
        row["details"].update(details or {})

    def retrains(self, model: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        return [r for r in self.rows if model in (None, r["model"])][:limit]


@ray.remote(num_cpus=0)
class MiniMonitor:
    """Counts the drift streak per evaluation and calls the retrain hook as the state does."""

    def __init__(self, model: str, specs_dir: str, policy: dict[str, Any]) -> None:
        from mlfleet.monitoring.retrain import RetrainHook, RetrainPolicy
        from mlfleet.settings import get_settings

        self.model = model
        self.policy = RetrainPolicy(**policy)
        self.store = MemoryRetrains()
        self.now = 0.0
        self.streak = 0
        self.hook = RetrainHook(
            get_settings(),  # MLFLEET_HOME comes with the actor's runtime env
            self.store,
            specs_dir,
            policy=self.policy,
            poll_seconds=1.0,
            clock=lambda: self.now,
        )

    def evaluate(self, status: str, now: float) -> dict[str, Any]:
        self.now = now
        self.streak = self.streak + 1 if status == "drift" else 0
        before = len(self.store.rows)
        if status == "drift" and self.streak >= self.policy.sustained_windows:
            self.hook(self.model, self.streak)
        return {"status": status, "streak": self.streak, "submitted": len(self.store.rows) > before}

    def unfinished(self) -> int:
        return sum(r["status"] == "submitted" for r in self.store.rows)

    def retrains(self) -> list[dict[str, Any]]:
        return self.store.rows


def main(plan_path: str) -> None:
    plan = json.loads(Path(plan_path).read_text())
    ray.init(address=plan["gcs_address"], log_to_driver=False)
    monitor = MiniMonitor.options(  # type: ignore[attr-defined]
        runtime_env={"env_vars": {"MLFLEET_HOME": plan["home"]}}
    ).remote(plan["model"], plan["specs_dir"], plan["policy"])
    for status, now in plan["evaluations"]:
        print(json.dumps(ray.get(monitor.evaluate.remote(status, now))), flush=True)
    wait_for(
        lambda: ray.get(monitor.unfinished.remote()) == 0,
        timeout=400,
        what="the retrain job's outcome in the store",
        most=1.0,
    )
    for status, now in plan["after_job"]:
        print(json.dumps(ray.get(monitor.evaluate.remote(status, now))), flush=True)
    print(json.dumps({"retrains": ray.get(monitor.retrains.remote())}), flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
