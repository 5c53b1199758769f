"""Real upstream servers on 127.0.0.1 for integration tests, each in its own thread and loop.

- `EchoUpstream`: a Starlette app under uvicorn that reports what it received (headers, body
  length and digest), streams large bodies, answers slowly on request and echoes WebSockets
  (recording each handshake);
  `/reflect/...` repeats every header, query parameter and body field it was sent.
- `RawUpstream`: a bare asyncio server driven by a test's own coroutine, for upstreams that
  misbehave (reset mid-answer, never answer, send garbage).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import secrets
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

_CHUNK = b"x" * 65536


async def _echo(request: Request) -> Response:
    digest = hashlib.sha256()
    length = 0
    async for piece in request.stream():
        digest.update(piece)
        length += len(piece)
    request.app.state.hits.append(request.url.path)
    request.app.state.requests.append(
        {
            "method": request.method,
            "path": request.url.path,
            "headers": dict(request.headers),
            "body_sha256": digest.hexdigest(),
        }
    )
    return JSONResponse(
        {
            "name": request.app.state.name,
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body_bytes": length,
            "body_sha256": digest.hexdigest(),
            "http_version": request.scope.get("http_version"),
        },
        headers={"X-Upstream": request.app.state.name},
    )


async def _reflect(request: Request) -> Response:
    """What a careless debug page does: repeat every header, query parameter and body field the
    request carried, each value prefixed with the upstream's name so that every one of them
    differs between legacy and new (and so reaches a stored difference unless it is redacted).

    Headers appear twice: by name, and as numbered notes whose keys say nothing about them."""
    name = request.app.state.name
    body = await request.body()
    request.app.state.requests.append(
        {"method": request.method, "path": request.url.path, "headers": dict(request.headers)}
    )
    try:
        fields = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        fields = {}
    return JSONResponse(
        {
            "name": name,
            "headers": {key: f"{name} {value}" for key, value in request.headers.items()},
            "notes": {
                f"note{index}": f"{name} saw {value}"
                for index, value in enumerate(request.headers.values())
            },
            "query": {key: f"{name} {value}" for key, value in request.query_params.items()},
            "query_text": f"{name} {request.url.query}",
            "fields": {
                key: f"{name} {value}"
                for key, value in (fields.items() if isinstance(fields, dict) else ())
            },
            "body_text": f"{name} {body.decode('utf-8', 'replace')}",
        },
        headers={"X-Upstream": name},
    )


async def _document(request: Request) -> Response:
    """GET /document/N: a JSON list of N items; legacy compresses it (like Rack::Deflater), the
    new backend does not."""
    request.app.state.hits.append(request.url.path)
    body = orjson.dumps(
        {"items": [{"id": i, "title": f"item {i}"} for i in range(int(request.path_params["n"]))]}
    )
    headers = {"Content-Type": "application/json"}
    if request.app.state.name == "legacy":
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    return Response(body, headers=headers)


async def _bytes(request: Request) -> Response:
    """GET /bytes/N streams N bytes; ?length=1 sends Content-Length instead of chunked."""
    total = int(request.path_params["n"])

    async def body() -> Any:
        left = total
        while left > 0:
            piece = _CHUNK[: min(left, len(_CHUNK))]
            left -= len(piece)
            yield piece

    headers = {"Content-Length": str(total)} if request.query_params.get("length") else {}
    return StreamingResponse(body(), media_type="application/octet-stream", headers=headers)


async def _slow(request: Request) -> Response:
    await asyncio.sleep(int(request.path_params["ms"]) / 1000)
    return JSONResponse({"slept_ms": int(request.path_params["ms"])})


async def _nonce(request: Request) -> Response:
    """A stable field and a field that is new on every answer (natural noise)."""
    return JSONResponse(
        {"id": request.path_params["n"], "stable": "same", "nonce": secrets.token_hex(8)}
    )


async def _status(request: Request) -> Response:
    code = int(request.path_params["code"])
    return Response(b"" if code in (204, 304) else b"status body", status_code=code)


async def _chaos(request: Request) -> Response:
    """Answers as the test set `app.state.chaos` ({"status": 200, "delay_ms": 0}) right now:
    a backend that turns slow or failing mid-test."""
    chaos = request.app.state.chaos
    request.app.state.requests.append(
        {"method": request.method, "path": request.url.path, "headers": dict(request.headers)}
    )
    if chaos["delay_ms"]:
        await asyncio.sleep(chaos["delay_ms"] / 1000)
    return Response(
        chaos.get("body", "chaos"),
        status_code=chaos["status"],
        headers={"X-Upstream": request.app.state.name},
    )


async def _ws(websocket: WebSocket) -> None:
    websocket.app.state.upgrades.append(
        {"path": websocket.url.path, "headers": dict(websocket.headers)}
    )
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await websocket.send_text("echo:" + message["text"])
            elif message.get("bytes") is not None:
                await websocket.send_bytes(message["bytes"])
    except Exception:
        return


def echo_app(name: str) -> Starlette:
    app = Starlette(
        routes=[
            Route("/bytes/{n:int}", _bytes),
            Route("/document/{n:int}", _document),
            Route("/slow/{ms:int}", _slow),
            Route("/nonce/{n:int}", _nonce),
            Route("/status/{code:int}", _status, methods=["GET", "HEAD", "POST"]),
            Route("/chaos/{rest:path}", _chaos, methods=["GET", "HEAD", "POST"]),
            Route("/reflect/{rest:path}", _reflect, methods=["GET", "POST"]),
            WebSocketRoute("/ws", _ws),
            Route(
                "/{path:path}",
                _echo,
                methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            ),
        ]
    )
    app.state.name = name
    app.state.hits = []
    app.state.chaos = {"status": 200, "delay_ms": 0}
    app.state.requests = []
    app.state.upgrades = []
    return app


class EchoUpstream:
    """uvicorn serving `echo_app(name)` on 127.0.0.1:<free port> in a background thread;
    over https when given uvicorn's `ssl_*` options (ssl_certfile, ssl_keyfile, ...)."""

    def __init__(self, name: str, **ssl_options: Any) -> None:
        self.name = name
        self.app = echo_app(name)
        self.scheme = "https" if ssl_options else "http"
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="off",
            ws="websockets-sansio",
            **ssl_options,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def hits(self) -> list[str]:
        return list(self.app.state.hits)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """What each request to the echo route carried: method, path, headers, body digest."""
        return list(self.app.state.requests)

    @property
    def upgrades(self) -> list[dict[str, Any]]:
        """The WebSocket handshakes `/ws` received (path and headers), accepted or not."""
        return list(self.app.state.upgrades)

    def start(self) -> EchoUpstream:
        self.thread.start()
        started = threading.Event()

        def wait() -> None:
            while not self.server.started:
                if not self.thread.is_alive():
                    break
                started.wait(0.01)

        wait()
        assert self.server.started, "upstream failed to start"
        sockets = self.server.servers[0].sockets
        self.port = sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawUpstream:
    """An asyncio TCP server in its own thread whose connections run `handler`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.connections = 0
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
                # A cancelled handler (stop()) ends quietly: on Python 3.11 asyncio logs a
                # traceback for a cancelled connection task, possibly from a finalizer in the
                # middle of pytest's report, which then crashes with SystemError (CPython 3.11).
                pass
            finally:
                writer.close()

        async def main() -> None:
            self._server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()
            async with self._server:
                await self._server.serve_forever()

        try:
            self.loop.run_until_complete(main())
        except asyncio.CancelledError:
            pass
        finally:
            # Let cancelled handlers finish here, not be destroyed pending by the GC later.
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    def start(self) -> RawUpstream:
        self.thread.start()
        assert self._ready.wait(10), "raw upstream failed to start"
        return self

    def stop(self) -> None:
        def cancel_everything() -> None:
            # Runs on the upstream's own loop, so the task set can't change underneath it.
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks(self.loop):
                task.cancel()

        # The loop may already be closed (its server ended by itself); then nothing is left.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(cancel_everything)
        self.thread.join(timeout=5)


async def read_request_head(reader: asyncio.StreamReader) -> bytes:
    """Read one request's header section (for RawUpstream handlers)."""
    return await reader.readuntil(b"\r\n\r\n")
