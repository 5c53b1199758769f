"""Host names to addresses, for balanced backends that re-resolve them (`dns_ttl_s`).

Rules: the event loop's getaddrinfo (the system resolver, off the loop) answers, except for
names listed in the hosts(5)-format file that STRANGLER_HOSTS_FILE names: those are answered
from it, read again at every lookup. That lets an operator pin or move a name for a drill, and
a test move one between loopback addresses, without root or a DNS server.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket

HOSTS_FILE_ENV = "STRANGLER_HOSTS_FILE"
# A hosts file larger than this is not read (it is a drill's override, not a zone).
_MAX_HOSTS_BYTES = 1 << 20


def is_address(host: str) -> bool:
    """Whether `host` is an IP address already (nothing to resolve)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def from_hosts_file(host: str, path: str) -> list[str] | None:
    """The addresses `path` lists for `host` (None when it lists none, or can't be read)."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read(_MAX_HOSTS_BYTES)
    except OSError:
        return None
    found: list[str] = []
    wanted = host.lower()
    for line in text.splitlines():
        fields = line.partition("#")[0].split()
        names = [name.lower() for name in fields[1:]]
        if wanted in names and is_address(fields[0]) and fields[0] not in found:
            found.append(fields[0])
    return found or None


async def resolve(host: str, port: int) -> list[str]:
    """`host`'s addresses, sorted; raises OSError (socket.gaierror) when it does not resolve."""
    if is_address(host):
        return [host]
    path = os.environ.get(HOSTS_FILE_ENV)
    if path:
        listed = from_hosts_file(host, path)
        if listed is not None:
            return sorted(listed)
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})
