"""``make quickstart``: the user's first tour, end to end on embedded defaults.

Run from the repository root (``python -m examples.quickstart``). It uses the mlfleet
library as a user's own script would:

1. validates the penguins as three messy systems send them (``specs/penguins``),
2. trains every model spec in ``specs/`` on one embedded Ray (Tune search, MLflow registry,
   promotion gate),
3. prints the registry and how to open the MLflow UI,
4. serves the fleet behind one gateway on a local Ray head that stays up, with an API key,
   prints real predictions and curl commands that work as printed (`mlfleet down` stops it).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

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
    serve_fleet(specs_dir, settings)


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


def serve_fleet(specs_dir: Path, settings: Settings) -> None:
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


def main() -> None:
    """``python -m examples.quickstart``: an mlfleet error ends as one line and its exit code."""
    try:
        run()
    except MlfleetError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
