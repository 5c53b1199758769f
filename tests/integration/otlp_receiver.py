"""A real OTLP/HTTP trace receiver on 127.0.0.1 for tests: it decodes every POST body with the
official `opentelemetry-proto` messages and keeps it with the answer it gave."""

from __future__ import annotations

import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span


class Received(NamedTuple):
    path: str
    headers: dict[str, str]  # names lowercased
    request: ExportTraceServiceRequest
    status: int  # what the receiver answered


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Binds beside a reservation socket that holds the port (see `reserved_port`).
    allow_reuse_port = True
    receiver: OtlpReceiver

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        super().shutdown_request(request)
        self.receiver.count_closed_connection()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a collector does
    server: _Server

    def do_POST(self) -> None:
        receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        status, answer = receiver.status, receiver.answer
        headers = {name.lower(): value for name, value in self.headers.items()}
        # Kept before the answer goes out: once the exporter counts a batch, it is here.
        receiver.record(
            Received(self.path, headers, ExportTraceServiceRequest.FromString(body), status)
        )
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        # Closing without a "Connection: close" is what an idle timeout looks like to the client.
        self.close_connection = receiver.should_drop_connections

    def log_message(self, format: str, *args: Any) -> None:
        pass


class OtlpReceiver:
    """An OTLP/HTTP trace receiver: decodes every POST body and keeps it with the answer it got
    (`status`, `answer`); `should_drop_connections` closes each connection after its answer."""

    def __init__(self, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.status = 200
        self.answer = b""
        self.should_drop_connections = False
        self.received: list[Received] = []
        self.closed_connections = 0
        self._changed = threading.Condition()
        self._server = _Server(("127.0.0.1", port), _Handler, bind_and_activate=False)
        self._server.receiver = self
        self._server.server_bind()
        self._server.server_activate()
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port: int = self._server.server_address[1]
        # stop() waits up to one poll interval for the serving loop to notice.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def start(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    def record(self, received: Received) -> None:
        with self._changed:
            self.received.append(received)
            self._changed.notify_all()

    def spans(self, status: int = 200) -> list[Span]:
        with self._changed:
            return [
                span
                for received in self.received
                if received.status == status
                for resource_spans in received.request.resource_spans
                for scope_spans in resource_spans.scope_spans
                for span in scope_spans.spans
            ]

    def wait_for_spans(self, count: int, timeout_s: float = 10.0) -> list[Span]:
        """At least `count` spans accepted, or fail saying how many came."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._accepted()) >= count, timeout_s):
                raise AssertionError(f"{len(self._accepted())} of {count} spans arrived")
            return self._accepted()

    def _accepted(self) -> list[Span]:
        return [
            span
            for received in self.received
            if received.status == 200
            for resource_spans in received.request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]

    def wait_for_closed_connections(self, count: int, timeout_s: float = 3.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self.closed_connections >= count, timeout_s):
                raise AssertionError(f"{self.closed_connections} of {count} connections closed")

    def count_closed_connection(self) -> None:
        with self._changed:
            self.closed_connections += 1
            self._changed.notify_all()
