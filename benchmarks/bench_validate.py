"""Side-by-side benchmark: mlfleet's data validation vs pandera (lazy validation, same checks).

Generates a messy 20-column dataset (Parquet and CSV, cached under benchmarks/data/), then
for every (rows, format) runs mlfleet and pandera alternately (A B A B A B). Each measurement
is ONE fresh subprocess (``--one mlfleet|pandera``) so each gets a fresh Ray and fresh memory;
the parent samples the memory of the child's whole process tree (driver + raylet, gcs, Ray
workers, agents: all of them are descendants of an embedded Ray's driver) while it runs.

Timed work (imports excluded on both sides):
  mlfleet  the ``validate()`` call: hash sources, the streaming pass (read, parse, check,
           write curated + quarantine Parquet), dedup, profile, report/manifest/publish;
           phases as ``validate()`` reports them itself (``ValidationResult.timings``).
           Ray start-up (``ensure_ray``) is timed apart and NOT included; the first Ray Data
           job's worker warm-up is included (that is what a user waits for).
  pandera  pd.read_parquet / pd.read_csv(engine="pyarrow"), parsing + normalisation in
           pandera Parsers, ``schema.validate(df, lazy=True)``, catching SchemaErrors, split
           valid / invalid rows, write valid rows + invalid rows + failure cases to Parquet.

Memory ("whole-run peak", start-up included) and CPU are those of the child's whole process
tree, sampled every ~50 ms by ``harness.run_measured`` (see harness.py for the method).

Usage:
  python benchmarks/bench_validate.py --quick
  python benchmarks/bench_validate.py --rows 1000000 5000000 --formats parquet csv --repeats 3
  python benchmarks/bench_validate.py --profile --rows 5000000 --formats parquet
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness

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


def run_pandera(path: Path, work: Path, build_schema: Any = None) -> dict[str, Any]:
    """The pandera script: read, parse + validate lazily, split, write (``build_schema``:
    another dataset's schema builder; bench_cli.py runs its plain numeric set through it)."""
    t0 = time.perf_counter()
    import numpy as np
    import pandas as pd
    from pandera.errors import SchemaErrors

    schema = (build_schema or build_pandera_schema)()
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


def run_mlfleet(path: Path, work: Path) -> dict[str, Any]:
    """One ``validate()`` call; its phases are the library's own report (``result.timings``)."""
    t0 = time.perf_counter()
    import mlfleet.ray_runtime as runtime

    runtime.prepare_ray_env()  # what mlfleet's CLI does before importing ray
    import ray

    from mlfleet.contract.schema import parse_contract
    from mlfleet.data.validate import validate
    from mlfleet.settings import get_settings

    contract = parse_contract(CONTRACT)
    settings = get_settings(home=str(work / "home"), ray_num_cpus=2)
    t_import = time.perf_counter() - t0

    t = time.perf_counter()
    runtime.ensure_ray(settings)
    t_ray = time.perf_counter() - t
    what_if = os.environ.get("BENCH_RAY_READ_MIN_BLOCKS")
    if what_if:  # diagnostic only (see README): Ray Data splits reads into >= N blocks
        from ray.data import DataContext

        DataContext.get_current().read_op_min_num_blocks = int(what_if)

    t = time.perf_counter()
    result = validate(contract, [str(path)], settings, max_quarantine_fraction=1.0)
    t_validate = time.perf_counter() - t
    timings = result.timings.to_dict()
    # Ray is already up: its step inside validate() is ~0 (start-up is reported apart).
    phases = {k: v for k, v in timings["wall_s"].items() if k != "total"}
    phases["other"] = t_validate - timings["wall_s"]["total"]
    m = result.manifest
    out: dict[str, Any] = {
        "side": "mlfleet",
        "time_s": t_validate,
        "import_s": t_import,
        "ray_start_s": t_ray,
        "phases": phases,
        "timings": timings,
        "rows_in": m.rows_in,
        "rows_valid": m.rows_valid,
        "rows_rejected": m.rows_quarantined,
        "failures": dict(m.reasons),
        "reused": result.reused,
    }
    t = time.perf_counter()
    ray.shutdown()
    out["ray_shutdown_s"] = time.perf_counter() - t
    return out


# ----------------------------------------------------------------------------------------
# Parent: one subprocess per measurement, memory of its whole process tree (harness.py)
# ----------------------------------------------------------------------------------------


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


def measure(
    side: str,
    path: Path,
    *,
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
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", side]
    cmd += ["--file", str(path), "--work", str(work)]
    host_busy_before = harness.wait_quiet(max_wait=max_wait) if quiet else float("nan")
    load = os.getloadavg()[0]
    proc, usage = harness.run_measured(cmd, env=env, interval=interval)
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)), None)
    if proc.returncode != 0 or line is None:
        sys.stderr.write(proc.stdout[-4000:] + "\n" + proc.stderr[-6000:] + "\n")
        raise SystemExit(f"{side} run failed (exit {proc.returncode})")
    res = json.loads(line[len(MARK) :])
    res.update(usage.as_dict())
    res.update({"loadavg_before": load, "host_busy_pct_before": host_busy_before})
    return res


def _fmt_rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds / 1e3:,.0f}k"


def print_run(rows: int, fmt: str, rep: int, r: dict[str, Any]) -> None:
    extra = f" ray start {r['ray_start_s']:.1f}s" if r["side"] == "mlfleet" else ""
    phases = " ".join(f"{k.split(' ')[0]}={v:.2f}" for k, v in r["phases"].items())
    print(
        f"  {rows:>9,} {fmt:<7} #{rep} {r['side']:<8} {r['time_s']:7.2f}s "
        f"{_fmt_rate(rows, r['time_s']):>6} rows/s  peak {r['peak_mb']:7,.0f} MB "
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

        def pairs(value: str, sel: list[dict[str, Any]] = sel) -> list[tuple[float, float]]:
            return harness.per_round(
                sel, value, "mlfleet", "pandera", who="side", round_key="repeat"
            )

        def both(value: str) -> tuple[float, float]:
            ml, pd_ = zip(*pairs(value), strict=True)
            return harness.median(ml), harness.median(pd_)

        ml_runs = [r for r in sel if r["side"] == "mlfleet"]
        pd_runs = [r for r in sel if r["side"] == "pandera"]
        med = harness.median
        row = {
            "rows": rows,
            "format": fmt,
            "repeats": len(pairs("time_s")),
            "mlfleet_time_s": both("time_s")[0],
            "pandera_time_s": both("time_s")[1],
            "mlfleet_peak_mb": both("peak_mb")[0],
            "pandera_peak_mb": both("peak_mb")[1],
            "mlfleet_cpu_s": both("cpu_s")[0],
            "pandera_cpu_s": both("cpu_s")[1],
            "time_ratio_median": med(a / b for a, b in pairs("time_s")),
            "mem_ratio_median": med(a / b for a, b in pairs("peak_mb")),
            "ray_start_s_median": med(r["ray_start_s"] for r in ml_runs),
            "noise_mlfleet_median": both("foreign_cpu_frac")[0],
            "noise_pandera_median": both("foreign_cpu_frac")[1],
            "mlfleet_rejected": ml_runs[0]["rows_rejected"],
            "pandera_rejected": pd_runs[0]["rows_rejected"],
            "mlfleet_phases_median": {
                k: med(r["phases"][k] for r in ml_runs) for k in ml_runs[0]["phases"]
            },
            "mlfleet_worker_cpu_s_median": {
                k: med(r["timings"]["cpu_s"][k] for r in ml_runs)
                for k in ml_runs[0]["timings"]["cpu_s"]
            },
            "pandera_phases_median": {
                k: med(r["phases"][k] for r in pd_runs) for k in pd_runs[0]["phases"]
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
    print("mlfleet worker CPU per part, summed over batches (median s):")
    for s in summary:
        ph = ", ".join(f"{k} {v:.2f}" for k, v in s["mlfleet_worker_cpu_s_median"].items())
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
        help="one mlfleet run (largest rows, first format): its timings and peak memory by process",
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
            res = run_mlfleet(args.file, args.work)
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
        res = measure("mlfleet", data_paths(rows)[fmt], interval=args.interval)
        print_run(rows, fmt, 1, res)
        print(json.dumps({k: res[k] for k in ("timings", "peak_breakdown_mb")}, indent=2))
        return

    env = harness.environment(["ray", "pandas", "pandera", "pyarrow", "numpy"])
    print(
        f"versions: {env['versions']}; cpus={env['cpus']}; git {env['git_head']}; "
        f"mlfleet src {mlfleet_source_sha()}",
        flush=True,
    )
    meta = {
        **env,
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
            for rep, side in harness.rounds(("mlfleet", "pandera"), args.repeats):
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


if __name__ == "__main__":
    main()
