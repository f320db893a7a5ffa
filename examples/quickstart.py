"""``make quickstart``: the user's first tour, end to end on embedded defaults.

Run from the repository root (``python -m examples.quickstart``). It uses the mlfleet
library as a user's own script would:

1. validates the penguins as three messy systems send them (``specs/penguins``),
2. trains every model spec in ``specs/`` on one embedded Ray (Tune search, MLflow registry,
   promotion gate),
3. prints the registry and how to open the MLflow UI,
4. serves the fleet behind one gateway on a local Ray head that stays up, with an API key,
   prints real predictions and curl commands that work as printed (`mlfleet down` stops it),
5. closes the loop: live traffic, one stream of it shifted (penguins from Biscoe island
   only); the drift monitor flags that model and its features, a signed alert reaches a
   webhook receiver started here on 127.0.0.1, labels come back as feedback, and the
   sustained drift submits a retrain job whose promotion-gate decision is printed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from examples.demo import APP, DB, SQLITE_TABLE, WEB
from mlfleet.errors import MlfleetError
from mlfleet.settings import Settings


def say(text: str = "") -> None:
    """Print a line of the tour now (Ray's and MLflow's output interleave with it)."""
    print(text, flush=True)


def validate_penguins(specs_dir: Path, settings: Settings) -> None:
    """Step 1: one dataset version from three sources; exits 1 if it fails its limit."""
    from mlfleet.contract.schema import load_contract
    from mlfleet.data.validate import validate

    penguins = specs_dir / "penguins"
    data = penguins / "data"
    sources = [str(data / WEB), str(data / APP), f"sqlite:///{data / DB}?table={SQLITE_TABLE}"]
    say("\n== 1. validate penguins from a website export, an app log and a database\n")
    result = validate(load_contract(penguins / "contract.yaml"), sources, settings)
    m = result.manifest
    say(f"{m.name} version {m.version} {m.status}")
    say(
        f"  rows in {m.rows_in:,} = valid {m.rows_valid:,} + quarantined "
        f"{m.rows_quarantined:,} ({100 * m.quarantine_fraction:.2f}%, "
        f"limit {100 * m.max_quarantine_fraction:.2f}%)"
    )
    reasons = sorted(m.reasons.items(), key=lambda kv: -kv[1])
    say("  quarantine reasons: " + ", ".join(f"{code} {rows:,}" for code, rows in reasons))
    say(f"  report: {result.path / 'report.html'}")
    if m.status != "passed":
        sys.exit(1)


def _stage_printer(name: str) -> Callable[[str], None]:
    return lambda message: say(f"  {name}: {message}")


def train_fleet(specs_dir: Path, settings: Settings) -> None:
    """Step 2: search, register and gate every model spec in ``specs_dir``."""
    from mlfleet.spec import load_spec
    from mlfleet.training.run import train

    specs = sorted(specs_dir.glob("*/model.yaml"))
    say(f"\n== 2. train the fleet: {len(specs)} model specs on Ray Tune, tracked in MLflow\n")
    for path in specs:
        loaded = load_spec(path)
        result = train(loaded, settings, on_stage=_stage_printer(loaded.spec.name))
        verdict = "promoted to champion" if result.promoted else "challenger"
        say(f"{result.name} version {result.version} {verdict}")
        say(f"  {result.metric} on holdout: {result.score:.4f}; decision: {result.decision}\n")


def show_registry(settings: Settings) -> None:
    """Step 3: the registry's champions and challengers, and how to browse them."""
    from mlfleet import registry

    say("== 3. the registry\n")
    registry.configure(settings)
    for info in registry.list_models():
        champion = info.champion.version if info.champion else "-"
        challenger = info.challenger.version if info.challenger else "-"
        say(
            f"  {info.name}: champion {champion}, challenger {challenger}, versions {info.versions}"
        )
    say(
        f"\nBrowse runs, trials and models:  .venv/bin/mlflow ui --backend-store-uri "
        f"{settings.tracking_uri}\n(then open http://127.0.0.1:5000)"
    )


def run(specs_dir: Path = Path("specs")) -> None:
    """Run the quickstart from the repository root."""
    from mlfleet.ray_runtime import prepare_ray_env

    prepare_ray_env()  # before anything imports ray
    import ray

    from mlfleet.settings import get_settings

    settings = get_settings()
    # Validation starts an embedded Ray in this process; training reuses it (steps 1-3).
    validate_penguins(specs_dir, settings)
    train_fleet(specs_dir, settings)
    show_registry(settings)
    ray.shutdown()  # serving gets a head that outlives this process
    receiver = AlertReceiver.start()
    settings = settings.model_copy(
        update={
            "alert_webhook_url": receiver.url,
            "alert_webhook_secret": SecretStr(receiver.secret),
            # The tour judges every few seconds instead of every minute, so that three
            # drifted evaluations in a row (the spec's retrain policy) happen while you watch.
            "monitor_evaluate_seconds": LOOP_EVALUATE_SECONDS,
        }
    )
    url, key = serve_fleet(specs_dir.resolve(), settings)
    try:
        close_the_loop(url, key, receiver)
    finally:
        receiver.stop()


EXAMPLE_ROWS = {
    "penguin-species": {
        "bill_length_mm": 39.1,
        "bill_depth_mm": 18.7,
        "flipper_length_mm": 181,
        "body_mass_g": 3750,
        "island": "Torgersen",
        "sex": "male",
    },
    "diabetes-progression": {
        "age": 59,
        "sex": "2",
        "bmi": 32.1,
        "bp": 101,
        "s1": 157,
        "s2": 93.2,
        "s3": 38,
        "s4": 4,
        "s5": 4.86,
        "s6": 87,
    },
}


def serve_fleet(specs_dir: Path, settings: Settings) -> tuple[str, str]:
    """Step 4: serve the fleet with a fresh admin key and show it answering."""
    import httpx

    from mlfleet.serving import deploy
    from mlfleet.serving.auth import ApiKey, digest, new_key

    key = new_key()
    entry = ApiKey.model_validate(
        {"name": "quickstart", "sha256": digest(key), "scopes": ["predict", "admin"]}
    )
    settings = settings.model_copy(update={"api_keys": [*settings.api_keys, entry]})
    key_file = settings.home / "quickstart-api-key.txt"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    say("\n== 4. serve the fleet behind one gateway (a local Ray head that stays up)\n")
    url = deploy.up(settings, specs_dir, notify=say).url
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, timeout=120, headers=headers) as client:
        for name, row in EXAMPLE_ROWS.items():
            body = client.post(f"/v1/models/{name}/predict", json={"instances": [row]}).json()
            say(f"  {name} v{body.get('version')}: {body.get('predictions')}")
    example = json.dumps({"instances": [EXAMPLE_ROWS["penguin-species"]]})
    bs = "\\"
    say(
        f"""
The fleet is up at {url} (OpenAPI docs: {url}/docs). Your API key (also in {key_file}):

  export MLFLEET_KEY={key}
  curl -s -X POST {url}/v1/models/penguin-species/predict {bs}
       -H "Authorization: Bearer $MLFLEET_KEY" -H "Content-Type: application/json" {bs}
       -d '{example}'
  curl -s {url}/v1/models -H "Authorization: Bearer $MLFLEET_KEY"

Stop everything with:  .venv/bin/mlfleet down"""
    )
    return url, key


# --- step 5: the loop -----------------------------------------------------------------------

LOOP_EVALUATE_SECONDS = 5.0
LOOP_TIMEOUT_S = 150.0
SHIFTED_ROWS = 400  # penguins from Biscoe only, drawn with replacement (168 live there)
STEADY_ROWS = 300  # diabetes rows as the training data has them
PER_REQUEST = 20


class AlertReceiver:
    """A webhook receiver on 127.0.0.1 that keeps the alerts whose signature checks out."""

    def __init__(self, server: Any, secret: str) -> None:
        self.server = server
        self.secret = secret
        self.alerts: list[dict[str, Any]] = []
        self.refused = 0

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/alerts"

    @classmethod
    def start(cls) -> AlertReceiver:
        import secrets
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from mlfleet.monitoring.alerts import verify_request

        receiver: AlertReceiver

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ok = verify_request(
                    receiver.secret,
                    body,
                    self.headers.get("X-Mlfleet-Signature"),
                    self.headers.get("X-Mlfleet-Timestamp"),
                )
                if ok:
                    receiver.alerts.append(json.loads(body))
                else:
                    receiver.refused += 1
                self.send_response(204 if ok else 401)
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # the tour prints what matters
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        receiver = cls(server, secrets.token_urlsafe(24))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return receiver

    def stop(self) -> None:
        self.server.shutdown()


def _wait(what: str, check: Callable[[], Any], deadline: float) -> Any:
    """Poll ``check`` (a real condition: the monitor's or the receiver's state) until it
    answers, at most until ``deadline``."""
    import time

    pause = 0.5
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise MlfleetError(f"the quickstart gave up waiting for {what}")
        time.sleep(pause)
        pause = min(pause * 1.5, 3.0)


def _rows(frame: Any) -> list[dict[str, Any]]:
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [{k: v.item() if hasattr(v, "item") else v for k, v in r.items()} for r in records]


def close_the_loop(url: str, key: str, receiver: AlertReceiver) -> None:
    """Step 5: drift, alert, feedback and retraining, end to end on the served fleet."""
    import time

    import httpx
    import pandas as pd

    from examples.demo import penguins

    say("\n== 5. close the loop: live traffic, drift, an alert, feedback, a retrain job\n")
    deadline = time.monotonic() + LOOP_TIMEOUT_S
    every = penguins()
    biscoe = every[every["island"] == "Biscoe"].sample(SHIFTED_ROWS, replace=True, random_state=1)
    # New animals (new ids), so that their labelled rows add to the training data.
    biscoe = biscoe.assign(penguin_id=range(100_001, 100_001 + len(biscoe)))
    species = biscoe.pop("species").str.lower().tolist()
    diabetes = pd.read_csv(Path("specs/diabetes/data/diabetes.csv")).sample(
        STEADY_ROWS, random_state=2
    )
    diabetes = diabetes.drop(columns=["progression"]).assign(sex=lambda d: d["sex"].astype(str))
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
        answers: list[tuple[str, int, Any]] = []
        for name, rows in (
            ("penguin-species", _rows(biscoe)),
            ("diabetes-progression", _rows(diabetes)),
        ):
            for start in range(0, len(rows), PER_REQUEST):
                r = client.post(
                    f"/v1/models/{name}/predict",
                    json={"instances": rows[start : start + PER_REQUEST]},
                )
                r.raise_for_status()
                if name == "penguin-species":
                    body = r.json()
                    answers += [
                        (body["request_id"], i, p) for i, p in enumerate(body["predictions"])
                    ]
        say(
            f"  sent {SHIFTED_ROWS} penguins, all from Biscoe island (the reference has all three "
            f"islands), and {STEADY_ROWS} diabetes rows like the training data"
        )
        right = sum(p == species[k] for k, (_, _, p) in enumerate(answers))
        labels = [
            {"request_id": rid, "row": row, "label": species[k]}
            for k, (rid, row, _) in enumerate(answers)
        ]
        matched = 0
        for start in range(0, len(labels), 100):
            r = client.post(
                "/v1/models/penguin-species/feedback", json={"labels": labels[start : start + 100]}
            )
            r.raise_for_status()
            matched += r.json()["matched"]
        say(
            f"  the true species came back later as feedback: {matched} labels joined "
            f"(accuracy on this stream {right / len(answers):.3f})"
        )

        def status(name: str) -> dict[str, Any]:
            return client.get(f"/v1/monitoring/{name}").json()

        drifted = _wait(
            "the monitor to flag penguin-species",
            lambda: (s := status("penguin-species")).get("status") == "drift" and s,
            deadline,
        )
        features = ", ".join(
            f"{f['name']} ({f['method']} {f['value']:.2f})"
            for f in drifted["detail"]["features"]
            if f["verdict"] == "drift"
        )
        prediction = drifted["detail"]["prediction"]
        say(f"  monitor: penguin-species is DRIFT over {drifted['rows']} rows; drifted: {features}")
        say(f"  predictions drifted too: {prediction['method']} {prediction['value']:.2f}")
        performance = drifted.get("performance") or {}
        estimated = performance.get("estimated_accuracy")
        realised = (performance.get("realised") or {}).get("accuracy")
        if estimated is not None:
            say(
                f"  estimated accuracy before labels {estimated:.3f}"
                + (f", realised from feedback {realised:.3f}" if realised is not None else "")
            )
        steady = status("diabetes-progression")
        say(f"  monitor: diabetes-progression is {steady.get('status', '?').upper()}")

        alert = _wait(
            "the alert at the webhook",
            lambda: next(
                (a for a in receiver.alerts if a["alert"]["model"] == "penguin-species"), None
            ),
            deadline,
        )["alert"]
        say(
            f"  alert received at {receiver.url} (signature verified): {alert['model']} "
            f"{alert['previous_status']} -> {alert['status']}"
        )

        def finished_retrain() -> dict[str, Any] | None:
            last = status("penguin-species").get("last_retrain")
            if last and last.get("job_id") and not announced:
                announced.append(last["job_id"])
                say(f"  sustained drift: retrain job {last['job_id']} submitted ({last['reason']})")
            done = last and last.get("status") in ("succeeded", "failed", "stopped", "lost")
            return last if done else None

        announced: list[str] = []
        retrain = _wait("the retrain job", finished_retrain, deadline + 120)
    result = ((retrain.get("details") or {}).get("job") or {}).get("result") or {}
    if retrain["status"] != "succeeded" or not result:
        say(f"  retrain job {retrain['status']}: {json.dumps(retrain.get('details'))[:300]}")
        sys.exit(1)
    verdict = "promoted to champion" if result.get("promoted") else "stays challenger"
    say(
        f"  retrained: penguin-species version {result.get('version')} {verdict}\n"
        f"  gate: {result.get('decision')}"
    )


def main() -> None:
    """``python -m examples.quickstart``: an mlfleet error ends as one line and its exit code."""
    try:
        run()
    except MlfleetError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
