"""A worker's helper process that compares large pairs, so no pair can stall the worker's loop.

Why a process: the diff engine is compiled (strangler.native), and compiled code, like orjson's
parser, keeps the GIL until it returns; in a thread, a 0.7 MB pair held the loop as long as it
did inline (bench/bench_diff_adversarial.py).

Rules:
- One helper per worker, started at the first pair sent to it: `python -m strangler.diff`, a
  fresh interpreter, never a fork of the worker (which holds the listening socket and a loop).
- Callbacks only, no task: the helper's pipes are non-blocking, written and read from loop
  callbacks. It compares one pair at a time, in the order sent; `done` is called once per
  accepted pair, from the loop, with its Comparison, or None when the helper failed it, died,
  or was closed with the pair still in it.
- Bounded: the bodies of the pairs sent and not yet answered total at most `max_waiting_bytes`
  (one pair is always accepted when none waits); a pair past that is refused (`diff_backlog`).
- The helper exits when its stdin closes, so a worker that dies takes it along; `close()`
  kills it (it holds nothing worth a graceful exit). After a helper died, a new one starts for
  the next pair, at most once per `restart_interval_s`; pairs refused meanwhile count as
  `diff_failed`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

import strangler
from strangler.diff import Comparison, DiffRules, ResponseSample
from strangler.diff.wire import REPLY_HEAD, decode_comparison, encode_request, encode_rules
from strangler.shadow.drop import DropReason

log = logging.getLogger("strangler.shadow")

# A 0.7 MB pair is ~1.4 MB of bodies: a dozen of them, ~2 s of the helper's work at the worst.
MAX_WAITING_BYTES: Final = 16 << 20
RESTART_INTERVAL_S: Final = 1.0
_READ_BYTES: Final = 1 << 16
# Linux's F_SETPIPE_SZ: a larger pipe takes a large pair in fewer writable callbacks.
_F_SETPIPE_SZ: Final = 1031
_PIPE_BYTES: Final = 1 << 20
# The source tree this worker imported: the helper imports the same, whatever the sys.path.
_SOURCE_ROOT: Final = str(Path(strangler.__file__).resolve().parent.parent)

Done = Callable[[Comparison | None], None]


class DiffHelper:
    """The helper process of one worker, and the pairs it holds."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        max_waiting_bytes: int = MAX_WAITING_BYTES,
        restart_interval_s: float = RESTART_INTERVAL_S,
    ) -> None:
        self.loop = loop
        self.max_waiting_bytes = max_waiting_bytes
        self.restart_interval_s = restart_interval_s
        self._process: subprocess.Popen[bytes] | None = None
        # The pairs sent and not yet answered, oldest first, with their body sizes.
        self._waiting: collections.deque[tuple[Done, int]] = collections.deque()
        self._waiting_bytes = 0
        self._unsent: collections.deque[memoryview] = collections.deque()
        self._received = bytearray()
        self._may_start_at = 0.0
        # The last rules sent and their encoding: a route sends the same rules every time.
        self._rules: DiffRules | None = None
        self._rules_bytes = b""
        self.starts = 0

    def __repr__(self) -> str:
        pid = self._process.pid if self._process is not None else None
        return (
            f"<DiffHelper pid={pid}: {len(self._waiting)} waiting,"
            f" {self._waiting_bytes} bytes, {self.starts} starts>"
        )

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def submit(
        self,
        primary: ResponseSample,
        shadow: ResponseSample,
        rules: DiffRules,
        max_decoded_bytes: int,
        done: Done,
    ) -> DropReason | None:
        """Send a pair to be compared; `done` gets the outcome. Returns why it was refused, or
        None when accepted (then `done` is called exactly once, never from inside submit)."""
        size = len(primary.body) + len(shadow.body)
        if self._waiting and self._waiting_bytes + size > self.max_waiting_bytes:
            return DropReason.DIFF_BACKLOG
        if self._process is None and not self._start():
            return DropReason.DIFF_FAILED
        if rules is not self._rules:
            self._rules, self._rules_bytes = rules, encode_rules(rules)
        self._waiting.append((done, size))
        self._waiting_bytes += size
        self._send(encode_request(primary, shadow, self._rules_bytes, max_decoded_bytes))
        return None

    def close(self) -> None:
        """Stop the helper; the pairs it still holds are answered None, before this returns.
        Called once per worker, as it stops, after its drain."""
        for done in self._stop():
            self._call(done, None)

    def _start(self) -> bool:
        now = self.loop.time()
        if now < self._may_start_at:
            return False
        self._may_start_at = now + self.restart_interval_s
        paths = [_SOURCE_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "strangler.diff"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
        except OSError:
            log.exception("shadow: the diff helper could not start")
            return False
        assert process.stdin is not None and process.stdout is not None  # both are PIPE
        for pipe in (process.stdin, process.stdout):
            os.set_blocking(pipe.fileno(), False)
            # Not every kernel allows it (pipe-max-size); the default pipe works, in more steps.
            with contextlib.suppress(OSError):
                fcntl.fcntl(pipe.fileno(), _F_SETPIPE_SZ, _PIPE_BYTES)
        self.loop.add_reader(process.stdout.fileno(), self._on_readable)
        self._process = process
        self.starts += 1
        return True

    def _send(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            if piece:
                self._unsent.append(memoryview(piece))
        self._on_writable()

    def _on_writable(self) -> None:
        process = self._process
        if process is None or process.stdin is None:
            return
        fd = process.stdin.fileno()
        while self._unsent:
            piece = self._unsent[0]
            try:
                written = os.write(fd, piece)
            except BlockingIOError:
                written = 0
            except OSError:
                # A broken pipe: the helper is gone, and the reader sees it end too.
                self._lost("its input pipe broke")
                return
            if written < len(piece):
                self._unsent[0] = piece[written:]
                self.loop.add_writer(fd, self._on_writable)
                return
            self._unsent.popleft()
        self.loop.remove_writer(fd)

    def _on_readable(self) -> None:
        process = self._process
        if process is None or process.stdout is None:
            return
        try:
            data = os.read(process.stdout.fileno(), _READ_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lost("it exited")
            return
        received = self._received
        received += data
        while len(received) >= REPLY_HEAD.size:
            (length,) = REPLY_HEAD.unpack_from(received)
            end = REPLY_HEAD.size + length
            if len(received) < end:
                break
            payload = bytes(received[REPLY_HEAD.size : end])
            del received[:end]
            self._answer(decode_comparison(payload))

    def _answer(self, comparison: Comparison | None) -> None:
        if not self._waiting:
            # A reply nobody waits for can only be a protocol fault: start over.
            self._lost("it answered a pair it was not sent")
            return
        done, size = self._waiting.popleft()
        self._waiting_bytes -= size
        self._call(done, comparison)

    def _lost(self, why: str) -> None:
        log.warning(
            "shadow: the diff helper stopped (%s); %d pairs in it not compared",
            why,
            len(self._waiting),
        )
        # Answered from the loop: this may run inside submit(), whose caller is not done yet.
        for done in self._stop():
            self.loop.call_soon(self._call, done, None)

    def _stop(self) -> list[Done]:
        """End the helper (it holds no state worth a graceful exit); returns the waiting pairs."""
        process, self._process = self._process, None
        if process is not None:
            assert process.stdin is not None and process.stdout is not None  # both are PIPE
            self.loop.remove_reader(process.stdout.fileno())
            self.loop.remove_writer(process.stdin.fileno())
            with contextlib.suppress(OSError):
                process.stdin.close()
            process.stdout.close()
            process.kill()
            process.wait()
        self._unsent.clear()
        self._received.clear()
        waiting, self._waiting = self._waiting, collections.deque()
        self._waiting_bytes = 0
        return [done for done, _ in waiting]

    @staticmethod
    def _call(done: Done, comparison: Comparison | None) -> None:
        try:
            done(comparison)
        except Exception:
            # The caller's bug must not take the helper's bookkeeping down with it.
            log.exception("shadow: recording an off-loop comparison failed")
