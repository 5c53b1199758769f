"""An HTTP server on 127.0.0.1 that records every POST: a webhook receiver, a confirm gate."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson


class Receiver:
    """Answers each POST with the next of `statuses`, then with `then` for ever after, and
    records (headers, body, status) of each. Listening once constructed: a POST that comes
    before serve_forever runs waits in the backlog, so no readiness wait is needed."""

    def __init__(self, statuses: list[int] | None = None, *, then: int = 204) -> None:
        self.statuses = list(statuses or [])
        self.then = then
        self.received: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.statuses.pop(0) if receiver.statuses else receiver.then
                receiver.received.append((dict(self.headers.items()), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/strangler"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def bodies(self) -> list[dict[str, object]]:
        """The JSON bodies received, oldest first."""
        return [orjson.loads(body) for _, body, _ in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()
