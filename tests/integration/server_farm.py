"""Several small HTTP/1.1 servers on one event loop thread: the servers of one balanced backend.

Each `FarmServer` answers every request with `status` (200) and its name after `delay_s` (the
health check `/up` at once, with 200), keeps
connections alive, counts requests by method, and can be killed (listener and connections
closed) and brought back on the same address.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from concurrent.futures import Future
from typing import Any


class FarmServer:
    def __init__(self, farm: ServerFarm, name: str, host: str) -> None:
        self.farm = farm
        self.name = name
        self.host = host
        self.port = 0
        self.delay_s = 0.0
        # The status of every answer but the health check's (which is always 200).
        self.status = 200
        self.hits: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def requests(self, method: str = "GET") -> int:
        return self.hits[method]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method = head.split(b" ", 1)[0].decode()
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                path = head.split(b" ", 2)[1]
                if path != b"/up":
                    self.hits[method] += 1
                    if self.delay_s:
                        await asyncio.sleep(self.delay_s)
                body = self.name.encode()
                status = 200 if path == b"/up" else self.status
                writer.write(
                    b"HTTP/1.1 %d -\r\nContent-Length: %d\r\nX-Server: %s\r\n\r\n%s"
                    % (status, len(body), body, b"" if method == "HEAD" else body)
                )
                if b"connection: close" in head.lower():
                    await writer.drain()
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _kill(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            transport: Any = writer.transport
            transport.abort()

    def start(self) -> FarmServer:
        self.farm.call(self._start())
        return self

    def kill(self) -> None:
        self.farm.call(self._kill())


class ServerFarm:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[FarmServer] = []

    def call(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout=10)

    def add(self, name: str, host: str = "127.0.0.1") -> FarmServer:
        server = FarmServer(self, name, host).start()
        self.servers.append(server)
        return server

    def stop(self) -> None:
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.kill()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
