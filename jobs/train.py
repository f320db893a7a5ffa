"""Ray Job entrypoint: train one model spec on the cluster the job runs on.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/train.py --spec specs/penguins/model.yaml [--dataset-version V] \
        [--extra-source SOURCE ...] [--json]

``--extra-source`` (repeatable) adds a SOURCE to the spec's for this run, e.g. the
model's labelled feedback ``"$MLFLEET_HOME/feedback/NAME/*.parquet"`` (quote globs); it
is what the drift monitor's retrain jobs pass (``mlfleet.monitoring.retrain``).

Exit codes are those of ``mlfleet train`` (0 registered, 1 data failed validation,
2 usage). Ray sets RAY_ADDRESS for job drivers, so mlfleet joins that cluster; MLflow and
datasets go where MLFLEET_HOME / MLFLEET_MLFLOW_TRACKING_URI point (pass them with
``--runtime-env-json '{"env_vars": {...}}'`` when the job should write elsewhere).
"""

from __future__ import annotations

import argparse
import sys

from mlfleet.cli.main import main


def parse(argv: list[str]) -> list[str]:
    """Translate the job's flags to the CLI's arguments."""
    parser = argparse.ArgumentParser(prog="jobs/train.py", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="model spec YAML")
    parser.add_argument("--dataset-version", help="train on this existing dataset version")
    parser.add_argument(
        "--extra-source",
        action="append",
        default=[],
        metavar="SOURCE",
        help="another source validated with the spec's for this run (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    out = ["train", args.spec]
    if args.dataset_version:
        out += ["--dataset-version", args.dataset_version]
    for source in args.extra_source:
        out += ["--extra-source", source]
    if args.json:
        out.append("--json")
    return out


if __name__ == "__main__":
    main(parse(sys.argv[1:]))
