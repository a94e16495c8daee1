"""Watching a process tree's network system calls from outside it, with strace.

The guard's own counter only proves what the guard saw; these helpers prove what the kernel was asked to do. strace
records every connect/sendto/sendmsg of the process and its children; `destinations` keeps the socket addresses that
are neither loopback nor local (AF_UNIX, AF_NETLINK), i.e. anything that could have left the machine.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

STRACE = shutil.which("strace")
_ADDRESS = re.compile(
    r'sa_family=(?P<family>AF_\w+)(?:, sin6?_port=htons\((?P<port>\d+)\))?'
    r'(?:, sin_addr=inet_addr\("(?P<ipv4>[^"]+)"\)|.*?inet_pton\(AF_INET6, "(?P<ipv6>[^"]+)")?'
)
_LOCAL_FAMILIES = {"AF_UNIX", "AF_LOCAL", "AF_NETLINK", "AF_UNSPEC"}  # AF_UNSPEC: a UDP socket's disconnect


def traced(command: list[str], log: Path) -> list[str]:
    """`command` under strace writing to `log`, or a skip naming what is missing."""
    if STRACE is None:
        pytest.skip("strace is not installed (apt-get install strace): cannot watch the process from outside")
    return [STRACE, "-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o", str(log), *command]


def destinations(log: Path) -> list[str]:
    """Every non-loopback, non-local socket address in an strace log, as `family address:port`."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        for match in _ADDRESS.finditer(line):
            family, ip = match["family"], match["ipv4"] or match["ipv6"]
            if family in _LOCAL_FAMILIES or (ip and _is_loopback(ip)):
                continue
            found.append(f"{family} {ip or '?'}:{match['port'] or '?'}")
    return found


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def run(command: list[str], log: Path, **options) -> subprocess.CompletedProcess:
    """Run `command` under strace; the caller inspects `destinations(log)`."""
    return subprocess.run(traced(command, log), capture_output=True, text=True, stdin=subprocess.DEVNULL, **options)


def lan_address() -> str:
    """This machine's address on its default route (connecting a UDP socket sends nothing), or a skip."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            pytest.skip("no non-loopback IPv4 address on this machine")
        return probe.getsockname()[0]
