"""Tracing's pure parts: the traceparent header, the sampling decision, the OTLP encoding of a
span, the export URL, and the exporter's queue bound (its thread never started)."""

from __future__ import annotations

import random

import pytest

from strangler.observe.journal import ratio_threshold
from strangler.observe.tracing import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_SERVER,
    ExportTarget,
    SpanExporter,
    SpanRecord,
    TracingSettings,
    build_request,
    build_resource,
    encode_span,
    export_target,
    format_traceparent,
    is_sampled,
    new_span_id,
    new_trace_id,
    parse_traceparent,
)

# The example of W3C Trace Context §3.2.
TRACE_ID = b"4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = b"00f067aa0ba902b7"
TRACEPARENT = b"00-" + TRACE_ID + b"-" + PARENT_ID + b"-01"


def _span(
    name: str = "GET /api/projects/:id",
    *,
    trace_id: bytes = TRACE_ID,
    span_id: bytes = b"b7ad6b7169203331",
    parent_span_id: bytes = PARENT_ID,
    kind: int = SPAN_KIND_SERVER,
    attributes: dict[str, str | int | float | bool] | None = None,
    is_error: bool = False,
    links: tuple[tuple[bytes, bytes], ...] = (),
) -> SpanRecord:
    return SpanRecord(
        trace_id,
        span_id,
        parent_span_id,
        name,
        kind,
        1_700_000_000_000_000_000,
        1_700_000_000_002_500_000,
        attributes or {},
        is_error,
        links,
    )


# --------------------------------------------------------------------------------- traceparent


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (TRACEPARENT, (TRACE_ID, PARENT_ID, True)),
        (b"00-" + TRACE_ID + b"-" + PARENT_ID + b"-00", (TRACE_ID, PARENT_ID, False)),
        # Bit 0 is "sampled"; the other flag bits don't change it.
        (b"00-" + TRACE_ID + b"-" + PARENT_ID + b"-03", (TRACE_ID, PARENT_ID, True)),
        (b"00-" + TRACE_ID + b"-" + PARENT_ID + b"-02", (TRACE_ID, PARENT_ID, False)),
        (b"00-" + TRACE_ID + b"-" + PARENT_ID + b"-ff", (TRACE_ID, PARENT_ID, True)),
        # Optional whitespace around a field value is not part of it.
        (b" " + TRACEPARENT + b"\t", (TRACE_ID, PARENT_ID, True)),
        # A later version is parsed as far as version 00 goes (§4.3).
        (b"01-" + TRACE_ID + b"-" + PARENT_ID + b"-01", (TRACE_ID, PARENT_ID, True)),
        (
            b"cc-" + TRACE_ID + b"-" + PARENT_ID + b"-01-what-the-future-adds",
            (TRACE_ID, PARENT_ID, True),
        ),
    ],
)
def test_valid_traceparent_gives_ids_and_sampled_flag(
    value: bytes, expected: tuple[bytes, bytes, bool]
) -> None:
    assert parse_traceparent(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"00",
        TRACEPARENT[:-1],
        # Version 00 is exactly 55 characters.
        TRACEPARENT + b"-00",
        TRACEPARENT + b" x",
        # Version ff is invalid, and a later version's extra part starts with a dash.
        b"ff-" + TRACE_ID + b"-" + PARENT_ID + b"-01",
        b"01-" + TRACE_ID + b"-" + PARENT_ID + b"-01x",
        # Lowercase hex only, everywhere.
        b"00-" + TRACE_ID.upper() + b"-" + PARENT_ID + b"-01",
        b"00-" + TRACE_ID + b"-" + PARENT_ID.upper() + b"-01",
        b"0A-" + TRACE_ID + b"-" + PARENT_ID + b"-01",
        b"00-" + TRACE_ID + b"-" + PARENT_ID + b"-0F",
        b"0g-" + TRACE_ID + b"-" + PARENT_ID + b"-01",
        b"00-" + TRACE_ID[:-1] + b"z-" + PARENT_ID + b"-01",
        # All-zero ids are invalid.
        b"00-" + b"0" * 32 + b"-" + PARENT_ID + b"-01",
        b"00-" + TRACE_ID + b"-" + b"0" * 16 + b"-01",
        # Fields out of place: a dash moved, a different delimiter, a field a digit short.
        b"00-" + TRACE_ID[:-1] + b"-" + b"0" + PARENT_ID + b"-01",
        b"00_" + TRACE_ID + b"_" + PARENT_ID + b"_01",
        b"00-" + TRACE_ID + b"-" + PARENT_ID[:-1] + b"-01-",
        b"-" * 55,
    ],
)
def test_invalid_traceparent_is_none(value: bytes | None) -> None:
    assert parse_traceparent(value) is None


def test_new_ids_make_a_traceparent_that_parses_back() -> None:
    trace_id, span_id = new_trace_id(), new_span_id()
    assert (len(trace_id), len(span_id)) == (32, 16)
    assert parse_traceparent(format_traceparent(trace_id, span_id, True)) == (
        trace_id,
        span_id,
        True,
    )
    assert parse_traceparent(format_traceparent(trace_id, span_id, False)) == (
        trace_id,
        span_id,
        False,
    )


# ------------------------------------------------------------------------------------ sampling

LOW_ZERO = b"ffffffffffffffff0000000000000000"
LOW_MAX = b"0000000000000000ffffffffffffffff"


@pytest.mark.parametrize(
    ("trace_id", "ratio", "parent_sampled", "sampled"),
    [
        # Ratio 0 samples nothing, even the smallest id; ratio 1 everything, even the largest.
        (LOW_ZERO, 0.0, None, False),
        (LOW_MAX, 1.0, None, True),
        # A parent's flag decides, whatever the ratio says.
        (LOW_MAX, 0.0, True, True),
        (LOW_ZERO, 1.0, False, False),
        # The threshold: lower 64 bits < ratio * 2**64; the upper 64 bits play no part.
        (b"00000000000000007fffffffffffffff", 0.5, None, True),
        (b"ffffffffffffffff8000000000000000", 0.5, None, False),
        (b"00000000000000003fffffffffffffff", 0.25, None, True),
        (b"00000000000000004000000000000000", 0.25, None, False),
        (b"ffffffffffffffff0000000000000001", 0.01, None, True),
        # 0.01 * 2**64 in binary floating point is 184467440737095520, 0x028f5c28f5c28f60.
        (b"0000000000000000028f5c28f5c28f5f", 0.01, None, True),
        (b"0000000000000000028f5c28f5c28f60", 0.01, None, False),
    ],
)
def test_sampling_decision(
    trace_id: bytes, ratio: float, parent_sampled: bool | None, sampled: bool
) -> None:
    assert is_sampled(trace_id, ratio, parent_sampled) is sampled


def test_ratio_samples_about_its_share_of_random_traces() -> None:
    sampled = sum(is_sampled(new_trace_id(), 0.25, None) for _ in range(20_000))
    # 5000 expected, standard deviation ~61: ten of them either side.
    assert 4_400 < sampled < 5_600


# ------------------------------------------------------------------------------------ encoding


def test_span_encoding_converts_ids_and_keeps_attribute_types() -> None:
    link = (b"0af7651916cd43dd8448eb211c80319c", b"00f067aa0ba902b7")
    span = encode_span(
        _span(
            kind=SPAN_KIND_CLIENT,
            attributes={
                "http.request.method": "GET",
                "http.response.status_code": 502,
                "strangler.shadow": True,
                "strangler.weight": 0.25,
                "big": 2**70,
            },
            is_error=True,
            links=(link,),
        )
    )
    assert span.trace_id == bytes.fromhex(TRACE_ID.decode())
    assert span.span_id == bytes.fromhex("b7ad6b7169203331")
    assert span.parent_span_id == bytes.fromhex(PARENT_ID.decode())
    assert span.kind == SPAN_KIND_CLIENT
    assert (span.start_time_unix_nano, span.end_time_unix_nano) == (
        1_700_000_000_000_000_000,
        1_700_000_000_002_500_000,
    )
    values = {kv.key: kv.value for kv in span.attributes}
    assert values["http.request.method"].string_value == "GET"
    assert values["http.response.status_code"].int_value == 502
    assert values["strangler.shadow"].WhichOneof("value") == "bool_value"
    assert values["strangler.weight"].double_value == 0.25
    # OTLP ints are int64: a larger one keeps its digits as a string.
    assert values["big"].string_value == str(2**70)
    assert [(lk.trace_id.hex(), lk.span_id.hex()) for lk in span.links] == [
        (link[0].decode(), link[1].decode())
    ]
    assert span.status.code == 2


def test_root_span_has_no_parent_and_unset_status() -> None:
    span = encode_span(_span(parent_span_id=b""))
    assert span.parent_span_id == b""
    assert span.status.code == 0
    assert not span.HasField("status")


@pytest.mark.parametrize(
    "record",
    [
        _span(trace_id=b"4bf92f3577b34da6"),
        _span(span_id=b"zzzzzzzzzzzzzzzz"),
        _span(parent_span_id=b"00f067aa"),
        _span(links=((TRACE_ID, b"00"),)),
    ],
)
def test_malformed_id_is_a_value_error(record: SpanRecord) -> None:
    with pytest.raises(ValueError):
        encode_span(record)


def test_request_holds_one_resource_and_one_scope() -> None:
    request = build_request(
        [encode_span(_span())],
        build_resource("gateway", {"service.instance.id": "host-1:4", "service.name": "ignored"}),
    )
    (resource_spans,) = request.resource_spans
    attributes = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
    assert attributes == {"service.name": "gateway", "service.instance.id": "host-1:4"}
    (scope_spans,) = resource_spans.scope_spans
    assert scope_spans.scope.name == "strangler"
    assert [span.name for span in scope_spans.spans] == ["GET /api/projects/:id"]


# ------------------------------------------------------------------------------------- the URL


@pytest.mark.parametrize(
    ("endpoint", "target"),
    [
        ("http://127.0.0.1:4318", ExportTarget(False, "127.0.0.1", 4318, "/v1/traces")),
        ("http://127.0.0.1:4318/", ExportTarget(False, "127.0.0.1", 4318, "/v1/traces")),
        ("http://collector/v1/traces", ExportTarget(False, "collector", 80, "/v1/traces")),
        ("http://collector/v1/traces/", ExportTarget(False, "collector", 80, "/v1/traces")),
        ("https://otel.example.com", ExportTarget(True, "otel.example.com", 443, "/v1/traces")),
        ("https://h:8443/otlp/", ExportTarget(True, "h", 8443, "/otlp/v1/traces")),
        ("http://[::1]:4318", ExportTarget(False, "::1", 4318, "/v1/traces")),
    ],
)
def test_export_target(endpoint: str, target: ExportTarget) -> None:
    assert export_target(endpoint) == target


@pytest.mark.parametrize(
    "endpoint", ["127.0.0.1:4318", "localhost:4318", "grpc://collector:4317", "http://", ""]
)
def test_endpoint_that_is_not_an_http_url_is_refused(endpoint: str) -> None:
    with pytest.raises(ValueError, match="not an http"):
        export_target(endpoint)


# ------------------------------------------------------------------------------- the queue bound


def test_submit_beyond_max_queue_drops_and_counts() -> None:
    exporter = SpanExporter(TracingSettings("http://127.0.0.1:9"), max_queue=10, batch_size=4)
    for _ in range(15):
        exporter.submit(_span())
    assert (exporter.pending, exporter.dropped, exporter.exported, exporter.failed) == (10, 5, 0, 0)
    assert repr(exporter) == (
        "<SpanExporter http://127.0.0.1:9/v1/traces new: "
        "10 pending, 0 exported, 0 failed, 5 dropped>"
    )


@pytest.mark.parametrize(
    "kwargs", [{"max_queue": 0}, {"batch_size": 0}, {"interval_s": 0.0}, {"interval_s": -1.0}]
)
def test_exporter_refuses_sizes_that_are_not_positive(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="positive"):
        SpanExporter(TracingSettings("http://127.0.0.1:9"), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("ratio", [0.0, 0.01, 0.5, 1.0])
def test_the_proxys_sampling_of_a_new_trace_is_trace_id_ratio_based(ratio: float) -> None:
    """The proxy draws 192 bits, prints them as 48 hex digits (the trace id is the first 32) and
    compares bits 64-127 with ratio_threshold: the same decision as is_sampled on that id."""
    rng = random.Random(7)
    for _ in range(2000):
        bits = rng.getrandbits(192)
        trace_id = (b"%048x" % bits)[:32]
        by_proxy = (bits >> 64) & ((1 << 64) - 1) < ratio_threshold(ratio)
        assert by_proxy == is_sampled(trace_id, ratio, None)
