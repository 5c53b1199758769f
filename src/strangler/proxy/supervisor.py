"""`strangler run`: one worker in-process, or N forked workers sharing the port (SO_REUSEPORT).

Rules:
- Nothing listens until the config is valid; a bad file exits 2 before any socket is bound.
- The readiness line ("strangler listening on http://HOST:PORT ...") is printed once every
  worker accepts connections; tests and the demo wait for it instead of sleeping.
- The supervisor forwards SIGHUP (after checking the file itself, so a bad file is reported
  once) and SIGTERM/SIGINT to its workers, restarts a worker that dies unexpectedly, and exits
  0 after all workers drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys

import uvloop

from strangler.config import split_listen
from strangler.control.snapshot import Snapshot, load_snapshot, source_mtime
from strangler.errors import ConfigError
from strangler.proxy.listen import listen_socket, probe_port
from strangler.proxy.worker import Worker

log = logging.getLogger("strangler.supervisor")

_SIGNALS = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}


def ready_line(host: str, port: int, workers: int, snapshot: Snapshot) -> str:
    shown = f"[{host}]" if ":" in host else host
    return (
        f"strangler listening on http://{shown}:{port} "
        f"(workers: {workers}, routes: {len(snapshot.table)}, config: {snapshot.source})"
    )


def run(config_path: str, *, workers: int, watch: bool) -> int:
    """Serve until told to stop; returns the process exit code."""
    snapshot = load_snapshot(config_path)
    host, port = split_listen(snapshot.config.listen)
    port = probe_port(host, port)
    if workers <= 1:
        sock = listen_socket(host, port, reuse_port=False)
        line = ready_line(host, port, 1, snapshot)
        uvloop.run(_serve_one(snapshot, sock, watch, lambda: _announce(line)))
        return 0
    return _supervise(snapshot, host, port, workers, watch)


def _announce(line: str) -> None:
    print(line, flush=True)


async def _serve_one(snapshot: Snapshot, sock: object, watch: bool, on_ready: object) -> None:
    loop = asyncio.get_running_loop()
    worker = Worker(snapshot, loop, watch=watch)
    await worker.serve(sock, on_ready)  # type: ignore[arg-type]


def _supervise(snapshot: Snapshot, host: str, port: int, workers: int, watch: bool) -> int:
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    ready_read, ready_write = os.pipe()
    children: dict[int, int] = {}
    for index in range(workers):
        children[_spawn(snapshot, host, port, ready_write)] = index
    for _ in range(workers):
        if not os.read(ready_read, 1):
            break
    print(ready_line(host, port, workers, snapshot), flush=True)
    source = snapshot.source
    mtime = source_mtime(source)
    stopping = False
    while children:
        info = signal.sigtimedwait(list(_SIGNALS), 1.0)
        signum = info.si_signo if info is not None else None
        if signum in (signal.SIGTERM, signal.SIGINT) and not stopping:
            stopping = True
            _forward(children, signal.SIGTERM)
        elif signum == signal.SIGHUP or (watch and not stopping and source_mtime(source) != mtime):
            mtime = source_mtime(source)
            reloaded = _reload(source, snapshot.version + 1)
            if reloaded is not None:
                snapshot = reloaded
                _forward(children, signal.SIGHUP)
        for pid, status in _reap():
            children.pop(pid, None)
            if not stopping:
                # The replacement starts from the config in force, not from a file that may
                # have been refused since.
                log.error("worker %d exited (status %d); starting a new one", pid, status)
                children[_spawn(snapshot, host, port, ready_write)] = 0
    return 0


def _spawn(snapshot: Snapshot, host: str, port: int, ready_write: int) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        sock = listen_socket(host, port, reuse_port=True)
        uvloop.run(_serve_one(snapshot, sock, False, lambda: os.write(ready_write, b"r")))
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
