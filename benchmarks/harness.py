"""What every benchmark measures the same way: a process tree's memory and CPU, the host's
noise, A/B alternation and medians, and the run's environment.

Memory of a process tree (a driver with an embedded Ray: raylet, GCS, workers and agents are
all its descendants; or a detached Ray head and everything it started) is sampled from /proc:

  peak_mb = max over samples of sum_p(RssAnon_p + RssShmem_p)  +  max over samples of
            sum_p(Pss_File_p)

  * RssAnon: private anonymous memory. Ray workers and daemons are exec'd, not forked, so
    their anonymous pages are never shared: summing is exact.
  * RssShmem: the object store (plasma, /dev/shm) pages each process touched. An object
    mapped by two processes is counted twice, so this is an upper bound (tight when only
    small objects go through the store).
  * Shared libraries (libarrow, numpy... mapped by every Ray worker) are counted by PSS
    (Pss_File: each page split among the processes mapping it), read from smaps_rollup on a
    slower tick because it costs ~1.5 ms per process.
  Plain RSS summed over the processes would count every shared library once per worker; it
  is kept as ``rss_sum_peak_mb`` for reference, exact slow-tick PSS as ``pss_peak_slow_mb``.

CPU of the tree is each process's user + system time, last seen by the sampler (keyed by pid
and start time, so a reused pid is a new process): a process that exits loses at most its
last tick. ``foreign_cpu_s`` is what the rest of the host used meanwhile: the machine is
shared, and a run with many foreign seconds measured the neighbours too.

    with TreeMonitor(pid) as monitor:       # samples in a background thread
        monitor.begin()
        ...                                 # the work being measured
        usage = monitor.end()               # Usage: wall, CPU, foreign CPU, peak memory

    proc, usage = run_measured([sys.executable, "child.py"], env=env)
"""

from __future__ import annotations

import contextlib
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]
CPUS = os.cpu_count() or 1
_TICK = os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------------------
# /proc readers
# ----------------------------------------------------------------------------------------


def _proc(pid: int, name: str) -> str | None:
    """The text of /proc/<pid>/<name>, or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/{name}") as fh:
            return fh.read()
    except OSError:
        return None


def _status_kb(pid: int) -> tuple[int, int] | None:
    """(RssAnon + RssShmem, VmRSS) in kB from /proc/<pid>/status."""
    text = _proc(pid, "status")
    if text is None:
        return None
    vals = {"RssAnon:": 0, "RssShmem:": 0, "VmRSS:": 0}
    for line in text.splitlines():
        key = line.split(None, 1)[0] if line else ""
        if key in vals:
            vals[key] = int(line.split()[1])
    return vals["RssAnon:"] + vals["RssShmem:"], vals["VmRSS:"]


def _cpu(pid: int) -> tuple[tuple[int, int], float] | None:
    """((pid, start time), user + system seconds) of one process, its children apart."""
    text = _proc(pid, "stat")
    fields = text.rsplit(")", 1)[-1].split() if text else []
    if len(fields) < 20:
        return None
    return (pid, int(fields[19])), (int(fields[11]) + int(fields[12])) / _TICK


def _pss_kb(pid: int) -> tuple[int, int] | None:
    """(Pss, Pss_File) in kB from /proc/<pid>/smaps_rollup."""
    text = _proc(pid, "smaps_rollup")
    if text is None:
        return None
    pss = pss_file = 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1])
        elif line.startswith("Pss_File:"):
            pss_file = int(line.split()[1])
    return pss, pss_file


def host_busy_cpu_s() -> float:
    """CPU seconds the whole host has spent busy (not idle, not waiting on I/O) since boot."""
    with open("/proc/stat") as fh:
        parts = [float(x) for x in fh.readline().split()[1:9]]
    return (sum(parts) - parts[3] - parts[4]) / _TICK


# ----------------------------------------------------------------------------------------
# Process-tree monitor
# ----------------------------------------------------------------------------------------


@dataclass
class Usage:
    """What a process tree used over one measured window."""

    wall_s: float
    cpu_s: float  # the tree's user + system seconds
    foreign_cpu_s: float  # the rest of the host's, meanwhile
    peak_mb: float  # max sum(RssAnon + RssShmem) + max sum(Pss_File)
    rss_sum_peak_mb: float  # max sum(VmRSS): counts shared libraries once per process
    pss_peak_slow_mb: float  # max sum(Pss), slow tick
    pss_file_mb: float
    processes: int  # the most processes seen at once
    samples: int
    peak_breakdown_mb: dict[str, int] = field(default_factory=dict)  # "name xN": MB at peak

    @property
    def foreign_cpu_frac(self) -> float:
        """Foreign CPU as a share of every core over the window (> ~10%: a noisy run)."""
        return self.foreign_cpu_s / (self.wall_s * CPUS) if self.wall_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}
        out["foreign_cpu_frac"] = round(self.foreign_cpu_frac, 4)
        return out


class TreeMonitor:
    """Samples the memory and CPU of ``root`` and all its descendants in a background thread.

    Args:
        root: The tree's root pid (``os.getpid()`` for this process and its children).
        interval: Seconds between samples (memory, CPU). 50 ms catches short peaks; 0.2 s
            is enough for long runs and steals less from the work being measured.
        slow_every: Every this many samples, PSS too (costly: ~1.5 ms a process).
        refresh_every: Every this many samples, look for new processes in the tree.
    """

    def __init__(
        self, root: int, *, interval: float = 0.05, slow_every: int = 10, refresh_every: int = 5
    ) -> None:
        self.root, self.interval = root, interval
        self.slow_every, self.refresh_every = slow_every, refresh_every
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="tree-monitor")
        self._names: dict[int, str] = {root: "root"}
        self._cpu: dict[tuple[int, int], float] = {}
        self._base: dict[tuple[int, int], float] = {}
        self._tick = 0
        self._start_wall = self._start_host = self._start_self = 0.0
        self._reset()

    def __enter__(self) -> TreeMonitor:
        self.begin()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _reset(self) -> None:
        self._peak_fast = self._peak_pss_file = self._peak_pss = self._peak_rss = 0
        self._peak_procs = self._samples = 0
        self._breakdown: dict[str, list[int]] = {}

    def _refresh(self) -> None:
        import psutil

        try:
            kids = psutil.Process(self.root).children(recursive=True)
        except psutil.NoSuchProcess:
            kids = []
        names = {self.root: "root"}
        for kid in kids:
            with contextlib.suppress(psutil.Error):
                names[kid.pid] = kid.name()
        self._names = names

    def _sample(self, slow: bool) -> None:
        fast = rss = alive = 0
        per: dict[str, list[int]] = {}
        for pid, name in self._names.items():
            status = _status_kb(pid)
            if status is None:
                continue
            fast += status[0]
            rss += status[1]
            alive += 1
            cpu = _cpu(pid)
            if cpu is not None:
                self._cpu[cpu[0]] = cpu[1]
            entry = per.setdefault(name, [0, 0])
            entry[0] += status[0]
            entry[1] += 1
        if fast > self._peak_fast:
            self._peak_fast, self._breakdown = fast, per
        self._peak_rss = max(self._peak_rss, rss)
        self._peak_procs = max(self._peak_procs, alive)
        if slow:
            pss = pss_file = 0
            for pid in self._names:
                both = _pss_kb(pid)
                if both is not None:
                    pss += both[0]
                    pss_file += both[1]
            self._peak_pss = max(self._peak_pss, pss)
            self._peak_pss_file = max(self._peak_pss_file, pss_file)
        self._samples += 1

    def _step(self, force_slow: bool = False) -> None:
        with self._lock:
            if self._tick % self.refresh_every == 0:
                self._refresh()
            self._sample(force_slow or self._tick % self.slow_every == 0)
            self._tick += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._step()

    def begin(self) -> None:
        """Start a measured window: peaks reset, CPU counted from now."""
        with self._lock:
            self._refresh()
            self._sample(slow=True)
            self._base = dict(self._cpu)
            self._reset()
            self._start_wall = time.perf_counter()
            self._start_host = host_busy_cpu_s()
            self._start_self = time.process_time()

    def end(self, *, tree_cpu_at_least: float = 0.0) -> Usage:
        """Close the window (one last sample) and return what the tree used in it.

        Args:
            tree_cpu_at_least: CPU known by other means (e.g. ``RUSAGE_CHILDREN`` of a reaped
                child); the tree's CPU is the larger of it and the sampled figure.
        """
        self._step(force_slow=True)
        with self._lock:
            wall = time.perf_counter() - self._start_wall
            host = host_busy_cpu_s() - self._start_host
            tree = sum(v - self._base.get(k, 0.0) for k, v in self._cpu.items())
            tree = max(tree, tree_cpu_at_least)
            # This process (and its sampler thread) is ours too when it is not in the tree.
            me = 0.0 if self.root == os.getpid() else time.process_time() - self._start_self
            return Usage(
                wall_s=wall,
                cpu_s=tree,
                foreign_cpu_s=max(host - tree - me, 0.0),
                peak_mb=(self._peak_fast + self._peak_pss_file) / 1024,
                rss_sum_peak_mb=self._peak_rss / 1024,
                pss_peak_slow_mb=self._peak_pss / 1024,
                pss_file_mb=self._peak_pss_file / 1024,
                processes=self._peak_procs,
                samples=self._samples,
                peak_breakdown_mb={
                    f"{name} x{n}": round(kb / 1024)
                    for name, (kb, n) in sorted(self._breakdown.items(), key=lambda kv: -kv[1][0])
                },
            )


def run_measured(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    interval: float = 0.05,
    timeout: float | None = None,
) -> tuple[subprocess.CompletedProcess[str], Usage]:
    """Run ``cmd`` to its end with its whole process tree measured; output captured as text.

    The child's CPU is also taken from ``RUSAGE_CHILDREN`` once it is reaped, since Ray's
    workers are often killed before their parent reaps them (the sampled figure then
    misses their last tick, or they never reach the rusage).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(
        list(cmd),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env) if env is not None else None,
        cwd=cwd,
    )
    with TreeMonitor(proc.pid, interval=interval) as monitor:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        reaped = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        usage = monitor.end(tree_cpu_at_least=reaped)
    return subprocess.CompletedProcess(list(cmd), proc.returncode, stdout, stderr), usage


def wait_quiet(threshold: float = 25.0, max_wait: float = 120.0) -> float:
    """Wait (up to ``max_wait`` s) until the host's CPU use over 1 s is below ``threshold`` %.

    Returns the last CPU use seen. The machine is shared: a measurement that starts while
    the cores are busy measures the neighbours as well.
    """
    import psutil

    deadline = time.monotonic() + max_wait
    while True:
        busy = float(psutil.cpu_percent(interval=1.0))
        if busy < threshold or time.monotonic() > deadline:
            return busy
        time.sleep(4.0)


# ----------------------------------------------------------------------------------------
# Alternation and medians
# ----------------------------------------------------------------------------------------


def rounds(contenders: Sequence[T], n: int) -> Iterator[tuple[int, T]]:
    """(round, contender) for rounds 1..n, the contenders in turn within each: A B A B ...

    Alternating spreads slow drifts of the host (page cache, thermal, neighbours) over
    every contender instead of loading them onto whichever ran last.
    """
    for r in range(1, n + 1):
        for contender in contenders:
            yield r, contender


def median(values: Iterable[float]) -> float:
    """The median, NaN for no values."""
    items = list(values)
    return float(statistics.median(items)) if items else float("nan")


def per_round(
    runs: Iterable[Mapping[str, Any]],
    value: str,
    a: str,
    b: str,
    *,
    who: str,
    round_key: str = "round",
) -> list[tuple[float, float]]:
    """(a's value, b's value) for every round in which both ran, in round order.

    A ratio or difference taken within a round (same minute, same host state), then the
    median over rounds, is steadier than a ratio of two medians.
    """
    seen: dict[Any, dict[str, float]] = {}
    for run in runs:
        if run[who] in (a, b):
            seen.setdefault(run[round_key], {})[run[who]] = run[value]
    return [(both[a], both[b]) for _, both in sorted(seen.items()) if a in both and b in both]


# ----------------------------------------------------------------------------------------
# Environment
# ----------------------------------------------------------------------------------------


def git_head() -> str:
    """``<short sha> <subject>`` of the checkout being measured, or ``?``."""
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip()[:100] or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def environment(packages: Iterable[str]) -> dict[str, Any]:
    """When, on what and with which versions a result was measured."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str] = {"python": sys.version.split()[0]}
    for name in packages:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "?"
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "versions": found,
        "cpus": CPUS,
        "git_head": git_head(),
    }
