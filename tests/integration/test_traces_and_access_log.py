"""Traces and the access log of a real gateway: spans in a real OTLP receiver whose parentage
runs through a real backend (its received `traceparent`), and the JSON access log's lines."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.integration.conftest import GatewayFactory
from tests.integration.gateway_process import GatewayProcess
from tests.integration.otlp_receiver import OtlpReceiver
from tests.integration.probes import wait_until
from tests.integration.upstreams import EchoUpstream

# No noise probes: one in twenty copies would also go to legacy a second time (as its own
# span), and these tests read what each backend received.
ROUTES = """\
  - {name: projects, match: "GET /projects(/:id)", stage: shadow, shadow: {noise_sample_rate: 0}}
  - {name: reports, match: "ANY /reports", stage: legacy}
"""
INCOMING_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING_PARENT = "00f067aa0ba902b7"


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver().start()
    yield server
    server.stop()


def _attributes(span: Span) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in span.attributes:
        value = item.value
        found[item.key] = getattr(value, value.WhichOneof("value"))
    return found


def _received_traceparent(upstream: EchoUpstream, path: str) -> str:
    (request,) = [r for r in upstream.requests if r["path"] == path]
    traceparent: str = request["headers"]["traceparent"]
    return traceparent


def _tracing(receiver: OtlpReceiver, ratio: float) -> str:
    return (
        f"tracing: {{otlp_endpoint: {receiver.url()!r}, sample_ratio: {ratio}, "
        "service_name: gateway-under-test}\n"
    )


def test_a_sampled_request_nests_the_backends_spans_under_the_gateways(
    start_gateway: GatewayFactory,
    upstreams: tuple[EchoUpstream, EchoUpstream],
    receiver: OtlpReceiver,
) -> None:
    legacy, new = upstreams
    gw = start_gateway(legacy=legacy.url, new=new.url, routes=ROUTES, extra=_tracing(receiver, 0.0))
    incoming = f"00-{INCOMING_TRACE}-{INCOMING_PARENT}-01"
    answer = httpx.get(gw.url + "/projects/7?token=s3cret", headers={"traceparent": incoming})
    assert answer.status_code == 200
    spans = receiver.wait_for_spans(3)
    by_kind = {}
    for span in spans:
        attributes = _attributes(span)
        key = "shadow" if attributes.get("strangler.shadow") else span.kind
        by_kind[key] = (span, attributes)
    server, server_attributes = by_kind[Span.SPAN_KIND_SERVER]
    client, client_attributes = by_kind[Span.SPAN_KIND_CLIENT]
    shadow, shadow_attributes = by_kind["shadow"]

    # One trace: the caller's. The gateway's SERVER span is the child of the caller's span.
    for span in (server, client, shadow):
        assert span.trace_id.hex() == INCOMING_TRACE
    assert server.parent_span_id.hex() == INCOMING_PARENT
    assert client.parent_span_id == server.span_id
    assert shadow.parent_span_id == server.span_id
    # What legacy received names the CLIENT span as its parent: its spans nest under it.
    legacy_parent = _received_traceparent(legacy, "/projects/7").split("-")
    assert legacy_parent == ["00", INCOMING_TRACE, client.span_id.hex(), "01"]
    # The copy went out as a span of its own, linked to the primary's CLIENT span.
    new_parent = _received_traceparent(new, "/projects/7").split("-")
    assert new_parent[2] == shadow.span_id.hex() != client.span_id.hex()
    assert [(link.trace_id.hex(), link.span_id.hex()) for link in shadow.links] == [
        (INCOMING_TRACE, client.span_id.hex())
    ]

    assert server_attributes["http.request.method"] == "GET"
    assert server_attributes["url.path"] == "/projects/7"  # never the query string
    assert server_attributes["http.response.status_code"] == 200
    assert server_attributes["strangler.route"] == "projects"
    assert server_attributes["strangler.stage"] == "shadow"
    assert server_attributes["strangler.side"] == "legacy"
    assert client_attributes["strangler.backend"] == "legacy"
    assert client_attributes["strangler.attempts"] == 1
    # The echo servers answer with their own names: the copy differs from the primary.
    assert shadow_attributes["strangler.shadow.verdict"] == "different"
    assert shadow_attributes["strangler.shadow.differences"] >= 1
    assert shadow_attributes["strangler.backend"] == "new"
    assert server.start_time_unix_nano <= client.start_time_unix_nano
    assert client.end_time_unix_nano <= server.end_time_unix_nano
    for span in spans:
        assert "s3cret" not in str(span)


def test_unsampled_requests_send_no_span_and_say_so_upstream(
    start_gateway: GatewayFactory,
    upstreams: tuple[EchoUpstream, EchoUpstream],
    receiver: OtlpReceiver,
) -> None:
    legacy, new = upstreams
    gw = start_gateway(legacy=legacy.url, new=new.url, routes=ROUTES, extra=_tracing(receiver, 1.0))
    # The caller decided not to sample: parent-based sampling follows it even at ratio 1.
    unsampled = f"00-{INCOMING_TRACE}-{INCOMING_PARENT}-00"
    assert httpx.get(gw.url + "/reports", headers={"traceparent": unsampled}).status_code == 200
    assert _received_traceparent(legacy, "/reports").endswith("-00")
    # A new trace at ratio 1 is sampled, and the flag says so upstream.
    assert httpx.post(gw.url + "/reports", content=b"x").status_code == 200
    spans = receiver.wait_for_spans(2)
    assert all(span.trace_id.hex() != INCOMING_TRACE for span in spans)
    gw.stop()
    # Nothing more arrived for the unsampled request by the time the gateway drained.
    assert len(receiver.spans()) == 2


def _log_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


@pytest.mark.parametrize("workers", [1, 2])
def test_the_access_log_has_one_json_line_per_request_and_reopens_on_sigusr1(
    start_gateway: GatewayFactory,
    upstreams: tuple[EchoUpstream, EchoUpstream],
    tmp_path: Path,
    workers: int,
) -> None:
    legacy, new = upstreams
    log_path = tmp_path / "access.log"
    gw: GatewayProcess = start_gateway(
        legacy=legacy.url,
        new=new.url,
        routes=ROUTES,
        extra=f"access_log: {{path: {str(log_path)!r}}}\n",
        workers=workers,
    )
    with httpx.Client(base_url=gw.url, trust_env=False) as client:
        answer = client.post(
            "/reports?page=2&password=hunter2",
            content=b"12345",
            headers={"Cookie": "_app_session=sesame", "Authorization": "Bearer xyz"},
        )
        assert answer.status_code == 200
        request_id = answer.headers["x-request-id"]
        assert client.get("/projects//1").status_code == 400
    wait_until(lambda: len(_log_lines(log_path)) == 2, "two access log lines")
    first, refused = _log_lines(log_path)
    assert list(first) == [
        "ts",
        "request_id",
        "trace_id",
        "client",
        "method",
        "path",
        "route",
        "stage",
        "side",
        "status",
        "bytes_in",
        "bytes_out",
        "duration_ms",
        "upstream_ms",
        "canary_reason",
        "shadow",
        "user",
        "fault",
    ]
    assert first["request_id"] == request_id
    assert first["client"] == "127.0.0.1"
    assert (first["method"], first["route"], first["stage"], first["side"]) == (
        "POST",
        "reports",
        "legacy",
        "legacy",
    )
    assert first["path"] == "/reports?page=2&password=[FILTERED]"
    assert first["status"] == 200
    assert first["bytes_in"] == 5
    assert first["bytes_out"] == int(answer.headers["content-length"])
    assert first["duration_ms"] >= first["upstream_ms"] > 0
    assert (refused["status"], refused["side"], refused["route"]) == (400, "gateway", "_default")
    text = log_path.read_text()
    # Secrets with letters past `f`: a random hex request id may hold any hex string.
    for secret in ("hunter2", "sesame", "xyz"):
        assert secret not in text

    # logrotate: the file is moved, then the gateway is told to open its path again.
    rotated = tmp_path / "access.log.1"
    os.rename(log_path, rotated)
    gw.signal(signal.SIGUSR1)
    pokes = 0

    def poke() -> bool:
        # The writer reopens before its next write: give it one. A poke that
        # lands before the worker has the signal goes to the moved file, which
        # is what logrotate expects: nothing is lost either way.
        nonlocal pokes
        httpx.get(gw.url + "/reports", trust_env=False)
        pokes += 1
        return log_path.exists()

    wait_until(poke, "the access log reopened", timeout_s=10)
    wait_until(
        lambda: len(_log_lines(rotated)) + len(_log_lines(log_path)) == 2 + pokes,
        "every poke logged once",
    )
    old_lines = _log_lines(rotated)
    assert [line["request_id"] for line in old_lines[:2]] == [
        first["request_id"],
        refused["request_id"],
    ]
    new_lines = _log_lines(log_path)
    assert new_lines
    assert all(
        (line["method"], line["path"]) == ("GET", "/reports") for line in old_lines[2:] + new_lines
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_sigusr1_without_an_access_log_changes_nothing(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream], workers: int
) -> None:
    legacy, new = upstreams
    gw = start_gateway(legacy=legacy.url, new=new.url, routes=ROUTES, workers=workers)
    gw.signal(signal.SIGUSR1)
    for _ in range(5):
        assert httpx.get(gw.url + "/reports", trust_env=False).status_code == 200
    assert gw.proc.poll() is None
    assert "exited" not in gw.stderr_text()
    assert gw.stop() == 0
