"""Listening sockets: one per worker, sharing the port through SO_REUSEPORT like nginx workers."""

from __future__ import annotations

import socket

from strangler.errors import StranglerError


class ListenError(StranglerError):
    """The listen address can't be bound (in use, not ours, not an address)."""


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def probe_port(host: str, port: int) -> int:
    """Check `host:port` is free (without SO_REUSEPORT, so a running gateway is noticed) and
    return the port, resolving 0 to a free one."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        return int(sock.getsockname()[1])
    except OSError as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    finally:
        sock.close()


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
