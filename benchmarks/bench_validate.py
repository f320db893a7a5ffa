"""Side-by-side benchmark: mlfleet's data validation vs pandera (lazy validation, same checks).

Generates a messy 20-column dataset (Parquet and CSV, cached under benchmarks/data/), then
for every (rows, format) runs mlfleet and pandera alternately (A B A B A B). Each measurement
is ONE fresh subprocess (``--one mlfleet|pandera``) so each gets a fresh Ray and fresh memory;
the parent samples the memory of the child's whole process tree (driver + raylet, gcs, Ray
workers, agents: all of them are descendants of an embedded Ray's driver) while it runs.

Timed work (imports excluded on both sides):
  mlfleet  the ``validate()`` call: hash sources, Ray Data pass 1 (read, parse, check, write
           curated + quarantine Parquet), dedup, pass 2 (profile), report/manifest/publish.
           Ray start-up (``ensure_ray``) is timed apart and NOT included; the first Ray Data
           job's worker warm-up is included (that is what a user waits for).
  pandera  pd.read_parquet / pd.read_csv(engine="pyarrow"), parsing + normalisation in
           pandera Parsers, ``schema.validate(df, lazy=True)``, catching SchemaErrors, split
           valid / invalid rows, write valid rows + invalid rows + failure cases to Parquet.

Memory ("whole-run peak", start-up included) is sampled from /proc every ~50 ms:
  peak = max over samples of  sum_p(RssAnon_p + RssShmem_p)  +  max sum_p(Pss_File_p)
  * RssAnon: private anonymous memory. Ray workers and daemons are exec'd (not forked), so
    anonymous pages are never shared between them: summing is exact.
  * RssShmem: Ray's object store (plasma, /dev/shm) pages each process touched. Summing can
    double count an object mapped by two processes, so it is an upper bound; in this pipeline
    only small summaries go through the store, so the bound is tight enough.
  * Shared libraries (libarrow, numpy... mapped by every Ray worker) are counted by PSS
    (Pss_File, each page split among the processes mapping it), read from smaps_rollup on a
    slower ~0.5 s tick because it costs ~1.5 ms per process (reading it every 50 ms for a
    dozen Ray processes would steal ~30% of a core from the run being measured).
  Plain RSS summed over the Ray processes would count every shared library once per worker
  (~40 MB each); it is reported as ``rss_sum_peak`` for reference only. Exact PSS snapshots
  (slow tick) are reported as ``pss_peak_slow``.

Usage:
  python benchmarks/bench_validate.py --quick
  python benchmarks/bench_validate.py --rows 1000000 5000000 --formats parquet csv --repeats 3
  python benchmarks/bench_validate.py --profile --rows 5000000 --formats parquet
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / "data"
RESULTS = HERE / "results" / "bench_validate.json"
MARK = "@@BENCH@@ "

COUNTRIES = ["US", "UK", "DE", "FR", "ES", "IT", "NL", "SE", "PL", "BR"]
EMAIL_RE = r"^[^@\s]+@[^@\s]+$"
REFERRAL_RE = r"^[A-Z]{3}-\d{4}$"

CONTRACT: dict[str, Any] = {
    "name": "bench",
    "keys": ["id"],
    "columns": [
        {"name": "id", "type": "int"},
        {"name": "age", "type": "int", "min": 18, "max": 120, "nullable": True},
        {
            "name": "plan",
            "type": "category",
            "values": ["basic", "pro", "enterprise"],
            "normalize": ["strip", "lower"],
        },
        {"name": "signup_date", "type": "datetime", "formats": ["%Y-%m-%d", "%d/%m/%Y"]},
        {"name": "spend", "type": "float", "min": 0},
        {"name": "email", "type": "str", "pattern": EMAIL_RE, "nullable": True},
        {"name": "churned", "type": "bool"},
        {
            "name": "country",
            "type": "category",
            "values": COUNTRIES,
            "normalize": ["strip", "upper"],
        },
        {
            "name": "device",
            "type": "category",
            "values": ["mobile", "desktop", "tablet"],
            "normalize": ["strip", "lower"],
            "nullable": True,
        },
        {"name": "sessions", "type": "int", "min": 0, "max": 10000},
        {"name": "tenure_months", "type": "int", "min": 0, "max": 600},
        {"name": "score", "type": "float", "min": 0, "max": 1},
        {"name": "discount", "type": "float", "min": 0, "max": 0.9, "nullable": True},
        {
            "name": "last_login",
            "type": "datetime",
            "formats": ["%Y-%m-%d %H:%M:%S"],
            "nullable": True,
        },
        {"name": "referral_code", "type": "str", "pattern": REFERRAL_RE, "nullable": True},
        {"name": "is_premium", "type": "bool"},
        {"name": "support_tickets", "type": "int", "min": 0, "max": 100, "nullable": True},
        {"name": "latitude", "type": "float", "min": -90, "max": 90},
        {"name": "longitude", "type": "float", "min": -180, "max": 180},
        {
            "name": "channel",
            "type": "category",
            "values": ["organic", "paid", "email", "social"],
            "normalize": ["strip", "lower"],
            "nullable": True,
        },
    ],
}


# ----------------------------------------------------------------------------------------
# Data generation (numpy + pyarrow, vectorised, deterministic)
# ----------------------------------------------------------------------------------------


def data_paths(rows: int) -> dict[str, Path]:
    stem = DATA_DIR / f"bench_{rows}"
    return {
        "parquet": stem.with_suffix(".parquet"),
        "csv": stem.with_suffix(".csv"),
        "truth": stem.with_suffix(".truth.json"),
    }


def generate(rows: int, seed: int = 42) -> None:
    """Write bench_<rows>.parquet / .csv / .truth.json (skipped when all exist)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    paths = data_paths(rows)
    if all(p.exists() for p in paths.values()):
        return
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    n = rows
    rng = np.random.default_rng(seed)
    bad = np.zeros(n, dtype=bool)  # rows breaking a rule (duplicates apart)

    def pick(frac: float) -> np.ndarray:
        return rng.random(n) < frac

    def defect(frac: float) -> np.ndarray:
        mask = pick(frac)
        bad[mask] = True
        return mask

    def from_pool(pool: list[str | None], weights: list[float] | None = None) -> pa.Array:
        p = None if weights is None else np.asarray(weights) / np.sum(weights)
        idx = rng.choice(len(pool), size=n, p=p)
        return pa.array(pool, pa.string()).take(pa.array(idx))

    def put(arr: pa.Array, mask: np.ndarray, value: Any) -> pa.Array:
        return pc.if_else(pa.array(mask), pa.scalar(value, arr.type), arr)

    def put_tokens(arr: pa.Array, mask: np.ndarray, tokens: list[str]) -> pa.Array:
        """Replace masked values by null-ish text tokens (CSV / text columns)."""
        tok = pa.array(tokens, pa.string()).take(pa.array(rng.integers(0, len(tokens), n)))
        return pc.if_else(pa.array(mask), tok, arr)

    def ints(values: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
        return pa.array(values.astype(np.int64), mask=null)

    def floats(values: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
        return pa.array(values.astype(np.float64), mask=null)

    text_tokens = ["", "NA", "null", "N/A", "none"]
    typed: dict[str, pa.Array] = {}  # Parquet columns
    text: dict[str, pa.Array] = {}  # CSV columns (all text)

    # id with ~0.5% duplicates, each repeating an earlier, non-duplicate row's id.
    ids = np.arange(1, n + 1, dtype=np.int64)
    dup = pick(0.005)
    dup[0] = False
    pos = np.nonzero(dup)[0]
    firsts = np.nonzero(~dup)[0]
    k = np.searchsorted(firsts, pos)
    ids[pos] = ids[firsts[(rng.random(pos.size) * k).astype(np.int64)]]
    typed["id"] = ints(ids)

    age = rng.integers(18, 91, n)
    age_bad = defect(0.003)
    age[age_bad] = rng.choice([5, 12, 150, 200], size=int(age_bad.sum()))
    age_null = pick(0.02) & ~age_bad
    typed["age"] = ints(age, age_null)

    plan_pool = [
        "basic",
        "pro",
        "enterprise",
        "Basic",
        " pro",
        "PRO ",
        "Enterprise",
        "  ENTERPRISE",
        "basic ",
        "Pro",
    ]
    plan = from_pool(plan_pool, [25, 20, 10, 8, 8, 8, 6, 5, 5, 5])
    typed["plan"] = put(plan, defect(0.002), "premium")

    days = rng.integers(0, 3650, n)
    ts = pa.array((np.datetime64("2015-01-01") + days).astype("datetime64[s]"))
    iso = pc.strftime(ts, format="%Y-%m-%d")
    eu = pc.strftime(ts, format="%d/%m/%Y")
    signup = pc.if_else(pa.array(pick(0.5)), iso, eu)
    signup = put(signup, defect(0.0005), "2021-13-45")
    typed["signup_date"] = put(signup, defect(0.0005), "soon")

    spend = np.round(rng.gamma(2.0, 50.0, n), 2)
    spend_neg = defect(0.002)
    spend[spend_neg] = -spend[spend_neg] - 1
    typed["spend"] = floats(spend, defect(0.001))

    id_text = typed["id"].cast(pa.string())
    domains = from_pool(["example.com", "mail.org", "corp.net", "uni.edu"])
    good_mail = pc.binary_join_element_wise("user", id_text, "@", domains, "")
    bad_mail = pc.binary_join_element_wise("user", id_text, " at ", domains, "")
    email_bad = defect(0.002)
    email = pc.if_else(pa.array(email_bad), bad_mail, good_mail)
    email = put(email, pick(0.03) & ~email_bad, None)
    typed["email"] = put_tokens(email, pick(0.005) & ~email_bad, ["N/A", "null", ""])

    churned = from_pool(["true", "false", "True", "FALSE", "1", "0", "yes", "no", "Yes", "No"])
    churned = put(churned, defect(0.001), "maybe")
    typed["churned"] = put(churned, defect(0.0005), None)

    country_pool = [*COUNTRIES, "us", " uk", "de ", "Fr"]
    country = from_pool(country_pool, [10] * len(COUNTRIES) + [3, 3, 3, 3])
    typed["country"] = put(country, defect(0.001), "XX")

    device = from_pool(
        ["mobile", "desktop", "tablet", "Mobile ", " DESKTOP", None, "N/A"],
        [30, 30, 10, 5, 5, 5, 2],
    )
    typed["device"] = put(device, defect(0.001), "watch")

    sessions = rng.poisson(40, n)
    sessions[defect(0.0005)] = 20000
    csv_bad_sessions = defect(0.001)  # CSV: "12x" (unparsable); Parquet: null (missing)
    typed["sessions"] = ints(sessions, csv_bad_sessions)

    tenure = rng.integers(0, 121, n)
    tenure[defect(0.001)] = -1
    typed["tenure_months"] = ints(tenure)

    score = np.round(rng.random(n), 4)
    score[defect(0.0005)] = 1.5
    csv_bad_score = defect(0.001)  # CSV: "abc"; Parquet: null
    typed["score"] = floats(score, csv_bad_score)

    discount = np.round(rng.random(n) * 0.5, 2)
    discount[defect(0.001)] = 0.95
    typed["discount"] = floats(discount, pick(0.3) & ~bad)

    login = np.datetime64("2023-01-01T00:00:00") + rng.integers(0, 3 * 365 * 86400, n)
    typed["last_login"] = pa.array(login.astype("datetime64[s]"), mask=pick(0.05))

    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    codes = [
        "".join(letters[rng.integers(0, 26, 3)]) + f"-{rng.integers(0, 10000):04d}"
        for _ in range(5000)
    ]
    ref = from_pool(codes)
    ref = put(ref, pick(0.6), None)
    typed["referral_code"] = put(ref, defect(0.001), "ab-12")

    typed["is_premium"] = pa.array(rng.random(n) < 0.2, mask=defect(0.0005))

    tickets = rng.poisson(2, n)
    tickets[defect(0.0005)] = 150
    typed["support_tickets"] = ints(tickets, pick(0.1) & ~bad)

    lat = np.round(rng.uniform(-60, 70, n), 5)
    lat[defect(0.0005)] = 95.0
    typed["latitude"] = floats(lat)
    lon = np.round(rng.uniform(-180, 180, n), 5)
    lon[defect(0.0005)] = np.nan  # NaN means missing on both sides
    typed["longitude"] = floats(lon)

    channel = from_pool(
        ["organic", "paid", "email", "social", " Paid", "ORGANIC ", None, "null"],
        [30, 20, 15, 10, 5, 5, 10, 5],
    )
    typed["channel"] = put(channel, defect(0.001), "tv")

    names = [c["name"] for c in CONTRACT["columns"]]
    table = pa.table({name: typed[name] for name in names})
    pq.write_table(table, paths["parquet"])

    # CSV: everything as text; numeric nulls as assorted null tokens; CSV-only defects.
    for name in names:
        arr = table.column(name).combine_chunks()
        if pa.types.is_timestamp(arr.type):
            txt = pc.strftime(arr, format="%Y-%m-%d %H:%M:%S")
        elif pa.types.is_boolean(arr.type):
            txt = pc.if_else(arr, "true", "false")
        elif pa.types.is_floating(arr.type):
            txt = pc.if_else(pc.is_nan(arr), pa.scalar("NaN"), arr.cast(pa.string()))
        else:
            txt = arr.cast(pa.string())
        if not pa.types.is_string(arr.type):
            txt = put_tokens(txt, pc.is_null(txt).to_numpy(zero_copy_only=False), text_tokens)
        text[name] = txt
    text["sessions"] = put(text["sessions"], csv_bad_sessions, "12x")
    text["score"] = put(text["score"], csv_bad_score, "abc")
    pacsv.write_csv(pa.table(text), paths["csv"])

    # Ground truth: rule-breaking rows, and duplicates under both semantics.
    id_series = pd.Series(ids)
    dup_all = int(id_series.duplicated(keep="first").sum())
    dup_valid = int(id_series[~bad].duplicated(keep="first").sum())
    truth = {
        "rows": n,
        "rule_defect_rows": int(bad.sum()),
        "duplicate_rows_any": dup_all,
        "rejected_expected_mlfleet": int(bad.sum()) + dup_valid,
        "rejected_expected_pandera": int((bad | id_series.duplicated().to_numpy()).sum()),
    }
    paths["truth"].write_text(json.dumps(truth, indent=2))
    sizes = {k: f"{p.stat().st_size / 2**20:.0f} MB" for k, p in paths.items() if k != "truth"}
    print(f"generated {n:,} rows in {time.perf_counter() - t0:.1f}s: {sizes}; {truth}", flush=True)


# ----------------------------------------------------------------------------------------
# pandera peer (what a user would write)
# ----------------------------------------------------------------------------------------

NULL_TOKENS = ["", "na", "n/a", "null", "none", "nan"]
BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def build_pandera_schema() -> Any:
    import pandas as pd
    import pandera.pandas as pa

    def text(s: pd.Series, case: str | None = None, strip: bool = True) -> pd.Series:
        t = s if s.dtype == "str" else s.astype("str")
        if strip:
            t = t.str.strip()
        if case == "lower":
            t = t.str.lower()
        elif case == "upper":
            t = t.str.upper()
        low = t.str.strip().str.lower() if case != "lower" or not strip else t
        return t.mask(low.isin(NULL_TOKENS))

    def to_int(s: pd.Series) -> pd.Series:
        if pd.api.types.is_integer_dtype(s):
            return s.astype("Int64")
        x = s if pd.api.types.is_numeric_dtype(s) else pd.to_numeric(text(s), errors="coerce")
        return x.where(x == x.round()).astype("Int64")

    def to_float(s: pd.Series) -> pd.Series:
        if pd.api.types.is_numeric_dtype(s):
            return s.astype("float64")
        return pd.to_numeric(text(s), errors="coerce").astype("float64")

    def to_bool(s: pd.Series) -> pd.Series:
        if pd.api.types.is_bool_dtype(s):
            return s.astype("boolean")
        return text(s, "lower").map(BOOLS).astype("boolean")

    def to_datetime(*formats: str) -> Any:
        def parse(s: pd.Series) -> pd.Series:
            if pd.api.types.is_datetime64_any_dtype(s):
                return s.astype("datetime64[us]")
            t = text(s)
            out = pd.to_datetime(t, format=formats[0], errors="coerce")
            for fmt in formats[1:]:
                out = out.fillna(pd.to_datetime(t, format=fmt, errors="coerce"))
            return out.astype("datetime64[us]")

        return parse

    def cat(case: str) -> Any:
        return lambda s: text(s, case)

    def raw_str(s: pd.Series) -> pd.Series:  # a str column: no strip, blanks and tokens are null
        return text(s, strip=False)

    P, C = pa.Parser, pa.Check

    def col(
        dtype: str, parser: Any, checks: list[Any] | None = None, nullable: bool = False, **kw: Any
    ) -> Any:
        return pa.Column(dtype, parsers=P(parser), checks=checks or [], nullable=nullable, **kw)

    return pa.DataFrameSchema(
        {
            "id": col("Int64", to_int, unique=True, report_duplicates="exclude_first"),
            "age": col("Int64", to_int, [C.in_range(18, 120)], nullable=True),
            "plan": col("str", cat("lower"), [C.isin(["basic", "pro", "enterprise"])]),
            "signup_date": col("datetime64[us]", to_datetime("%Y-%m-%d", "%d/%m/%Y")),
            "spend": col("float64", to_float, [C.ge(0)]),
            "email": col("str", raw_str, [C.str_matches(EMAIL_RE)], nullable=True),
            "churned": col("boolean", to_bool),
            "country": col("str", cat("upper"), [C.isin(COUNTRIES)]),
            "device": col(
                "str", cat("lower"), [C.isin(["mobile", "desktop", "tablet"])], nullable=True
            ),
            "sessions": col("Int64", to_int, [C.in_range(0, 10000)]),
            "tenure_months": col("Int64", to_int, [C.in_range(0, 600)]),
            "score": col("float64", to_float, [C.in_range(0, 1)]),
            "discount": col("float64", to_float, [C.in_range(0, 0.9)], nullable=True),
            "last_login": col("datetime64[us]", to_datetime("%Y-%m-%d %H:%M:%S"), nullable=True),
            "referral_code": col("str", raw_str, [C.str_matches(REFERRAL_RE)], nullable=True),
            "is_premium": col("boolean", to_bool),
            "support_tickets": col("Int64", to_int, [C.in_range(0, 100)], nullable=True),
            "latitude": col("float64", to_float, [C.in_range(-90, 90)]),
            "longitude": col("float64", to_float, [C.in_range(-180, 180)]),
            "channel": col(
                "str", cat("lower"), [C.isin(["organic", "paid", "email", "social"])], nullable=True
            ),
        },
        strict=True,
    )


def run_pandera(path: Path, work: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    import numpy as np
    import pandas as pd
    from pandera.errors import SchemaErrors

    schema = build_pandera_schema()
    t_import = time.perf_counter() - t0

    t = time.perf_counter()
    df = pd.read_csv(path, engine="pyarrow") if path.suffix == ".csv" else pd.read_parquet(path)
    t_read = time.perf_counter() - t

    t = time.perf_counter()
    failure_cases = None
    try:
        out = schema.validate(df, lazy=True)
    except SchemaErrors as exc:
        out, failure_cases = exc.data, exc.failure_cases
    t_validate = time.perf_counter() - t

    t = time.perf_counter()
    keep = np.ones(len(out), dtype=bool)
    unlocated = 0
    by_check: dict[str, int] = {}
    if failure_cases is not None:
        located = failure_cases["index"].notna()
        unlocated = int((~located).sum())
        keep[failure_cases.loc[located, "index"].astype("int64").unique()] = False
        by_check = {
            f"{c}:{k}": int(v)
            for (c, k), v in failure_cases.groupby(["column", "check"]).size().items()
        }
    valid, invalid = out[keep], df[~keep]
    t_split = time.perf_counter() - t

    t = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    valid.to_parquet(work / "valid.parquet", index=False)
    invalid.astype("str").to_parquet(work / "invalid.parquet")
    if failure_cases is not None:
        failure_cases.astype("str").to_parquet(work / "failure_cases.parquet")
    t_write = time.perf_counter() - t
    total = t_read + t_validate + t_split + t_write
    return {
        "side": "pandera",
        "time_s": total,
        "import_s": t_import,
        "phases": {
            "read": t_read,
            "parse+validate": t_validate,
            "split": t_split,
            "write": t_write,
        },
        "rows_in": len(df),
        "rows_valid": len(valid),
        "rows_rejected": int((~keep).sum()),
        "failure_cases_unlocated": unlocated,
        "failures": by_check,
    }


# ----------------------------------------------------------------------------------------
# mlfleet side
# ----------------------------------------------------------------------------------------


def _instrument_driver(marks: dict[str, float], stash: dict[str, Any]) -> None:
    """Timestamp validate()'s phases by wrapping module functions (the library is untouched)."""
    import mlfleet.data.profile as profile_mod
    import mlfleet.data.validate as V
    import mlfleet.data.versions as versions_mod

    def wrap(owner: Any, name: str, key: str, keep_args: bool = False) -> None:
        orig = getattr(owner, name, None)
        if orig is None:  # the library moves on; phases then read as NaN
            return

        def timed(*args: Any, **kwargs: Any) -> Any:
            marks[f"{key}_start"] = time.perf_counter()
            marks[f"cpu_{key}_start"] = time.process_time()
            if keep_args:
                stash[key] = args
            try:
                return orig(*args, **kwargs)
            finally:
                marks[f"{key}_end"] = time.perf_counter()
                marks[f"cpu_{key}_end"] = time.process_time()

        setattr(owner, name, timed)

    wrap(V, "hash_sources", "hash")
    wrap(V, "_run", "run")
    wrap(V, "_drop_duplicates", "dedup", keep_args=True)
    wrap(profile_mod, "profile_document", "report")
    wrap(versions_mod, "publish", "publish")


def _profiled_validate_batch(batch: Any, **kwargs: Any) -> Any:
    """Runs in Ray workers (--profile): CPU time of the parts of one pass-1 batch.

    CPU time (process_time, all threads of the worker) rather than wall time, so a busy
    host inflates the numbers less.
    """
    import pickle
    import time as _t

    import pyarrow.parquet as PQ

    import mlfleet.contract.semantics as R
    import mlfleet.data.dedup as D
    import mlfleet.data.profile as Pm
    import mlfleet.data.validate as V

    timers: dict[str, float] = getattr(V, "_bench_timers", None) or {}
    if not getattr(V, "_bench_patched", False):
        V._bench_timers = timers

        def wrap(owner: Any, name: str, key: str) -> None:
            orig = getattr(owner, name, None)
            if orig is None:
                return

            def timed(*a: Any, **kw: Any) -> Any:
                t = _t.process_time()
                try:
                    return orig(*a, **kw)
                finally:
                    V._bench_timers[key] = V._bench_timers.get(key, 0.0) + _t.process_time() - t

            setattr(owner, name, timed)

        wrap(R, "check_batch", "check_batch")
        wrap(R, "quarantine_rows", "quarantine_rows")
        wrap(PQ, "write_table", "write_parquet")
        wrap(D, "key_hashes", "key_hashes")
        wrap(Pm, "column_partial", "sketches")
        V._bench_patched = True
    V._bench_timers.clear()
    t_in, c_in = _t.time(), _t.process_time()
    out = V.validate_batch(batch, **kwargs)
    t_out, c_out = _t.time(), _t.process_time()
    summary = pickle.loads(out.column("summary")[0].as_py())
    summary.bench = {
        "pid": os.getpid(),
        "enter": t_in,
        "exit": t_out,
        "cpu_enter": c_in,
        "cpu_exit": c_out,
        **dict(V._bench_timers),
    }
    return V._pack(summary)


def run_mlfleet(path: Path, work: Path, profile: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    import mlfleet.ray_runtime as runtime

    if hasattr(runtime, "prepare_ray_env"):  # what mlfleet's CLI does before importing ray
        runtime.prepare_ray_env()
    import ray

    import mlfleet.data.validate as V
    from mlfleet.contract.schema import parse_contract
    from mlfleet.ray_runtime import ensure_ray
    from mlfleet.settings import get_settings

    contract = parse_contract(CONTRACT)
    settings = get_settings(home=str(work / "home"), ray_num_cpus=2)
    t_import = time.perf_counter() - t0

    t = time.perf_counter()
    ensure_ray(settings)
    t_ray = time.perf_counter() - t
    what_if = os.environ.get("BENCH_RAY_READ_MIN_BLOCKS")
    if what_if:  # diagnostic only (see README): Ray Data splits reads into >= N blocks
        from ray.data import DataContext

        DataContext.get_current().read_op_min_num_blocks = int(what_if)

    marks: dict[str, float] = {}
    stash: dict[str, Any] = {}
    _instrument_driver(marks, stash)
    if profile:
        V.validate_batch = _profiled_validate_batch  # type: ignore[assignment]

    t = time.perf_counter()
    result = V.validate(contract, [str(path)], settings, max_quarantine_fraction=1.0)
    t_validate = time.perf_counter() - t
    t_end = t + t_validate

    def span(a: str, b: str) -> float:
        return marks[b] - marks[a] if a in marks and b in marks else float("nan")

    marks["validate_start"] = t
    marks["validate_end"] = t_end
    # pass1 = Ray Data read + check + write; dedup = _drop_duplicates (driver + file
    # rewrites); profile = from dedup to the profile document (older versions of the library:
    # a second Ray Data pass over the curated files; newer: merging per-batch statistics).
    phases = {
        "hash_sources": span("hash_start", "hash_end"),
        "pass1 (read+check+write)": span("run_start", "dedup_start"),
        "dedup": span("dedup_start", "dedup_end"),
        "profile (pass2/merge)": span("dedup_end", "report_start"),
        "report+publish": span("report_start", "run_end"),
        "other": t_validate - span("hash_start", "hash_end") - span("run_start", "run_end"),
    }
    m = result.manifest
    out: dict[str, Any] = {
        "side": "mlfleet",
        "time_s": t_validate,
        "import_s": t_import,
        "ray_start_s": t_ray,
        "phases": phases,
        "rows_in": m.rows_in,
        "rows_valid": m.rows_valid,
        "rows_rejected": m.rows_quarantined,
        "failures": dict(m.reasons),
        "reused": result.reused,
    }
    if profile and "dedup" in stash:
        summaries = stash["dedup"][1]
        benches = [s.bench for s in summaries if hasattr(s, "bench")]
        agg: dict[str, float] = {}
        for b in benches:
            for key, val in b.items():
                if key not in ("pid", "enter", "exit", "cpu_enter", "cpu_exit"):
                    agg[key] = agg.get(key, 0.0) + val
        agg["validate_batch_total"] = sum(b["cpu_exit"] - b["cpu_enter"] for b in benches)
        # Between two batches of one worker (fused Read->MapBatches): reading the next
        # block plus Ray Data's per-block work (CPU and wall).
        gaps = gaps_cpu = 0.0
        by_pid: dict[int, list[dict[str, float]]] = {}
        for b in benches:
            by_pid.setdefault(int(b["pid"]), []).append(b)
        for items in by_pid.values():
            items.sort(key=lambda b: b["enter"])
            gaps += sum(
                max(0.0, nxt["enter"] - cur["exit"]) for cur, nxt in itertools.pairwise(items)
            )
            gaps_cpu += sum(
                max(0.0, nxt["cpu_enter"] - cur["cpu_exit"])
                for cur, nxt in itertools.pairwise(items)
            )
        agg["between_batches_cpu (read + Ray Data)"] = gaps_cpu
        agg["between_batches_wall"] = gaps
        agg["driver_cpu_pass1"] = marks["cpu_dedup_start"] - marks["cpu_run_start"]
        agg["driver_cpu_dedup"] = marks["cpu_dedup_end"] - marks["cpu_dedup_start"]
        out["worker_profile"] = {
            "batches": len(benches),
            "workers": len(by_pid),
            "cpu_seconds": agg,
        }
    t = time.perf_counter()
    ray.shutdown()
    out["ray_shutdown_s"] = time.perf_counter() - t
    return out


# ----------------------------------------------------------------------------------------
# Parent: one subprocess per measurement, memory of its whole process tree
# ----------------------------------------------------------------------------------------


def _status_kb(pid: int) -> tuple[int, int, int, int] | None:
    """(RssAnon, RssShmem, RssFile, VmRSS) in kB from /proc/<pid>/status."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            text = fh.read()
    except OSError:
        return None
    vals = {"RssAnon:": 0, "RssShmem:": 0, "RssFile:": 0, "VmRSS:": 0}
    for line in text.splitlines():
        key = line.split(None, 1)[0] if line else ""
        if key in vals:
            vals[key] = int(line.split()[1])
    return vals["RssAnon:"], vals["RssShmem:"], vals["RssFile:"], vals["VmRSS:"]


def _cpu_ticks(pid: int) -> int | None:
    """utime + stime of one process (not its children) in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[11]) + int(fields[12])


def _pss_kb(pid: int) -> tuple[int, int] | None:
    """(Pss, Pss_File) in kB from /proc/<pid>/smaps_rollup."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            text = fh.read()
    except OSError:
        return None
    pss = pss_file = 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1])
        elif line.startswith("Pss_File:"):
            pss_file = int(line.split()[1])
    return pss, pss_file


class TreeSampler(threading.Thread):
    def __init__(self, root: int, interval: float = 0.05, slow_every: int = 10) -> None:
        super().__init__(daemon=True)
        self.root, self.interval, self.slow_every = root, interval, slow_every
        self.stop = threading.Event()
        self.peak_fast_kb = 0  # sum(RssAnon + RssShmem)
        self.peak_pss_file_kb = 0  # sum(Pss_File), slow tick
        self.peak_pss_slow_kb = 0  # sum(Pss), slow tick
        self.peak_rss_sum_kb = 0  # sum(VmRSS): double counts shared libraries
        self.peak_procs = 0
        self.peak_breakdown: dict[str, list[int]] = {}
        self.samples = 0
        self.cpu_ticks: dict[int, int] = {}  # last seen utime+stime of every tree process

    @property
    def tree_cpu_s(self) -> float:
        return sum(self.cpu_ticks.values()) / os.sysconf("SC_CLK_TCK")

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.root)
        except psutil.NoSuchProcess:
            return
        pids: dict[int, str] = {self.root: "driver"}
        tick = 0
        while not self.stop.is_set():
            if tick % 5 == 0:  # refresh the tree every ~250 ms (new Ray workers)
                try:
                    kids = root.children(recursive=True)
                except psutil.NoSuchProcess:
                    break
                pids = {self.root: "driver"}
                for k in kids:
                    with contextlib.suppress(psutil.Error):
                        pids[k.pid] = k.name()
            fast = rss = 0
            per: dict[str, list[int]] = {}
            for pid, name in pids.items():
                st = _status_kb(pid)
                if st is None:
                    continue
                fast += st[0] + st[1]
                rss += st[3]
                ticks = _cpu_ticks(pid)
                if ticks is not None:
                    self.cpu_ticks[pid] = ticks
                entry = per.setdefault(name, [0, 0])
                entry[0] += st[0] + st[1]
                entry[1] += 1
            if fast > self.peak_fast_kb:
                self.peak_fast_kb = fast
                self.peak_breakdown = per
            self.peak_rss_sum_kb = max(self.peak_rss_sum_kb, rss)
            self.peak_procs = max(self.peak_procs, len(pids))
            if tick % self.slow_every == 0:
                pss = pss_file = 0
                for pid in pids:
                    v = _pss_kb(pid)
                    if v is not None:
                        pss += v[0]
                        pss_file += v[1]
                self.peak_pss_file_kb = max(self.peak_pss_file_kb, pss_file)
                self.peak_pss_slow_kb = max(self.peak_pss_slow_kb, pss)
            self.samples += 1
            tick += 1
            self.stop.wait(self.interval)

    @property
    def peak_mb(self) -> float:
        return (self.peak_fast_kb + self.peak_pss_file_kb) / 1024


def mlfleet_source_sha() -> str:
    """Hash of the validation code: other people may commit while a long run goes on."""
    import hashlib

    root = HERE.parent / "platform" / "mlfleet"
    digest = hashlib.sha256()
    files = [*sorted((root / "data").rglob("*.py")), root / "ray_runtime.py", root / "settings.py"]
    for f in files:
        if f.exists():
            digest.update(f.read_bytes())
    return digest.hexdigest()[:12]


def _busy_cpu_s() -> float:
    import psutil

    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def wait_quiet(threshold: float = 25.0, max_wait: float = 120.0) -> float:
    """Wait (up to max_wait s) until the host's CPU use over 1 s is below threshold %.

    The machine is shared (other sessions run test suites with Ray); a benchmark run that
    starts while the 2 cores are busy measures the neighbours, not mlfleet or pandera.
    """
    import psutil

    deadline = time.monotonic() + max_wait
    while True:
        busy = psutil.cpu_percent(interval=1.0)
        if busy < threshold or time.monotonic() > deadline:
            return busy
        time.sleep(4.0)


def measure(
    side: str,
    path: Path,
    *,
    profile: bool = False,
    interval: float = 0.05,
    quiet: bool = True,
    max_wait: float = 120.0,
) -> dict[str, Any]:
    work_root = DATA_DIR / "runs"
    work_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{side}-", dir=work_root))
    # A private, short Ray temp dir per run (unix socket paths must stay < 108 bytes).
    ray_tmp = Path(tempfile.mkdtemp(prefix="rbv", dir="/tmp"))
    env = dict(os.environ, RAY_TMPDIR=str(ray_tmp), PYTHONUNBUFFERED="1")
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--one",
        side,
        "--file",
        str(path),
        "--work",
        str(work),
    ] + (["--profile"] if profile else [])
    import resource

    host_busy_before = wait_quiet(max_wait=max_wait) if quiet else float("nan")
    load = os.getloadavg()[0]
    busy0 = _busy_cpu_s()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    me0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    sampler = TreeSampler(proc.pid, interval=interval)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    me1 = resource.getrusage(resource.RUSAGE_SELF)
    ours = (
        ru1.ru_utime
        + ru1.ru_stime
        - ru0.ru_utime
        - ru0.ru_stime
        + me1.ru_utime
        + me1.ru_stime
        - me0.ru_utime
        - me0.ru_stime
    )
    # Ray's workers are often not reaped by their parent (raylet is killed first), so their
    # CPU never reaches RUSAGE_CHILDREN: take the larger of it and the sampled tree CPU.
    ours = max(ours, sampler.tree_cpu_s + me1.ru_utime + me1.ru_stime - me0.ru_utime - me0.ru_stime)
    # CPU time the rest of the host used meanwhile; > ~10% of 2 cores x wall = a noisy run.
    foreign_cpu_s = max(0.0, _busy_cpu_s() - busy0 - ours)
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    line = next((ln for ln in stdout.splitlines() if ln.startswith(MARK)), None)
    if proc.returncode != 0 or line is None:
        sys.stderr.write(stdout[-4000:] + "\n" + stderr[-6000:] + "\n")
        raise SystemExit(f"{side} run failed (exit {proc.returncode})")
    res = json.loads(line[len(MARK) :])
    res.update(
        {
            "peak_mem_mb": sampler.peak_mb,
            "pss_peak_slow_mb": sampler.peak_pss_slow_kb / 1024,
            "rss_sum_peak_mb": sampler.peak_rss_sum_kb / 1024,
            "pss_file_mb": sampler.peak_pss_file_kb / 1024,
            "peak_breakdown_mb": {
                f"{k} x{v[1]}": round(v[0] / 1024)
                for k, v in sorted(sampler.peak_breakdown.items(), key=lambda kv: -kv[1][0])
            },
            "processes": sampler.peak_procs,
            "samples": sampler.samples,
            "process_wall_s": wall,
            "loadavg_before": load,
            "host_busy_pct_before": host_busy_before,
            "own_cpu_s": ours,
            "foreign_cpu_s": foreign_cpu_s,
            "foreign_cpu_frac": foreign_cpu_s / (wall * (os.cpu_count() or 1)),
        }
    )
    return res


def _fmt_rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds / 1e3:,.0f}k"


def print_run(rows: int, fmt: str, rep: int, r: dict[str, Any]) -> None:
    extra = f" ray start {r['ray_start_s']:.1f}s" if r["side"] == "mlfleet" else ""
    phases = " ".join(f"{k.split(' ')[0]}={v:.2f}" for k, v in r["phases"].items())
    print(
        f"  {rows:>9,} {fmt:<7} #{rep} {r['side']:<8} {r['time_s']:7.2f}s "
        f"{_fmt_rate(rows, r['time_s']):>6} rows/s  peak {r['peak_mem_mb']:7,.0f} MB "
        f"(pss~{r['pss_peak_slow_mb']:,.0f}, rss-sum {r['rss_sum_peak_mb']:,.0f}, "
        f"{r['processes']} procs)  rejected {r['rows_rejected']:,}{extra}  [{phases}]"
        f"  noise {r['foreign_cpu_frac']:.0%}",
        flush=True,
    )


def summarise(runs: list[dict[str, Any]], truth: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    keys = sorted({(r["rows"], r["format"]) for r in runs}, key=lambda k: (k[0], k[1] != "parquet"))
    for rows, fmt in keys:
        sel = [r for r in runs if r["rows"] == rows and r["format"] == fmt]
        ml = {r["repeat"]: r for r in sel if r["side"] == "mlfleet"}
        pd_ = {r["repeat"]: r for r in sel if r["side"] == "pandera"}
        pairs = sorted(set(ml) & set(pd_))
        med = statistics.median
        row = {
            "rows": rows,
            "format": fmt,
            "repeats": len(pairs),
            "mlfleet_time_s": med(ml[i]["time_s"] for i in pairs),
            "pandera_time_s": med(pd_[i]["time_s"] for i in pairs),
            "mlfleet_peak_mb": med(ml[i]["peak_mem_mb"] for i in pairs),
            "pandera_peak_mb": med(pd_[i]["peak_mem_mb"] for i in pairs),
            "time_ratio_median": med(ml[i]["time_s"] / pd_[i]["time_s"] for i in pairs),
            "mem_ratio_median": med(ml[i]["peak_mem_mb"] / pd_[i]["peak_mem_mb"] for i in pairs),
            "ray_start_s_median": med(ml[i]["ray_start_s"] for i in pairs),
            "noise_mlfleet_median": med(ml[i].get("foreign_cpu_frac", 0.0) for i in pairs),
            "noise_pandera_median": med(pd_[i].get("foreign_cpu_frac", 0.0) for i in pairs),
            "mlfleet_rejected": ml[pairs[0]]["rows_rejected"],
            "pandera_rejected": pd_[pairs[0]]["rows_rejected"],
            "mlfleet_phases_median": {
                k: med(ml[i]["phases"][k] for i in pairs) for k in ml[pairs[0]]["phases"]
            },
            "pandera_phases_median": {
                k: med(pd_[i]["phases"][k] for i in pairs) for k in pd_[pairs[0]]["phases"]
            },
            "expected": truth.get(str(rows), {}),
        }
        row["mlfleet_rows_per_s"] = rows / row["mlfleet_time_s"]
        row["pandera_rows_per_s"] = rows / row["pandera_time_s"]
        row["time_target_met"] = row["time_ratio_median"] <= 2.0
        row["mem_target_met"] = row["mem_ratio_median"] < 1.0
        out.append(row)
    return out


def print_summary(summary: list[dict[str, Any]]) -> None:
    print("\nMedians (time = validation only; mlfleet excludes Ray start-up, shown apart)")
    head = (
        f"{'rows':>9} {'fmt':<7} {'mlfleet s':>9} {'rows/s':>7} {'pandera s':>9} {'rows/s':>7} "
        f"{'t ratio':>7} {'ml MB':>7} {'pd MB':>7} {'m ratio':>7} {'ray up':>6} "
        f"{'rejected ml/pd (expected ml/pd)':>34}  targets"
    )
    print(head)
    print("-" * len(head))
    for s in summary:
        exp = s["expected"]
        expected = (
            (
                f"({exp.get('rejected_expected_mlfleet', '?'):,}/"
                f"{exp.get('rejected_expected_pandera', '?'):,})"
            )
            if exp
            else ""
        )
        print(
            f"{s['rows']:>9,} {s['format']:<7} {s['mlfleet_time_s']:9.2f} "
            f"{s['mlfleet_rows_per_s'] / 1e3:6,.0f}k {s['pandera_time_s']:9.2f} "
            f"{s['pandera_rows_per_s'] / 1e3:6,.0f}k {s['time_ratio_median']:7.2f} "
            f"{s['mlfleet_peak_mb']:7,.0f} {s['pandera_peak_mb']:7,.0f} "
            f"{s['mem_ratio_median']:7.2f} {s['ray_start_s_median']:5.1f}s "
            f"{s['mlfleet_rejected']:>9,}/{s['pandera_rejected']:<9,} {expected:>15}  "
            f"time {'OK' if s['time_target_met'] else 'MISS'}, "
            f"mem {'OK' if s['mem_target_met'] else 'MISS'}"
        )
    print(
        "noise = CPU used by other processes on the host during a run, as a share of "
        "2 cores x wall (median):"
    )
    for s in summary:
        print(
            f"  {s['rows']:>9,} {s['format']:<7} mlfleet {s['noise_mlfleet_median']:.0%}, "
            f"pandera {s['noise_pandera_median']:.0%}"
        )
    print("\nmlfleet phases (median s):")
    for s in summary:
        ph = ", ".join(f"{k} {v:.2f}" for k, v in s["mlfleet_phases_median"].items())
        print(f"  {s['rows']:>9,} {s['format']:<7} {ph}")
    print("pandera phases (median s):")
    for s in summary:
        ph = ", ".join(f"{k} {v:.2f}" for k, v in s["pandera_phases_median"].items())
        print(f"  {s['rows']:>9,} {s['format']:<7} {ph}")
    biggest = max(s["rows"] for s in summary)
    print(
        f"\nTarget at {biggest:,} rows: mlfleet time <= 2x pandera's, peak memory below pandera's"
    )
    for s in summary:
        if s["rows"] == biggest:
            ok = s["time_target_met"] and s["mem_target_met"]
            print(
                f"  {s['format']:<7} time x{s['time_ratio_median']:.2f}, "
                f"memory x{s['mem_ratio_median']:.2f}: {'MET' if ok else 'NOT MET'}"
            )


def versions_info() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for mod in ("ray", "pandas", "pandera", "pyarrow", "numpy"):
        try:
            from importlib.metadata import version

            out[mod] = version(mod)
        except Exception:
            out[mod] = "?"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    ap.add_argument("--formats", nargs="+", choices=["parquet", "csv"], default=["parquet", "csv"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smoke run: 200k rows, 1 repeat")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="one instrumented mlfleet run (largest rows, first format)",
    )
    ap.add_argument("--interval", type=float, default=0.05, help="memory sampling period (s)")
    ap.add_argument(
        "--no-wait",
        action="store_true",
        help="do not wait for a quiet host (CPU < 25%%) before each measurement",
    )
    ap.add_argument(
        "--max-wait",
        type=float,
        default=120.0,
        help="longest wait for a quiet host before a measurement (s)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--one", choices=["mlfleet", "pandera"], help=argparse.SUPPRESS)
    ap.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.one:  # child: one measurement, result as one JSON line
        if args.one == "mlfleet":
            res = run_mlfleet(args.file, args.work, args.profile)
        else:
            res = run_pandera(args.file, args.work)
        import resource

        res["ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(MARK + json.dumps(res), flush=True)
        return

    if args.quick:
        args.rows, args.repeats = [200_000], 1
    if args.out == RESULTS and args.quick:
        args.out = RESULTS.with_name("bench_validate_quick.json")
    for rows in args.rows:
        generate(rows)
    truth = {str(rows): json.loads(data_paths(rows)["truth"].read_text()) for rows in args.rows}

    if args.profile:
        rows, fmt = max(args.rows), args.formats[0]
        res = measure("mlfleet", data_paths(rows)[fmt], profile=True, interval=args.interval)
        print_run(rows, fmt, 1, res)
        print(
            json.dumps(
                {k: res[k] for k in ("phases", "worker_profile", "peak_breakdown_mb")}, indent=2
            )
        )
        return

    head = _git_head()
    print(
        f"versions: {versions_info()}; cpus={os.cpu_count()}; git {head}; "
        f"mlfleet src {mlfleet_source_sha()}",
        flush=True,
    )
    meta = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "versions": versions_info(),
        "cpus": os.cpu_count(),
        "git_head": head,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "time_method": "median of repeats; mlfleet = validate() call (Ray start-up apart), "
        "pandera = read + parse/validate + split + write; imports excluded",
        "memory_method": "max_t sum_p(RssAnon+RssShmem) over the child's process tree "
        "(50 ms) + max sum_p(Pss_File) (smaps_rollup, ~0.5 s)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []

    def save(summary: list[dict[str, Any]] | None = None) -> None:
        # Written after every measurement so an interrupted run keeps what it measured.
        args.out.write_text(json.dumps({**meta, "summary": summary, "runs": runs}, indent=2))

    for rows in args.rows:
        for fmt in args.formats:
            path = data_paths(rows)[fmt]
            for rep in range(1, args.repeats + 1):
                for side in ("mlfleet", "pandera"):  # A B A B A B
                    src_sha = mlfleet_source_sha()
                    res = measure(
                        side,
                        path,
                        interval=args.interval,
                        quiet=not args.no_wait,
                        max_wait=args.max_wait,
                    )
                    res.update({"rows": rows, "format": fmt, "repeat": rep, "mlfleet_src": src_sha})
                    runs.append(res)
                    print_run(rows, fmt, rep, res)
                    save()
    shas = sorted({r["mlfleet_src"] for r in runs})
    if len(shas) > 1:
        print(f"WARNING: mlfleet's code changed during the run ({shas}); see runs[].mlfleet_src")
    summary = summarise(runs, truth)
    print_summary(summary)
    print("\nfailures per rule (first repeat):")
    for rows in args.rows:
        for fmt in args.formats:
            for side in ("mlfleet", "pandera"):
                r = next(
                    x
                    for x in runs
                    if x["rows"] == rows and x["format"] == fmt and x["side"] == side
                )
                print(f"  {rows:>9,} {fmt:<7} {side:<8} {r['failures']}")
    save(summary)
    print(f"\nwrote {args.out}")


def _git_head() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(HERE.parent), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip()[:100]
    except (OSError, subprocess.SubprocessError):
        return "?"


if __name__ == "__main__":
    main()
