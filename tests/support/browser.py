"""A real browser for the dashboard's tests: Debian's chromium driven by Playwright.

Playwright's own browser download cannot work on our machines, so the distribution's
chromium is installed when missing (as ``make test`` does) and launched by path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# Headless, offline and quiet: no sandbox (tests run as root), no GPU, no QUIC, no first-run
# pages, no background traffic, component updates or sync.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_TIMEOUT_S = 600


def _apt(*args: str) -> bool:
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(
        [*sudo, "apt-get", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )
    return done.returncode == 0


def ensure_chromium() -> Path:
    """Debian's chromium, installed with apt-get when missing (``apt-get update`` first when
    the install fails).

    Raises:
        RuntimeError: it could not be installed.
    """
    if CHROMIUM.is_file():
        return CHROMIUM
    if shutil.which("apt-get") is None:
        raise RuntimeError(f"{CHROMIUM} is missing and there is no apt-get to install it")
    if not _apt("install", "-y", "chromium"):
        _apt("update")
        _apt("install", "-y", "chromium")
    if not CHROMIUM.is_file():
        raise RuntimeError(f"could not install chromium ({CHROMIUM}) with apt-get")
    return CHROMIUM
