"""``make quickstart``: the user's first tour, end to end on embedded defaults.

1. validates the penguins as three messy systems send them (``specs/penguins``),
2. trains every model spec in ``specs/`` on one embedded Ray (Tune search, MLflow registry,
   promotion gate),
3. prints the registry table and how to open the MLflow UI,
4. serves the fleet behind one gateway on a local Ray head that stays up, with an API key,
   prints real predictions and curl commands that work as printed (`mlfleet down` stops it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mlfleet.cli.main import main as cli
from mlfleet.demo import APP, DB, SQLITE_TABLE, WEB
from mlfleet.settings import Settings


def _run(args: list[str], *, ok: tuple[int, ...] = (0,)) -> None:
    try:
        cli(args)
    except SystemExit as exc:
        code = 0 if exc.code is None else int(exc.code)
        if code not in ok:
            sys.exit(code)


def run(specs_dir: Path = Path("specs")) -> None:
    """Run the quickstart from the repository root."""
    from mlfleet.ray_runtime import prepare_ray_env

    prepare_ray_env()
    from mlfleet.ray_runtime import ensure_ray
    from mlfleet.registry import configure
    from mlfleet.settings import get_settings

    settings = get_settings()
    penguins = specs_dir / "penguins"
    data = penguins / "data"
    sources = [str(data / WEB), str(data / APP), f"sqlite:///{data / DB}?table={SQLITE_TABLE}"]
    print(
        "\n== 1. validate penguins from a website export, an app log and a database\n", flush=True
    )
    ensure_ray(settings)  # one embedded Ray for the whole tour
    _run(["data", "validate", "--contract", str(penguins / "contract.yaml"), *sources])

    specs = sorted(specs_dir.glob("*/model.yaml"))
    print(
        f"\n== 2. train the fleet: {len(specs)} model specs on Ray Tune, tracked in MLflow\n",
        flush=True,
    )
    for spec in specs:
        _run(["train", str(spec)])
        print(flush=True)

    print("== 3. the registry\n", flush=True)
    configure(settings)
    _run(["models", "list"])
    print(
        f"\nBrowse runs, trials and models:  .venv/bin/mlflow ui --backend-store-uri "
        f"{settings.tracking_uri}\n(then open http://127.0.0.1:5000)",
        flush=True,
    )

    import ray

    ray.shutdown()  # the embedded Ray of steps 1-3; serving gets a head that outlives us
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
    print(
        "\n== 4. serve the fleet behind one gateway (a local Ray head that stays up)\n", flush=True
    )
    url = deploy.up(settings, specs_dir, notify=print).url
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, timeout=120, headers=headers) as client:
        for name, row in EXAMPLE_ROWS.items():
            body = client.post(f"/v1/models/{name}/predict", json={"instances": [row]}).json()
            print(f"  {name} v{body.get('version')}: {body.get('predictions')}", flush=True)
    example = json.dumps({"instances": [EXAMPLE_ROWS["penguin-species"]]})
    bs = "\\"
    print(
        f"""
The fleet is up at {url} (OpenAPI docs: {url}/docs). Your API key (also in {key_file}):

  export MLFLEET_KEY={key}
  curl -s -X POST {url}/v1/models/penguin-species/predict {bs}
       -H "Authorization: Bearer $MLFLEET_KEY" -H "Content-Type: application/json" {bs}
       -d '{example}'
  curl -s {url}/v1/models -H "Authorization: Bearer $MLFLEET_KEY"

Stop everything with:  .venv/bin/mlfleet down""",
        flush=True,
    )


if __name__ == "__main__":
    run()
