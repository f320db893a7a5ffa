"""Local network helpers."""

from __future__ import annotations

import ipaddress
import re
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Listener:
    """A listening TCP socket, as `ss -ltnp` lists it, and the process that holds it."""

    host: str
    port: int
    pid: int
    process: str

    @property
    def loopback(self) -> bool:
        host = self.host.strip("[]")
        if host == "*":
            return False
        ip = ipaddress.ip_address(host)
        mapped = getattr(ip, "ipv4_mapped", None)
        return bool((mapped or ip).is_loopback)


def listeners(pids: set[int]) -> list[Listener]:
    """Every listening TCP socket of ``pids``, as `ss -ltnp` reports it."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        owners = {int(p) for p in re.findall(r"pid=(\d+)", line)} & pids
        if not owners:
            continue
        host, _, port = line.split()[3].rpartition(":")
        pid = min(owners)
        try:
            title = psutil.Process(pid).cmdline()[0] or psutil.Process(pid).name()
        except (psutil.Error, IndexError):
            title = "?"
        found.append(Listener(host, int(port), pid, Path(title.split()[0]).name[:40]))
    return sorted(found, key=lambda item: (item.process, item.port))
