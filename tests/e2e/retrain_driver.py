"""A small drift monitor on a real head, run in its own process by test_retrain_job.py.

    python -m tests.e2e.retrain_driver PLAN.json     (from the checkout)

It joins the head and starts an actor that counts a model's drift streak as the monitor's
state does and calls the real retrain hook (:class:`mlfleet.monitoring.retrain.RetrainHook`)
at each sustained drift: the hook reads the spec, asks the policy, submits the job from
inside the actor (finding the Jobs API there) and follows it. Retrains are recorded in the
monitor's real store (:class:`mlfleet.monitoring.store.MonitorStore`) at ``store_url``,
which the test reads once this process has ended. PLAN.json holds ``gcs_address``,
``home``, ``store_url``, ``model``, ``specs_dir``, ``policy`` (the retrain block),
``evaluations`` and ``after_job`` (``[status, unix_time]`` pairs, the latter run once the
submitted job has finished). It prints one JSON line per evaluation.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import ray

from tests.support.waiting import wait_for


@ray.remote(num_cpus=0)
class MiniMonitor:
    """Counts the drift streak per evaluation and calls the retrain hook as the state does."""

    def __init__(self, model: str, specs_dir: str, policy: dict[str, Any], store_url: str) -> None:
        from mlfleet.monitoring.retrain import RetrainHook, RetrainPolicy
        from mlfleet.monitoring.store import MonitorStore
        from mlfleet.settings import get_settings

        self.model = model
        self.policy = RetrainPolicy(**policy)
        self.store = MonitorStore(store_url)
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
        before = len(self.store.retrains(self.model))
        if status == "drift" and self.streak >= self.policy.sustained_windows:
            self.hook(self.model, self.streak)
        submitted = len(self.store.retrains(self.model)) > before
        return {"status": status, "streak": self.streak, "submitted": submitted}

    def unfinished(self) -> int:
        return sum(r["status"] == "submitted" for r in self.store.retrains(self.model))

    def close(self) -> None:
        self.store.close()


def main(plan_path: str) -> None:
    plan = json.loads(Path(plan_path).read_text())
    ray.init(address=plan["gcs_address"], log_to_driver=False)
    monitor = MiniMonitor.options(  # type: ignore[attr-defined]
        runtime_env={"env_vars": {"MLFLEET_HOME": plan["home"]}}
    ).remote(plan["model"], plan["specs_dir"], plan["policy"], plan["store_url"])
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
    ray.get(monitor.close.remote())
    ray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
