"""`strangler run`: one worker in-process, or N forked workers sharing the port (SO_REUSEPORT).

Rules:
- Nothing listens until the config is valid; a bad file exits 2 before any socket is bound.
- The readiness line ("strangler listening on http://HOST:PORT ...") is printed once every
  worker accepts connections, followed by "strangler listening on https://HOST:PORT" when
  `tls:` is configured (with `listen: null`, the https line is the readiness line); tests
  and the demo wait for it instead of sleeping. When the admin listener is on, "strangler
  admin on http://HOST:PORT" follows them, in the same write; its socket is bound before
  any line, so a taken admin address exits 1 announcing nothing.
- The admin app runs where an event loop is: on the worker's loop with one worker, in a thread
  of the supervisor with --workers N (the workers never serve it; each closes its copy of the
  admin socket). It reads the snapshot in force, so it follows reloads.
- The supervisor forwards SIGHUP (after checking the file itself, so a bad file is reported
  once), SIGUSR1 (reopen the access log) and SIGTERM/SIGINT to its workers, restarts a worker
  that dies unexpectedly, and exits 0 after all workers drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import uvloop

from strangler import __version__, native
from strangler.config import Config, split_listen
from strangler.errors import ConfigError
from strangler.observe.exposition import MetricsHub
from strangler.observe.metrics_pipe import PipeReader, PipeWriter, metrics_pipe
from strangler.proxy.listen import ListenError, listen_socket, reserve_port, taken_hint
from strangler.runtime.health_board import HealthBoard
from strangler.runtime.snapshot import Snapshot
from strangler.runtime.snapshot_build import load_snapshot, source_mtime
from strangler.runtime.worker import Worker

log = logging.getLogger("strangler.supervisor")

_SIGNALS = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGUSR1}


@dataclass(frozen=True, slots=True)
class Listeners:
    """The gateway's client addresses, ports resolved: plain HTTP and HTTPS (either may be off)."""

    plain: tuple[str, int] | None
    tls: tuple[str, int] | None


def ready_line(listeners: Listeners, workers: int, snapshot: Snapshot) -> str:
    urls = []
    if listeners.plain is not None:
        urls.append(_url("http", *listeners.plain))
    if listeners.tls is not None:
        urls.append(_url("https", *listeners.tls))
    first = (
        f"strangler listening on {urls[0]} "
        f"(workers: {workers}, routes: {len(snapshot.table)}, config: {snapshot.source})"
    )
    return "\n".join([first, *(f"strangler listening on {url}" for url in urls[1:])])


def _url(scheme: str, host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


def _hold(key: str, address: str, *, one: bool, written: bool) -> socket.socket:
    # Port 0 is resolved by a socket that stays bound: a port found free and released would be
    # free for any other process too until the workers bind it (the admin listener's imports
    # alone take ~0.5 s), and parallel test runs did take it.
    host, port = split_listen(address)
    try:
        return listen_socket(host, port, reuse_port=False) if one else reserve_port(host, port)
    except ListenError as exc:
        hint = taken_hint(key, port, written=written)
        raise ListenError(f"{key}: {exc}; {hint}") from exc


def run(config_path: str, *, workers: int, watch: bool) -> int:
    """Serve until told to stop; returns the process exit code."""
    snapshot = load_snapshot(config_path)
    config = snapshot.config
    one = workers <= 1
    held: list[socket.socket] = []
    admin_sock = None
    try:
        plain = tls = None
        if config.listen is not None:
            written = "listen" in config.model_fields_set
            held.append(_hold("listen", config.listen, one=one, written=written))
            plain = held[-1]
        if config.tls is not None:
            written = "listen" in config.tls.model_fields_set
            held.append(_hold("tls.listen", config.tls.listen, one=one, written=written))
            tls = held[-1]
        listeners = Listeners(_address(plain), _address(tls))
        admin_sock = _bind_admin(snapshot)
        if workers <= 1:
            lines = _ready_lines(ready_line(listeners, 1, snapshot), admin_sock)
            uvloop.run(
                _serve_one(snapshot, plain, admin_sock, watch, lambda: _announce(lines), tls=tls)
            )
            return 0
        return _supervise(snapshot, listeners, workers, watch, admin_sock)
    finally:
        for sock in held:
            sock.close()
        if admin_sock is not None:
            admin_sock.close()


def _address(sock: socket.socket | None) -> tuple[str, int] | None:
    if sock is None:
        return None
    host, port = sock.getsockname()[:2]
    return str(host), int(port)


def _bind_admin(snapshot: Snapshot) -> socket.socket | None:
    if snapshot.config.admin.listen is None:
        return None
    # Imported here and below: FastAPI and uvicorn (~0.5 s, ~10 MiB) load only when the admin
    # listener is on.
    from strangler.admin import bind_admin_socket

    return bind_admin_socket(snapshot.config.admin)


def _ready_lines(line: str, admin_sock: socket.socket | None) -> str:
    if admin_sock is None:
        return line
    from strangler.admin import admin_line

    return f"{line}\n{admin_line(admin_sock)}"


def _announce(lines: str) -> None:
    # One write, so a reader that saw the readiness line finds the admin line right behind it.
    print(lines, flush=True)


async def _serve_one(
    snapshot: Snapshot,
    sock: socket.socket | None,
    admin_sock: socket.socket | None,
    watch: bool,
    on_ready: Callable[[], object],
    *,
    runs_analyzer: bool = True,
    on_degraded: Callable[[bool], object] | None = None,
    supervisor_pid: int | None = None,
    worker_index: int = 0,
    metrics_writer: PipeWriter | None = None,
    tls: socket.socket | None = None,
    health_board: HealthBoard | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    worker = Worker(
        snapshot,
        loop,
        watch=watch,
        runs_analyzer=runs_analyzer,
        on_degraded=on_degraded,
        supervisor_pid=supervisor_pid,
        worker_index=worker_index,
        metrics_writer=metrics_writer,
        health_board=health_board,
    )
    admin = None
    if admin_sock is not None:
        from strangler.admin import AdminServer, create_admin_app

        admin = AdminServer(create_admin_app(worker), admin_sock)
        await admin.start()
    try:
        await worker.serve(sock, on_ready, tls_sock=tls)  # type: ignore[arg-type]
    finally:
        # After the drain: /readyz answers 503 (draining) while requests in flight finish.
        if admin is not None:
            await admin.stop()


class _SupervisorView:
    """The GatewayView of the supervisor's admin thread: the snapshot in force, and whether the
    workers were told to drain. Written by the supervisor's main thread only."""

    def __init__(self, snapshot: Snapshot, workers: int) -> None:
        self.snapshot = snapshot
        self.is_draining = False
        # One byte per worker, shared across the fork: 1 while that worker cannot reach the
        # control store. The supervisor itself runs no store I/O besides the admin API.
        self.flags = mmap.mmap(-1, max(workers, 1))
        # The workers' views of their balanced backends, one slot each.
        self.health_board = HealthBoard(workers)
        # The workers' metrics, read from their pipes by a thread (None: metrics are off).
        self.metrics_hub: MetricsHub | None = None
        self.metrics_reader: PipeReader | None = None
        if snapshot.config.metrics.enabled:
            self.metrics_hub = MetricsHub(version=__version__, compiled=native.is_compiled())
            self.metrics_reader = PipeReader(self.metrics_hub)

    def refresh_metrics(self) -> None:
        """The workers send theirs twice a second on their own."""

    @property
    def base(self) -> Config:
        return self.snapshot.config

    def backend_health(self) -> dict[str, dict[str, Any]]:
        return self.health_board.merged()

    @property
    def degraded(self) -> str | None:
        stale = [index for index in range(len(self.flags)) if self.flags[index]]
        if not stale:
            return None
        shown = ", ".join(str(index) for index in stale)
        return f"control store unavailable in worker(s) {shown}: serving the last-known state"


def _supervise(
    snapshot: Snapshot,
    listeners: Listeners,
    workers: int,
    watch: bool,
    admin_sock: socket.socket | None,
) -> int:
    # Taken before the readiness line: a file changed right after it must count as a change.
    source = snapshot.source
    mtime = source_mtime(source)
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    view = _SupervisorView(snapshot, workers)
    if view.metrics_reader is not None:
        view.metrics_reader.start()
    admin = None
    if admin_sock is not None:
        from strangler.admin import AdminThread, create_admin_app

        # After the mask: the admin thread inherits it, so signals stay for sigtimedwait below.
        admin = AdminThread(create_admin_app(view), admin_sock)
        admin.start()
    ready_read, ready_write = os.pipe()
    children: dict[int, int] = {}
    for index in range(workers):
        children[_spawn(snapshot, listeners, ready_write, admin_sock, index, view)] = index
    for _ in range(workers):
        if not os.read(ready_read, 1):
            break
    _announce(_ready_lines(ready_line(listeners, workers, snapshot), admin_sock))
    stopping = False
    while children:
        info = signal.sigtimedwait(list(_SIGNALS), 1.0)
        signum = info.si_signo if info is not None else None
        if signum in (signal.SIGTERM, signal.SIGINT) and not stopping:
            stopping = True
            view.is_draining = True
            _forward(children, signal.SIGTERM)
        elif signum == signal.SIGUSR1:
            # logrotate signals the process it knows: the workers hold the access log.
            _forward(children, signal.SIGUSR1)
        elif signum == signal.SIGHUP or (watch and not stopping and source_mtime(source) != mtime):
            mtime = source_mtime(source)
            reloaded = _reload(source, snapshot.version + 1)
            if reloaded is not None:
                snapshot = reloaded
                view.snapshot = reloaded
                _forward(children, signal.SIGHUP)
        for pid, status in _reap():
            index = children.pop(pid, 0)
            if not stopping:
                # The replacement starts from the config in force, not from a file that may
                # have been refused since.
                log.error("worker %d exited (status %d); starting a new one", pid, status)
                children[_spawn(snapshot, listeners, ready_write, admin_sock, index, view)] = index
    if admin is not None:
        admin.stop()
    if view.metrics_reader is not None:
        view.metrics_reader.stop()
    return 0


def _spawn(
    snapshot: Snapshot,
    listeners: Listeners,
    ready_write: int,
    admin_sock: socket.socket | None,
    index: int,
    view: _SupervisorView,
) -> int:
    """Fork worker number `index`; worker 0 also runs the canary analyzer (one per gateway
    process: threads doing I/O in the supervisor would be copied mid-operation into every fork)."""
    supervisor_pid = os.getpid()
    flags = view.flags
    pipe = metrics_pipe() if view.metrics_reader is not None else None
    pid = os.fork()
    if pid:
        if pipe is not None and view.metrics_reader is not None:
            os.close(pipe[1])
            # One source per process, not per index: the end of a dead worker's pipe may be
            # read after its replacement's first message, and must retire only the dead one.
            view.metrics_reader.add(pipe[0], f"{index}:{pid}")
        return pid
    code = 1
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        writer = None
        if pipe is not None:
            os.close(pipe[0])
            writer = PipeWriter(pipe[1])
        if admin_sock is not None:
            # The supervisor serves the admin port; a worker holding a copy would keep it
            # accepting connections (into a queue nobody reads) after the supervisor is gone.
            admin_sock.close()
        sock = tls = None
        if listeners.plain is not None:
            sock = listen_socket(*listeners.plain, reuse_port=True)
        if listeners.tls is not None:
            tls = listen_socket(*listeners.tls, reuse_port=True)
        uvloop.run(
            _serve_one(
                snapshot,
                sock,
                None,
                False,
                lambda: os.write(ready_write, b"r"),
                runs_analyzer=index == 0,
                on_degraded=lambda is_degraded: flags.__setitem__(index, int(is_degraded)),
                supervisor_pid=supervisor_pid,
                worker_index=index,
                metrics_writer=writer,
                tls=tls,
                health_board=view.health_board,
            )
        )
        code = 0
    except BaseException:
        log.exception("worker failed")
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _forward(children: dict[int, int], signum: int) -> None:
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _reap() -> list[tuple[int, int]]:
    reaped: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped.append((pid, os.waitstatus_to_exitcode(status)))


def _reload(source: str, version: int) -> Snapshot | None:
    try:
        return load_snapshot(source, version=version)
    except ConfigError as exc:
        log.error("config reload refused: %s", exc)
        return None
