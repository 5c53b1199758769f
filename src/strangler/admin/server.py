"""Serving the admin app with uvicorn on a socket bound before the gateway reports readiness.

Rules:
- `bind_admin_socket` binds `admin.listen` before anything is announced; a taken address is a
  `ListenError` naming `admin.listen` and the address (exit 1), like the main listener.
- uvicorn never installs signal handlers here: the worker (or the supervisor) owns SIGTERM,
  SIGINT and SIGHUP, and stops the admin server when it has drained.
- `AdminServer` runs on an event loop that already runs (the single worker's uvloop): the admin
  answers a few requests a minute, not worth a thread in the process that serves traffic.
  `AdminThread` runs it in a daemon thread on a loop of its own, for the supervisor, which has
  no event loop (it waits in sigtimedwait).
- `start()` returns once uvicorn accepts on the socket, or raises what stopped it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from strangler.config import AdminConfig, split_listen
from strangler.errors import StranglerError
from strangler.proxy.listen import ListenError, listen_socket, taken_hint

log = logging.getLogger("strangler.admin")

ADMIN_LINE_PREFIX = "strangler admin on http://"
# Open admin connections get this long to finish once the gateway has drained.
SHUTDOWN_TIMEOUT_S = 2
START_TIMEOUT_S = 10.0


class AdminServerError(StranglerError):
    """The admin server could not start."""


def bind_admin_socket(config: AdminConfig) -> socket.socket | None:
    """The admin listening socket, or None when `admin.listen` is null."""
    if config.listen is None:
        return None
    host, port = split_listen(config.listen)
    try:
        # No SO_REUSEPORT: one process serves the admin port, and a second gateway started on
        # the same address must fail instead of sharing it.
        return listen_socket(host, port, reuse_port=False, backlog=128)
    except ListenError as exc:
        hint = taken_hint("admin.listen", port, written="listen" in config.model_fields_set)
        raise ListenError(f"admin.listen: {exc}; {hint}") from exc


def admin_line(sock: socket.socket) -> str:
    """`strangler admin on http://HOST:PORT`, with the port actually bound (port 0 resolved)."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"{ADMIN_LINE_PREFIX}{shown}:{port}"


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn that leaves signals to its host and reports when it accepts connections."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.accepting = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn would replace SIGTERM/SIGINT handlers with its own (signal.signal, main
        # thread only), taking them from the worker's loop: the worker would no longer drain.
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.accepting.set()


class AdminServer:
    """The admin app on `sock`, on the running event loop. Not thread-safe: one loop owns it."""

    def __init__(self, app: FastAPI, sock: socket.socket) -> None:
        self.sock = sock
        config = uvicorn.Config(
            app,
            lifespan="off",
            ws="none",
            log_config=None,  # the gateway's logging setup stays as it is
            log_level="warning",
            access_log=False,
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=SHUTDOWN_TIMEOUT_S,
        )
        self._server = _EmbeddedUvicorn(config)
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        state = "serving" if self._server.accepting.is_set() else "not serving"
        return f"<AdminServer {admin_line(self.sock).removeprefix(ADMIN_LINE_PREFIX)} {state}>"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._server.serve(sockets=[self.sock]), name="admin-server")
        accepting = loop.create_task(self._server.accepting.wait(), name="admin-server-accepting")
        await asyncio.wait({self._task, accepting}, return_when=asyncio.FIRST_COMPLETED)
        accepting.cancel()
        if not self._server.accepting.is_set():
            error = self._task.exception()
            raise AdminServerError(f"the admin server did not start: {error!r}") from error

    async def stop(self) -> None:
        """Stop accepting, let open admin requests finish (up to SHUTDOWN_TIMEOUT_S), return."""
        if self._task is None:
            return
        self._server.should_exit = True
        try:
            await self._task
        except Exception:
            log.exception("admin server failed while stopping")


class AdminThread:
    """An AdminServer in a daemon thread with its own asyncio loop (the supervisor's mode).

    Start it from a thread that blocks the signals its caller waits for (the supervisor blocks
    them before calling `start`): the new thread inherits that mask, so SIGTERM and SIGHUP stay
    queued for `sigtimedwait` instead of landing here. The loop is asyncio's own, not uvloop:
    the supervisor forks workers while this thread runs, and a child then carries a copy of this
    loop it never uses; a pure-Python loop is the simplest thing to leave behind in a fork.
    """

    def __init__(self, app: FastAPI, sock: socket.socket) -> None:
        self.sock = sock
        self._app = app
        self._thread = threading.Thread(target=self._run, name="strangler-admin", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def __repr__(self) -> str:
        alive = "running" if self._thread.is_alive() else "stopped"
        return f"<AdminThread {admin_line(self.sock).removeprefix(ADMIN_LINE_PREFIX)} {alive}>"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Return once the admin server accepts connections; raise AdminServerError if not."""
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise AdminServerError(f"the admin server did not start within {timeout_s:g} s")
        if self._error is not None:
            raise AdminServerError(f"the admin server did not start: {self._error}") from (
                self._error
            )

    def stop(self, timeout_s: float = SHUTDOWN_TIMEOUT_S + 1.0) -> None:
        loop, stop = self._loop, self._stop
        if loop is None or stop is None or not self._thread.is_alive():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing to stop
            loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:
            if not self._started.is_set():
                self._error = exc
            else:
                log.exception("admin server thread failed")
        finally:
            self._started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = AdminServer(self._app, self.sock)
        await server.start()
        self._started.set()
        await self._stop.wait()
        await server.stop()
