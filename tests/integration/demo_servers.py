"""Serve the demo apps with real uvicorn on 127.0.0.1 for integration tests.

`serve(app, health_path)` runs one ASGI app in its own thread and event loop on a port the
kernel picks (port 0), and yields its base URL once the health path answers 200: readiness is
observed, never slept on. Leaving the context stops the server and joins its thread.
`RequestLog` wraps an app, unchanged, and keeps the head of every request it received, so a
test can see what reached it through the gateway.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

READY_TIMEOUT_S = 10.0
_POLL_INTERVAL_S = 0.01


class RequestLog:
    """An ASGI app that passes everything to `app` and records (method, path, headers) first."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    def __repr__(self) -> str:
        return f"<RequestLog {len(self.requests)} requests>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {
                name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
            }
            self.requests.append((scope["method"], scope["path"], headers))
        await self.app(scope, receive, send)

    def to(self, path: str) -> list[dict[str, str]]:
        """The headers of every request for `path`, oldest first."""
        return [headers for _, seen, headers in self.requests if seen == path]


def free_ports(count: int) -> list[int]:
    """`count` different ports that were free a moment ago, for code that needs numbers first.

    All probes stay bound until all are picked, so the kernel cannot hand out one port twice.
    """
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]


@contextlib.contextmanager
def serve(app: ASGIApp, health_path: str) -> Iterator[str]:
    """Run `app` under uvicorn on 127.0.0.1:0 and yield `http://127.0.0.1:PORT`."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", access_log=False, server_header=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="demo-server", daemon=True)
    thread.start()
    try:
        url = _wait_ready(server, thread, health_path)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=READY_TIMEOUT_S)


def _wait_ready(server: uvicorn.Server, thread: threading.Thread, health_path: str) -> str:
    deadline_s = time.monotonic() + READY_TIMEOUT_S
    url = ""
    while time.monotonic() < deadline_s:
        if not thread.is_alive():
            raise RuntimeError("uvicorn stopped before it was ready")
        if not url and server.started:
            port = server.servers[0].sockets[0].getsockname()[1]
            url = f"http://127.0.0.1:{port}"
        if url:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + health_path, trust_env=False).status_code == 200:
                    return url
        time.sleep(_POLL_INTERVAL_S)
    raise TimeoutError(f"no 200 from {health_path} within {READY_TIMEOUT_S} s")
