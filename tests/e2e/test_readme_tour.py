"""The README's tour, run as a newcomer runs it.

Every ``bash`` block between ``<!-- tour:start -->`` and ``<!-- tour:end -->`` is read from
README.md itself and run command by command, in order, in a fresh copy of the project
with an empty ``HOME`` (no Ray token, no ``.mlfleet``): one shell's state (exported
variables) carries from command to command as it would in a terminal. Each command must
exit 0, and what the key ones print or answer is checked. A block right after
``<!-- tour:skip -->`` is not run; the README must say why (a line starting
``Not run by the tour's test:`` between the marker and the block).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlfleet import cluster
from mlfleet.settings import get_settings
from tests.support import REPO
from tests.support.net import free_port

TOUR_START = "<!-- tour:start -->"
TOUR_END = "<!-- tour:end -->"
SKIP = "<!-- tour:skip -->"
SKIP_REASON = "Not run by the tour's test:"
BIN = Path(sys.executable).parent  # the project's .venv/bin: the tour puts it on PATH
COMMAND_TIMEOUT_S = 600


@dataclass
class Block:
    line: int  # 1-based line of the opening fence in README.md
    commands: list[str]
    skipped: bool


@dataclass
class Ran:
    command: str
    stdout: str
    stderr: str
    seconds: float

    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(
                f"{self.command!r} did not print JSON: {self.stdout[-500:]}"
            ) from exc


def shell_commands(lines: list[str]) -> list[str]:
    """The commands of a block: continuation lines joined, blank and comment lines dropped."""
    commands: list[str] = []
    pending = ""
    for raw in lines:
        line = raw.rstrip()
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        commands.append((pending + line).strip())
        pending = ""
    if pending:
        raise ValueError(f"a command ends with a line continuation: {pending!r}")
    return commands


def tour_blocks(readme: str) -> list[Block]:
    """The tour's ``bash`` blocks, in order, marked skipped or not.

    Raises:
        ValueError: the markers are missing or repeated, a skip marker gives no reason or
            marks no block, or a fence is never closed.
    """
    lines = readme.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == TOUR_START]
    ends = [i for i, line in enumerate(lines) if line.strip() == TOUR_END]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise ValueError(f"README needs one {TOUR_START} before one {TOUR_END}")
    blocks: list[Block] = []
    skip_at: int | None = None
    reason = False
    i = starts[0] + 1
    while i < ends[0]:
        line = lines[i].strip()
        if line == SKIP:
            if skip_at is not None:
                raise ValueError(f"README line {skip_at + 1}: {SKIP} marks no block")
            skip_at, reason = i, False
        elif line.startswith(SKIP_REASON):
            reason = True
        elif line.startswith("```"):
            close = next((j for j in range(i + 1, ends[0]) if lines[j].strip() == "```"), None)
            if close is None:
                raise ValueError(f"README line {i + 1}: a fence is not closed inside the tour")
            if line == "```bash":
                if skip_at is not None and not reason:
                    raise ValueError(
                        f"README line {skip_at + 1}: {SKIP} needs a line starting "
                        f"{SKIP_REASON!r} before its block"
                    )
                blocks.append(
                    Block(i + 1, shell_commands(lines[i + 1 : close]), skip_at is not None)
                )
                skip_at = None
            i = close
        i += 1
    if skip_at is not None:
        raise ValueError(f"README line {skip_at + 1}: {SKIP} marks no block")
    return blocks


def test_tour_blocks_are_read_with_their_skips() -> None:
    readme = "\n".join(
        [
            "before",
            "```bash",
            "not in the tour",
            "```",
            TOUR_START,
            "```bash",
            "# a comment",
            "export A=1   # why",
            "",
            "echo one \\",
            "    two",
            "```",
            "```yaml",
            "key: value",
            "```",
            SKIP,
            f"{SKIP_REASON} it serves until stopped.",
            "```bash",
            "serve --forever",
            "```",
            TOUR_END,
        ]
    )
    blocks = tour_blocks(readme)
    assert [(b.commands, b.skipped) for b in blocks] == [
        (["export A=1   # why", "echo one      two"], False),
        (["serve --forever"], True),
    ]
    no_reason = readme.replace(SKIP_REASON, "Skipped:")
    with pytest.raises(ValueError, match="needs a line starting"):
        tour_blocks(no_reason)
    with pytest.raises(ValueError, match="one <!-- tour:start -->"):
        tour_blocks(readme.replace(TOUR_END, ""))


def project_copy(dest: Path) -> Path:
    """The project's files as a clone has them (tracked, plus new files not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if not source.is_file():  # deleted in the working tree
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return dest


def run_in_shell(command: str, cwd: Path, env: dict[str, str], state: Path) -> Ran:
    """``command`` in bash, with the exports of the commands before it (kept in ``state``)."""
    script = (
        f'set -o pipefail\nsource "{state}"\n{command}\nrc=$?\nexport -p > "{state}"\nexit $rc\n'
    )
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    seconds = time.monotonic() - started
    print(f"  [{seconds:5.1f} s] {command[:110]}")
    assert proc.returncode == 0, (
        f"README tour: {command!r} exited {proc.returncode}\n"
        f"stdout: {proc.stdout[-3000:]}\nstderr: {proc.stderr[-3000:]}"
    )
    return Ran(command, proc.stdout, proc.stderr, seconds)


def stop_leftovers(project: Path) -> None:
    """After a tour that failed half-way: stop the head it started, by its own processes."""
    cluster.stop_running_head(get_settings(home=project / ".mlfleet"))


def one(ran: list[Ran], command: str) -> Ran:
    """The run of the tour's command that starts with ``command`` (exactly one)."""
    found = [r for r in ran if r.command.startswith(command)]
    assert len(found) == 1, f"the tour runs {len(found)} commands starting {command!r}"
    return found[0]


@pytest.mark.slow
def test_readme_tour(tmp_path: Path) -> None:
    blocks = tour_blocks((REPO / "README.md").read_text())
    commands = [c for b in blocks if not b.skipped for c in b.commands]
    skipped = [c for b in blocks if b.skipped for c in b.commands]
    project = project_copy(tmp_path / "mlfleet")
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    # A newcomer's shell: nothing of mlfleet's or Ray's set, an empty home. Only the port
    # is chosen (the README reads MLFLEET_SERVE_PORT): 8000 may be taken on this host.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLEET_", "RAY_"))}
    env |= {"HOME": str(home), "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"}
    env["MLFLEET_SERVE_PORT"] = str(port)
    state = tmp_path / "shell-state.sh"
    state.touch()

    started = time.monotonic()
    ran: list[Ran] = []
    try:
        for command in commands:
            ran.append(run_in_shell(command, project, env, state))
    finally:
        stop_leftovers(project)
    total = time.monotonic() - started
    print(
        f"README tour: {len(ran)} commands in {total:.0f} s; not run: {len(skipped)} "
        f"({'; '.join(skipped)})"
    )

    # 0. Nothing ran before: the first `mlfleet down` finds nothing; the last stops the head.
    downs = [r for r in ran if r.command == "mlfleet down"]
    assert len(downs) == 2
    assert downs[0].stdout.strip() == "nothing to stop"
    assert "local Ray head" in downs[1].stdout

    # 2-3. The formats and the dataset version the validation wrote.
    assert "columns:" in one(ran, "cat specs/penguins/contract.yaml").stdout
    assert "search:" in one(ran, "cat specs/penguins/model.yaml").stdout
    summary = one(ran, "mlfleet data validate").stdout
    counts = re.search(r"rows in (\d+) = valid (\d+) \+ quarantined (\d+)", summary)
    assert counts and "passed" in summary, summary
    rows_in, valid, quarantined = map(int, counts.groups())
    assert rows_in == valid + quarantined and quarantined > 0
    manifests = one(ran, "mlfleet data versions penguins --json").json()
    assert len(manifests) == 1 and manifests[0]["status"] == "passed"
    assert (manifests[0]["rows_valid"], manifests[0]["rows_quarantined"]) == (valid, quarantined)
    fleet = one(ran, "ls specs/*").stdout
    for spec in ("specs/penguins:", "specs/diabetes:", "specs/breast-cancer:"):
        assert spec in fleet, fleet
    listing = one(ran, 'ls "${MLFLEET_HOME').stdout
    for name in ("manifest.json", "profile.json", "report.html", "quarantine", "data"):
        assert name in listing.split(), listing

    # 4. A head that outlives commands; training on it registered the champion.
    head = one(ran, "mlfleet cluster up").stdout
    assert "Ray head started" in head and "ray job submit" in head, head
    assert "penguin-species version 1 promoted to champion" in one(ran, "mlfleet train").stdout
    assert "penguin-species" in one(ran, "mlfleet models list").stdout

    # 5. The Ray Job trained into the same registry.
    job = one(ran, "ray job submit")
    assert "succeeded" in job.stdout, job.stdout[-2000:]
    assert "diabetes-progression version 1 promoted to champion" in job.stdout

    # 6. The fleet, on that head, answers over HTTP with the key the tour created.
    assert f"fleet is up: http://127.0.0.1:{port}" in one(ran, "mlfleet serve up").stdout
    models = {
        m["name"]: m for m in one(ran, 'curl -s --fail-with-body "$URL/v1/models"').json()["models"]
    }
    assert models["penguin-species"]["champion"] == "1"
    predicted = one(ran, 'curl -s --fail-with-body "$URL/v1/models/penguin-species/predict"').json()
    assert predicted["model"] == "penguin-species" and predicted["request_id"] == "tour-1"
    assert (
        len(predicted["predictions"]) == 1 and predicted["predictions"][0] in predicted["classes"]
    )
    refused = one(ran, 'curl -s "$URL/v1/models/penguin-species/predict"').json()
    assert refused["error"]["code"] == "invalid_input"
    assert "bill_length_mm" in refused["error"]["message"]

    diabetes = one(ran, 'curl -s --fail-with-body "$URL/v1/models/diabetes-progression').json()
    assert diabetes["version"] == "1" and isinstance(diabetes["predictions"][0], float)

    # 7. Feedback joined the prediction; the monitor saw the traffic.
    feedback = one(ran, 'curl -s --fail-with-body "$URL/v1/models/penguin-species/feedback"')
    assert feedback.json()["matched"] == 1
    assert "penguin-species" in one(ran, "mlfleet monitor status").stdout
    # Its verdicts are as of its last evaluation (at least once a minute): the few rows just
    # sent may not be in them yet, so only the model is checked here.
    assert "penguin-species" in one(ran, "mlfleet monitor show penguin-species").stdout
    monitored = one(ran, 'curl -s --fail-with-body "$URL/v1/monitoring"').json()
    assert "penguin-species" in {m["model"] for m in monitored["models"]}

    # 8. The dashboard page, with the key as a header.
    assert one(ran, "curl -s --fail-with-body -o /dev/null").stdout.startswith("200 text/html")

    # 9. `mlfleet down` left nothing behind.
    assert not (project / ".mlfleet" / "cluster" / "head.json").exists()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
