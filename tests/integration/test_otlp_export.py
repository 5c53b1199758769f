"""The span exporter against a real OTLP/HTTP receiver on 127.0.0.1: what arrives, in how many
requests, with which headers, and what the counters say when the receiver fails or is away."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from strangler.observe.tracing import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_SERVER,
    SpanExporter,
    SpanRecord,
    TracingSettings,
    new_span_id,
    new_trace_id,
)
from tests.integration.otlp_receiver import OtlpReceiver
from tests.integration.probes import wait_until


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def reserved_port() -> Iterator[int]:
    """A port on 127.0.0.1 that is bound but not listening: connecting to it is refused, and a
    receiver can later listen on it (SO_REUSEPORT) without another test taking it meanwhile."""
    reservation = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    reservation.bind(("127.0.0.1", 0))
    yield reservation.getsockname()[1]
    reservation.close()


MakeExporter = Callable[..., SpanExporter]


@pytest.fixture
def make_exporter() -> Iterator[MakeExporter]:
    """Builds and starts exporters (`start=False` leaves one new); stops them all afterwards."""
    made: list[SpanExporter] = []

    def make(
        endpoint: str,
        *,
        headers: dict[str, str] | None = None,
        timeout_s: float = 2.0,
        start: bool = True,
        **kwargs: Any,
    ) -> SpanExporter:
        settings = TracingSettings(endpoint, headers=headers or {}, timeout_s=timeout_s)
        exporter = SpanExporter(settings, **kwargs)
        if start:
            exporter.start()
        made.append(exporter)
        return exporter

    yield make
    for exporter in made:
        exporter.stop(timeout_s=2.0)


def _span(name: str = "GET /api/projects/:id", **fields: Any) -> SpanRecord:
    defaults: dict[str, Any] = {
        "trace_id": new_trace_id(),
        "span_id": new_span_id(),
        "parent_span_id": b"",
        "name": name,
        "kind": SPAN_KIND_SERVER,
        "start_ns": 1_700_000_000_000_000_000,
        "end_ns": 1_700_000_000_001_000_000,
        "attributes": {},
        "is_error": False,
    }
    return SpanRecord(**(defaults | fields))


def _submit(exporter: SpanExporter, count: int, prefix: str = "span") -> list[SpanRecord]:
    spans = [_span(f"{prefix} {i}") for i in range(count)]
    for span in spans:
        exporter.submit(span)
    return spans


def _counted(exporter: SpanExporter, *, exported: int = 0, failed: int = 0) -> Callable[[], bool]:
    return lambda: exporter.exported >= exported and exporter.failed >= failed


# ---------------------------------------------------------------------------------- what arrives


def test_spans_arrive_with_ids_kind_attributes_links_and_status(
    receiver: OtlpReceiver, make_exporter: MakeExporter
) -> None:
    exporter = make_exporter(
        receiver.url(), resource_attributes={"service.instance.id": "gw-1:4242"}
    )
    trace_id, server_id, client_id = new_trace_id(), new_span_id(), new_span_id()
    linked = (new_trace_id(), new_span_id())
    server_span = _span(
        "GET /api/projects/:id",
        trace_id=trace_id,
        span_id=server_id,
        attributes={"http.request.method": "GET", "http.response.status_code": 502},
        is_error=True,
    )
    client_span = _span(
        "legacy",
        trace_id=trace_id,
        span_id=client_id,
        parent_span_id=server_id,
        kind=SPAN_KIND_CLIENT,
        attributes={"strangler.shadow": False, "strangler.weight": 0.5},
        links=(linked,),
    )
    exporter.submit(server_span)
    exporter.submit(client_span)
    exporter.stop()

    assert (exporter.exported, exporter.failed, exporter.dropped) == (2, 0, 0)
    (received,) = receiver.received
    assert received.path == "/v1/traces"
    assert received.headers["content-type"] == "application/x-protobuf"
    (resource_spans,) = received.request.resource_spans
    resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
    assert resource == {"service.name": "strangler", "service.instance.id": "gw-1:4242"}
    (scope_spans,) = resource_spans.scope_spans
    assert scope_spans.scope.name == "strangler"
    server, client = scope_spans.spans
    assert (server.trace_id.hex(), server.span_id.hex(), server.parent_span_id) == (
        trace_id.decode(),
        server_id.decode(),
        b"",
    )
    assert (server.name, server.kind, server.status.code) == ("GET /api/projects/:id", 2, 2)
    assert {kv.key: kv.value.WhichOneof("value") for kv in server.attributes} == {
        "http.request.method": "string_value",
        "http.response.status_code": "int_value",
    }
    assert server.attributes[1].value.int_value == 502
    assert (server.start_time_unix_nano, server.end_time_unix_nano) == (
        1_700_000_000_000_000_000,
        1_700_000_000_001_000_000,
    )
    assert (client.trace_id, client.parent_span_id.hex(), client.span_id.hex()) == (
        server.trace_id,
        server_id.decode(),
        client_id.decode(),
    )
    assert (client.name, client.kind, client.status.code) == ("legacy", 3, 0)
    assert [(kv.key, kv.value.WhichOneof("value")) for kv in client.attributes] == [
        ("strangler.shadow", "bool_value"),
        ("strangler.weight", "double_value"),
    ]
    assert [(link.trace_id.hex(), link.span_id.hex()) for link in client.links] == [
        (linked[0].decode(), linked[1].decode())
    ]


def test_a_thousand_spans_go_in_batches_no_larger_than_batch_size(
    receiver: OtlpReceiver, make_exporter: MakeExporter
) -> None:
    exporter = make_exporter(receiver.url(), batch_size=100, interval_s=60.0)
    submitted = _submit(exporter, 1000)
    exporter.stop()

    assert (exporter.exported, exporter.failed, exporter.dropped) == (1000, 0, 0)
    sizes = [
        len(received.request.resource_spans[0].scope_spans[0].spans)
        for received in receiver.received
    ]
    assert len(sizes) >= 2
    assert max(sizes) <= 100
    assert sorted(span.span_id.hex() for span in receiver.spans()) == sorted(
        span.span_id.decode() for span in submitted
    )


def test_a_full_batch_goes_before_the_interval_is_up(
    receiver: OtlpReceiver, make_exporter: MakeExporter
) -> None:
    exporter = make_exporter(receiver.url(), batch_size=50, interval_s=60.0)
    _submit(exporter, 50)
    wait_until(_counted(exporter, exported=50), "a full batch", timeout_s=3.0)
    assert [len(r.request.resource_spans[0].scope_spans[0].spans) for r in receiver.received] == [
        50
    ]


def test_fewer_than_a_batch_go_when_the_interval_is_up(
    receiver: OtlpReceiver, make_exporter: MakeExporter
) -> None:
    exporter = make_exporter(receiver.url(), interval_s=0.05)
    _submit(exporter, 3)
    wait_until(_counted(exporter, exported=3), "the interval's export", timeout_s=3.0)
    assert len(receiver.spans()) == 3


@pytest.mark.parametrize("is_started", [True, False])
def test_stop_sends_what_is_pending(
    receiver: OtlpReceiver, make_exporter: MakeExporter, is_started: bool
) -> None:
    exporter = make_exporter(receiver.url(), interval_s=60.0, start=is_started)
    _submit(exporter, 5)
    exporter.stop()
    assert (exporter.exported, exporter.pending) == (5, 0)
    assert sorted(span.name for span in receiver.spans()) == [f"span {i}" for i in range(5)]
    assert repr(exporter).endswith("stopped: 0 pending, 5 exported, 0 failed, 0 dropped>")


def test_configured_headers_arrive_with_every_export(
    receiver: OtlpReceiver, make_exporter: MakeExporter
) -> None:
    exporter = make_exporter(
        receiver.url() + "/v1/traces/",
        headers={"Authorization": "Bearer t0k3n", "X-Scope-OrgID": "tenant-1", "content-type": "x"},
        batch_size=10,
        interval_s=60.0,
    )
    _submit(exporter, 25)
    exporter.stop()
    assert len(receiver.received) == 3
    for received in receiver.received:
        assert received.path == "/v1/traces"
        assert received.headers["authorization"] == "Bearer t0k3n"
        assert received.headers["x-scope-orgid"] == "tenant-1"
        # The body is protobuf whatever the configured headers say.
        assert received.headers["content-type"] == "application/x-protobuf"


def test_spans_the_collector_rejects_count_as_failed(
    receiver: OtlpReceiver, make_exporter: MakeExporter
) -> None:
    receiver.answer = ExportTraceServiceResponse(
        partial_success=ExportTracePartialSuccess(rejected_spans=1, error_message="too old")
    ).SerializeToString()
    exporter = make_exporter(receiver.url(), interval_s=60.0)
    _submit(exporter, 3)
    exporter.stop()
    assert (exporter.exported, exporter.failed) == (2, 1)


# ------------------------------------------------------------------------- when things go wrong


def test_a_receiver_answering_500_counts_failed_and_the_next_batch_gets_through(
    receiver: OtlpReceiver, make_exporter: MakeExporter
) -> None:
    exporter = make_exporter(receiver.url(), interval_s=0.05)
    receiver.status = 500
    _submit(exporter, 3, "lost")
    wait_until(_counted(exporter, failed=3), "the failed batch", timeout_s=3.0)
    receiver.status = 200
    _submit(exporter, 2, "kept")
    wait_until(_counted(exporter, exported=2), "the next batch", timeout_s=3.0)

    assert (exporter.exported, exporter.failed) == (2, 3)
    assert [received.status for received in receiver.received] == [500, 200]
    assert sorted(span.name for span in receiver.spans()) == ["kept 0", "kept 1"]


def test_a_closed_port_counts_failed_until_the_receiver_listens(
    reserved_port: int, make_exporter: MakeExporter
) -> None:
    exporter = make_exporter(f"http://127.0.0.1:{reserved_port}", interval_s=0.05)
    _submit(exporter, 3, "lost")
    wait_until(_counted(exporter, failed=3), "connection refused", timeout_s=3.0)

    late = OtlpReceiver(reserved_port).start()
    try:
        _submit(exporter, 2, "kept")
        wait_until(_counted(exporter, exported=2), "the receiver, now listening", timeout_s=3.0)
        assert sorted(span.name for span in late.spans()) == ["kept 0", "kept 1"]
    finally:
        late.stop()
    assert exporter.failed == 3


def test_stop_with_the_receiver_away_counts_every_pending_span_failed(
    reserved_port: int, make_exporter: MakeExporter
) -> None:
    exporter = make_exporter(f"http://127.0.0.1:{reserved_port}", batch_size=10, interval_s=60.0)
    _submit(exporter, 25)
    exporter.stop()
    assert (exporter.exported, exporter.failed, exporter.pending) == (0, 25, 0)


def test_a_receiver_that_never_answers_times_out_and_counts_failed(
    make_exporter: MakeExporter,
) -> None:
    # Listening but never accepting: the connection completes in the backlog, no answer comes.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        exporter = make_exporter(f"http://127.0.0.1:{port}", interval_s=0.05, timeout_s=0.2)
        _submit(exporter, 4)
        wait_until(_counted(exporter, failed=4), "the timeout", timeout_s=3.0)
    assert exporter.exported == 0


def test_a_connection_the_receiver_closed_is_reopened_without_losing_a_batch(
    receiver: OtlpReceiver, make_exporter: MakeExporter
) -> None:
    receiver.should_drop_connections = True
    exporter = make_exporter(receiver.url(), interval_s=0.05)
    _submit(exporter, 2, "first")
    wait_until(_counted(exporter, exported=2), "the first batch", timeout_s=3.0)
    receiver.wait_for_closed_connections(1)
    _submit(exporter, 2, "second")
    wait_until(_counted(exporter, exported=4), "the second batch", timeout_s=3.0)
    assert exporter.failed == 0
    assert len(receiver.received) == 2


def test_failures_are_logged_once_a_minute(
    reserved_port: int, make_exporter: MakeExporter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="strangler.tracing")
    exporter = make_exporter(f"http://127.0.0.1:{reserved_port}", interval_s=0.05)
    _submit(exporter, 1)
    wait_until(_counted(exporter, failed=1), "the first failure", timeout_s=3.0)
    _submit(exporter, 2)
    wait_until(_counted(exporter, failed=3), "the second failure", timeout_s=3.0)
    records = [r for r in caplog.records if r.name == "strangler.tracing"]
    assert len(records) == 1
    assert f"http://127.0.0.1:{reserved_port}/v1/traces" in records[0].getMessage()


# -------------------------------------------------------------------------------------- https


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "otlp test receiver")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[OtlpReceiver, Path]]:
    cert_path, key_path = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server = OtlpReceiver(tls=context).start()
    yield server, cert_path
    server.stop()


def test_https_endpoint_is_verified_against_the_default_trust_store(
    tls_receiver: tuple[OtlpReceiver, Path],
    make_exporter: MakeExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver, cert_path = tls_receiver
    # Not yet trusted: the handshake fails and the batch is counted.
    untrusting = make_exporter(receiver.url("https"), interval_s=60.0)
    _submit(untrusting, 1)
    untrusting.stop()
    assert (untrusting.exported, untrusting.failed) == (0, 1)
    # OpenSSL's default verify paths honour SSL_CERT_FILE; the exporter builds its default
    # context when it first connects.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))
    trusting = make_exporter(receiver.url("https"), interval_s=60.0)
    _submit(trusting, 2)
    trusting.stop()
    assert (trusting.exported, trusting.failed) == (2, 0)
    assert len(receiver.spans()) == 2
