"""What checking one request's rows costs: the batch kernels vs their per-row twin.

The gateway reads a request's values with the contract's one reading. Run through the
pyarrow kernels (the rows of a request as one Arrow batch through ``check_batch``), a
one-row request pays pyarrow's per-call cost on every column; the issue's budget for it is
0.2 ms p50. Above that, the gateway uses ``semantics.RowChecker``, which answers plain
values in Python and sends every other value through the same kernels. This measures, per
example contract and in alternating rounds:

- ``kernels``: ``pa.Table.from_pylist(rows)`` + ``semantics.check_batch`` (what the gateway
  would do with the kernels alone);
- ``row_checker``: ``RowChecker.check`` over the row's features (what it does);
- ``frame``: the gateway's whole ``RowValidator.frame`` (checks plus the model's input frame).

    python benchmarks/bench_request_validation.py [--rounds 3] [--calls 2000]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
from harness import REPO, environment, git_head, median, rounds

from mlfleet.contract import semantics
from mlfleet.contract.schema import Contract, load_contract
from mlfleet.serving.schemas import RowValidator

ROWS: dict[str, dict[str, Any]] = {
    "penguins": {
        "bill_length_mm": 39.1,
        "bill_depth_mm": 18.7,
        "flipper_length_mm": 181,
        "body_mass_g": 3750,
        "island": "torgersen",
        "sex": "male",
    },
    "diabetes": {
        "age": 59,
        "sex": "2",
        "bmi": 32.1,
        "bp": 101.0,
        "s1": 157.0,
        "s2": 93.2,
        "s3": 38.0,
        "s4": 4.0,
        "s5": 4.8598,
        "s6": 87.0,
    },
}


def _features(contract: Contract) -> list[str]:
    skip = {contract.target, *(contract.keys or [])}
    return [c.name for c in contract.columns if c.name not in skip]


def _breast_cancer_row(contract: Contract) -> dict[str, Any]:
    return {name: 1.5 for name in _features(contract)}


def _p50_ms(fn: Callable[[], Any], calls: int) -> float:
    for _ in range(min(200, calls)):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, 200 calls")
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks/results/bench_request_validation.json"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.calls = 1, 200
        args.out = args.out.with_name("bench_request_validation_quick.json")

    cases: dict[str, dict[str, Callable[[], Any]]] = {}
    counts: dict[str, int] = {}
    for name in ("penguins", "diabetes", "breast-cancer"):
        contract = load_contract(REPO / "specs" / name / "contract.yaml")
        row = ROWS.get(name) or _breast_cancer_row(contract)
        features = list(row)
        counts[name] = len(features)
        only = contract.model_copy(update={"columns": [contract.column(f) for f in features]})
        checker = semantics.RowChecker(contract, features)
        validator = RowValidator(contract, features)
        columns = checker.columns

        def kernels(only: Contract = only, row: dict[str, Any] = row) -> Any:
            return semantics.check_batch(pa.Table.from_pylist([row]), only)

        def row_checker(
            checker: semantics.RowChecker = checker, columns: Any = columns, row: Any = row
        ) -> None:
            for col in columns:
                checker.check(col, row.get(col.name))

        def frame(validator: RowValidator = validator, row: dict[str, Any] = row) -> Any:
            return validator.frame([row])

        cases[name] = {"kernels": kernels, "row_checker": row_checker, "frame": frame}

    samples: dict[str, dict[str, list[float]]] = {
        name: {way: [] for way in ways} for name, ways in cases.items()
    }
    for _, way in rounds(["kernels", "row_checker", "frame"], args.rounds):
        for name, ways in cases.items():
            samples[name][way].append(_p50_ms(ways[way], args.calls))

    results: dict[str, Any] = {}
    for name, ways in samples.items():
        results[name] = {
            "features": counts[name],
            **{f"{way}_p50_ms": round(median(values), 4) for way, values in ways.items()},
            "rounds": {way: [round(v, 4) for v in values] for way, values in ways.items()},
        }
        print(
            f"{name:14s} kernels {results[name]['kernels_p50_ms']:.3f} ms  "
            f"row checker {results[name]['row_checker_p50_ms']:.4f} ms  "
            f"whole frame {results[name]['frame_p50_ms']:.3f} ms"
        )
    document = {
        "benchmark": "bench_request_validation",
        "budget_p50_ms": 0.2,
        "results": results,
        "git_head": git_head(),
        "environment": environment(["pyarrow", "pandas", "numpy"]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
