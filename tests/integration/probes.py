"""Watching a running gateway from outside: its memory, its log, and an upstream that reports
each request as it arrives, so tests wait for events instead of sleeping.

- `RssMonitor`: samples the resident memory of a process and its children every 50 ms from a
  thread; `growth` is the peak over the baseline taken when the `with` block was entered.
- `wait_for_log_count`: waits until N stderr lines contain a text (one per worker on reload).
- `wait_until`: waits for a state that is visible from outside (a socket, a process count).
- `AnnouncingUpstream`: a keep-alive HTTP/1.1 upstream that puts each request path on a queue
  the moment its head arrives, answers `/slow/MS` after MS ms, and counts its open connections.
- `steady_traffic`: requests from many simulated users from a thread while a block runs,
  recording which upstream answered each one (or "error").
- `CountingResponse`: reads an HTTP/1.1 response off a socket, counting the body's bytes
  without keeping them (for gigabyte bodies).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType

import httptools
import httpx
import orjson
import psutil

from tests.integration.gateway_process import GatewayProcess
from tests.integration.upstreams import RawUpstream, read_request_head

MIB = 1 << 20


class RssMonitor:
    """Peak resident memory of `pid` plus all its descendants, sampled every `interval_s`."""

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.baseline = 0
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="rss-monitor", daemon=True)

    def __repr__(self) -> str:
        return (
            f"<RssMonitor pid={self.pid} baseline={self.baseline / MIB:.1f} MiB "
            f"peak={self.peak / MIB:.1f} MiB samples={self.samples}>"
        )

    @property
    def growth(self) -> int:
        return self.peak - self.baseline

    def sample(self) -> int:
        try:
            root = psutil.Process(self.pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        total = 0
        for process in processes:
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total

    def record(self) -> None:
        """Take one sample now (the thread takes them every interval_s)."""
        with self._lock:
            self.peak = max(self.peak, self.sample())
            self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.record()

    def __enter__(self) -> RssMonitor:
        self.baseline = self.sample()
        self.peak = self.baseline
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.record()


def wait_for_log_count(
    gateway: GatewayProcess, text: str, count: int, timeout_s: float = 10.0
) -> list[str]:
    """Block until at least `count` stderr lines contain `text`; returns those lines."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [line for line in list(gateway.stderr_lines) if text in line]
        if len(found) >= count:
            return found
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"{len(found)} of {count} log lines with {text!r}; stderr was:\n"
                + gateway.stderr_text()
            )
        time.sleep(0.02)


def shadow_results(gw: GatewayProcess) -> dict[str, dict[str, object]]:
    """Stop the gateway and read the per-route results its worker logs when it stops."""
    assert gw.stop() == 0
    out: dict[str, dict[str, object]] = {}
    for line in gw.stderr_lines:
        if "shadow results " in line:
            stats = orjson.loads(line.split("shadow results ", 1)[1])
            out[stats["route"]] = stats
    return out


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    """Block until `predicate()` holds (a state observed from outside), or fail naming `what`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def listening_pids(port: int, pids: list[int]) -> list[int]:
    """Which of `pids` hold a LISTEN socket on `port`."""
    holders = []
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns):
            holders.append(pid)
    return holders


def connections_to(pid: int, port: int) -> int:
    """How many ESTABLISHED TCP connections process `pid` has to remote `port`."""
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.NoSuchProcess:
        return 0
    return sum(
        1 for c in conns if c.status == psutil.CONN_ESTABLISHED and c.raddr and c.raddr.port == port
    )


@contextlib.contextmanager
def steady_traffic(url: str, per_second: float, *, seed: int = 7) -> Iterator[list[str]]:
    """GETs of `url` from random users (X-User-Id) at about `per_second` until the block ends;
    yields the list of answers' X-Upstream values (a non-2xx answer or a failed request is
    recorded as "error:<status or exception>"), filled as they come."""
    sides: list[str] = []
    stop = threading.Event()

    def run() -> None:
        rng = random.Random(seed)
        with httpx.Client(timeout=5.0) as client:
            while not stop.is_set():
                user = f"user-{rng.randrange(1_000_000)}"
                try:
                    response = client.get(url, headers={"X-User-Id": user})
                except httpx.HTTPError as exc:
                    sides.append(f"error:{type(exc).__name__}")
                else:
                    ok = 200 <= response.status_code < 300
                    upstream = response.headers.get("x-upstream", "?")
                    sides.append(upstream if ok else f"error:{response.status_code}")
                stop.wait(1 / per_second)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield sides
    finally:
        stop.set()
        thread.join(10)


class AnnouncingUpstream:
    """A keep-alive upstream answering `{"name", "path"}`; `arrivals` gets each path on arrival."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.arrivals: queue.Queue[str] = queue.Queue()
        self.open_connections = 0
        self.raw = RawUpstream(self._handle)

    def __repr__(self) -> str:
        return f"<AnnouncingUpstream {self.name}: {self.open_connections} open connections>"

    @property
    def url(self) -> str:
        return self.raw.url

    @property
    def port(self) -> int:
        return self.raw.port

    def start(self) -> AnnouncingUpstream:
        self.raw.start()
        return self

    def stop(self) -> None:
        self.raw.stop()

    def wait_arrival(self, timeout_s: float = 10.0) -> str:
        return self.arrivals.get(timeout=timeout_s)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_connections += 1
        try:
            while True:
                head = await read_request_head(reader)
                path = head.split(b"\r\n", 1)[0].split(b" ")[1].decode()
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        await reader.readexactly(int(value))
                self.arrivals.put(path)
                if path.startswith("/slow/"):
                    await asyncio.sleep(int(path.split("/")[2]) / 1000)
                body = orjson.dumps({"name": self.name, "path": path})
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
        finally:
            self.open_connections -= 1


class CountingResponse:
    """One HTTP/1.1 response read off `sock`; the body is counted, never kept."""

    def __init__(self, sock: socket.socket, bufsize: int = MIB) -> None:
        self.sock = sock
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body_bytes = 0
        self.is_head_done = False
        self.is_complete = False
        self.is_closed = False
        self._buffer = bytearray(bufsize)
        self._view = memoryview(self._buffer)
        self._parser = httptools.HttpResponseParser(self)

    def __repr__(self) -> str:
        return (
            f"<CountingResponse {self.status} body={self.body_bytes} "
            f"complete={self.is_complete} closed={self.is_closed}>"
        )

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode().lower()] = value.decode()

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.is_head_done = True

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)

    def on_message_complete(self) -> None:
        self.is_complete = True

    def read_some(self, max_bytes: int) -> int:
        """One recv of at most `max_bytes`; returns how many bytes came (0 at EOF)."""
        try:
            count = self.sock.recv_into(self._view[:max_bytes])
        except ConnectionResetError:
            count = 0
        if not count:
            self.is_closed = True
            return 0
        self._parser.feed_data(self._view[:count])
        return count

    def read_head(self) -> CountingResponse:
        while not self.is_head_done and not self.is_closed:
            self.read_some(len(self._buffer))
        return self

    def read_to_end(
        self, on_progress: Callable[[], object] | None = None, every_bytes: int = 16 * MIB
    ) -> CountingResponse:
        """Read the rest; `on_progress` is called after each `every_bytes` read, so a probe
        (an RssMonitor) looks at the server during the transfer, however the threads are
        scheduled."""
        next_call = every_bytes
        read = 0
        while not self.is_complete and not self.is_closed:
            read += self.read_some(len(self._buffer))
            if on_progress is not None and read >= next_call:
                next_call += every_bytes
                on_progress()
        return self
