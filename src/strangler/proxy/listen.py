"""Listening sockets: one per worker, sharing the port through SO_REUSEPORT like nginx workers."""

from __future__ import annotations

import socket

from strangler.errors import StranglerError


class ListenError(StranglerError):
    """The listen address can't be bound (in use, not ours, not an address)."""


def taken_hint(key: str, port: int, *, written: bool) -> str:
    """What to write when the address of config key `key` can't be bound. A user who never
    wrote the key (a second gateway on one machine, both on the default admin port) learns its
    name here."""
    unwritten = "" if written else f"`{key}` is not set, so its default was used; "
    off = ", or null to turn it off" if key == "admin.listen" else ""
    suggested = port + 1 if 0 < port < 65535 else 0
    return f"{unwritten}set `{key}:` to a free address, e.g. 127.0.0.1:{suggested}{off}"


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port` (0: a free port) that holds the port for the workers.

    An explicit port is first checked free without SO_REUSEPORT, so a gateway already running
    there is noticed rather than joined. The reservation itself has SO_REUSEPORT, so workers
    can bind beside it; it never listens, so it takes no connections. Close it when the
    workers are gone."""
    family = _family(host)
    if port:
        probe = socket.socket(family, socket.SOCK_STREAM)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
        except OSError as exc:
            raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
        finally:
            probe.close()
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


def listen_socket(host: str, port: int, *, reuse_port: bool, backlog: int = 2048) -> socket.socket:
    """A bound, listening, non-blocking socket."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock
