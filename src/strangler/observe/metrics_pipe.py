"""How forked workers hand their metrics to the supervisor: one pipe per worker, frames of
`length (4 bytes, big-endian) + marshal(message)`, read by one thread in the supervisor.

Rules:
- The worker never blocks on the pipe: a frame the pipe cannot take whole waits in the writer
  (one frame at most) and no new frame is taken until it is gone, so what was counted keeps
  adding up in the worker instead (nothing is lost, nothing grows).
- marshal, not pickle: the messages are plain tuples, lists, dicts, strings and numbers, and
  marshal cannot build anything else on the reading side.
- The reader thread adds each frame to the hub; a pipe's end of file means its worker is gone
  (the hub retires it).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import marshal
import os
import selectors
import struct
import threading
from typing import Any

from strangler.observe.exposition import MetricsHub

log = logging.getLogger("strangler.metrics")

_LENGTH = struct.Struct(">I")
# Larger than the default 64 KiB so that one frame of thousands of routes goes in one write.
_PIPE_BYTES = 1 << 20
_MAX_FRAME = 256 << 20
# Linux fcntl: F_SETPIPE_SZ (fcntl.F_SETPIPE_SZ from Python 3.10 on Linux).
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def metrics_pipe() -> tuple[int, int]:
    """(read end, write end); the write end is non-blocking."""
    read_fd, write_fd = os.pipe()
    with contextlib.suppress(OSError):
        fcntl.fcntl(write_fd, _F_SETPIPE_SZ, _PIPE_BYTES)
    os.set_blocking(write_fd, False)
    return read_fd, write_fd


class PipeWriter:
    """The worker's end: `send` a message when `is_ready`."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._pending = b""
        self.is_broken = False

    @property
    def is_ready(self) -> bool:
        """True when nothing waits: a new message may be taken and sent."""
        self.flush()
        return not self._pending and not self.is_broken

    def send(self, message: dict[str, Any]) -> None:
        payload = marshal.dumps(message)
        self._pending = _LENGTH.pack(len(payload)) + payload
        self.flush()

    def flush(self) -> None:
        while self._pending and not self.is_broken:
            try:
                written = os.write(self.fd, self._pending)
            except BlockingIOError:
                return
            except OSError as exc:
                # The supervisor is gone; the worker notices that on its own and drains.
                log.warning("metrics pipe closed: %s", exc)
                self.is_broken = True
                return
            self._pending = self._pending[written:]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class PipeReader:
    """The supervisor's end: a thread that reads every worker's pipe into the hub."""

    def __init__(self, hub: MetricsHub) -> None:
        self.hub = hub
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._added: list[tuple[int, str]] = []
        self._buffers: dict[int, bytearray] = {}
        self._lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="strangler-metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, fd: int, source: str) -> None:
        """Read `fd` (a worker's pipe) as `source` from now on."""
        with self._lock:
            self._added.append((fd, source))
        self._wake()

    def stop(self) -> None:
        self._stop = True
        self._wake()
        self._thread.join(2.0)

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_write, b"w")

    def _run(self) -> None:
        while not self._stop:
            for key, _ in self._selector.select(timeout=1.0):
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_read, 4096)
                    self._take_added()
                    continue
                self._read(key.fd, key.data)
        for key in list(self._selector.get_map().values()):
            with contextlib.suppress(OSError):
                os.close(key.fd)

    def _take_added(self) -> None:
        with self._lock:
            added, self._added = self._added, []
        for fd, source in added:
            self._buffers[fd] = bytearray()
            self._selector.register(fd, selectors.EVENT_READ, source)

    def _read(self, fd: int, source: str) -> None:
        try:
            data = os.read(fd, 1 << 20)
        except OSError:
            data = b""
        if not data:
            self._selector.unregister(fd)
            os.close(fd)
            self._buffers.pop(fd, None)
            self.hub.retire(source)
            return
        buffer = self._buffers[fd]
        buffer += data
        while len(buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buffer)
            if length > _MAX_FRAME or len(buffer) < _LENGTH.size + length:
                break
            frame = bytes(buffer[_LENGTH.size : _LENGTH.size + length])
            del buffer[: _LENGTH.size + length]
            try:
                self.hub.add(source, marshal.loads(frame))
            except (ValueError, EOFError, TypeError, KeyError):
                log.exception("metrics frame from worker %s unreadable", source)
