"""A stand-in drift monitor on a real head, run in its own process by test_retrain_job.py.

    python tests/e2e/retrain_driver.py PLAN.json

It joins the head, starts an actor that evaluates a model's statuses as the monitor does
(the policy decides; a retrain is submitted from inside the actor, with the Jobs API
address found there), and prints one JSON line per evaluation. PLAN.json holds
``gcs_address``, ``home``, ``model``, ``spec``, ``policy`` (the retrain block) and
``evaluations`` (``[status, unix_time]`` pairs, oldest first).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import ray


@ray.remote(num_cpus=0)
class MiniMonitor:
    """Keeps a model's statuses and last retrain like the monitor's state does."""

    def __init__(self, model: str, spec: str, policy: dict[str, Any]) -> None:
        from mlfleet.monitoring.retrain import RetrainPolicy
        from mlfleet.settings import get_settings

        self.settings = get_settings()  # MLFLEET_HOME comes with the actor's runtime env
        self.model, self.spec = model, spec
        self.policy = RetrainPolicy(**policy)
        self.statuses: list[str] = []
        self.last_retrain_at: float | None = None

    def evaluate(self, status: str, now: float) -> dict[str, Any]:
        from mlfleet.monitoring.retrain import submit_retrain

        self.statuses.append(status)
        decision = self.policy.decide(self.model, self.statuses, self.last_retrain_at, now)
        job_id = None
        if decision.retrain:
            job_id = submit_retrain(self.model, self.spec, self.settings, reason=decision.reason)
            self.last_retrain_at = now
        return {
            "status": status,
            "retrain": decision.retrain,
            "reason": decision.reason,
            "job_id": job_id,
        }


def main(plan_path: str) -> None:
    plan = json.loads(Path(plan_path).read_text())
    ray.init(address=plan["gcs_address"], log_to_driver=False)
    monitor = MiniMonitor.options(  # type: ignore[attr-defined]
        runtime_env={"env_vars": {"MLFLEET_HOME": plan["home"]}}
    ).remote(plan["model"], plan["spec"], plan["policy"])
    for status, now in plan["evaluations"]:
        print(json.dumps(ray.get(monitor.evaluate.remote(status, now))), flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
