"""OTLP trace export requests written straight to protobuf wire format.

Why by hand: building the `opentelemetry-proto` message objects from Python cost ~30 us a span
(upb), on the worker's core, which made tracing at 1 % cost more than the rest of the request
path together (bench/proxy_bench.py --observability --each). Writing the few fields a span has
takes a few microseconds. The messages and field numbers are OTLP's (opentelemetry-proto,
trace/v1/trace.proto, common/v1/common.proto, resource/v1/resource.proto, collector/trace/v1/
trace_service.proto); the encoding is protobuf's (https://protobuf.dev/programming-guides/
encoding/). The tests decode the result with the official message classes.
"""

from __future__ import annotations

import binascii
import struct
from collections.abc import Iterable, Mapping

_FIXED64 = struct.Struct("<Q")
_DOUBLE = struct.Struct("<d")
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
STATUS_CODE_ERROR = 2

# Wire types.
_VARINT, _I64, _LEN = 0, 1, 2


_ONE_BYTE = tuple(bytes((n,)) for n in range(128))
# Encoded attribute keys (field 1 of a KeyValue): a handful of names, reused by every span.
_KEYS: dict[str, bytes] = {}


def _varint(value: int) -> bytes:
    if 0 <= value < 128:
        return _ONE_BYTE[value]
    if value < 0:
        value += 1 << 64  # int64 two's complement, as protobuf encodes negative int64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _tag(field, _LEN) + _varint(len(payload)) + payload


def _any_value(value: str | int | float | bool) -> bytes:
    """AnyValue: string_value = 1, bool_value = 2, int_value = 3, double_value = 4."""
    if isinstance(value, bool):
        return _tag(2, _VARINT) + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return _tag(3, _VARINT) + _varint(value)
        return _length_delimited(1, str(value).encode())
    if isinstance(value, float):
        return _tag(4, _I64) + _DOUBLE.pack(value)
    return _length_delimited(1, str(value).encode())


def key_value(field: int, key: str, value: str | int | float | bool) -> bytes:
    """A KeyValue (key = 1, value = 2) as field `field` of its parent."""
    encoded_key = _KEYS.get(key)
    if encoded_key is None:
        encoded_key = _length_delimited(1, key.encode())
        if len(_KEYS) < 1000:
            _KEYS[key] = encoded_key
    return _length_delimited(field, encoded_key + _length_delimited(2, _any_value(value)))


def id_bytes(hex_id: bytes, size: int) -> bytes:
    raw = binascii.unhexlify(hex_id)  # binascii.Error is a ValueError
    if len(raw) != size:
        raise ValueError(f"id {hex_id!r} is not {size * 2} hex digits")
    return raw


def span(
    trace_id: bytes,
    span_id: bytes,
    parent_span_id: bytes,
    name: str,
    kind: int,
    start_ns: int,
    end_ns: int,
    attributes: Mapping[str, str | int | float | bool],
    is_error: bool,
    links: Iterable[tuple[bytes, bytes]],
) -> bytes:
    """One Span message (ids in hex, as in traceparent). Raises ValueError for a malformed id or
    a time outside uint64."""
    if not (0 <= start_ns < 1 << 64 and 0 <= end_ns < 1 << 64):
        raise ValueError("span times must be unsigned 64-bit nanoseconds")
    parts = [
        _length_delimited(1, id_bytes(trace_id, 16)),
        _length_delimited(2, id_bytes(span_id, 8)),
    ]
    if parent_span_id:
        parts.append(_length_delimited(4, id_bytes(parent_span_id, 8)))
    parts += (
        _length_delimited(5, name.encode()),
        _tag(6, _VARINT) + _varint(kind),
        _tag(7, _I64) + _FIXED64.pack(start_ns),
        _tag(8, _I64) + _FIXED64.pack(end_ns),
    )
    parts.extend(key_value(9, key, value) for key, value in attributes.items())
    for link_trace, link_span in links:
        # Link: trace_id = 1, span_id = 2.
        link = _length_delimited(1, id_bytes(link_trace, 16)) + _length_delimited(
            2, id_bytes(link_span, 8)
        )
        parts.append(_length_delimited(13, link))
    if is_error:
        # Status (field 15): code = 3.
        parts.append(_length_delimited(15, _tag(3, _VARINT) + _varint(STATUS_CODE_ERROR)))
    return b"".join(parts)


def resource(service_name: str, attributes: Mapping[str, str]) -> bytes:
    """A Resource message: `service.name` first, then `attributes` (attributes = 1)."""
    parts = [key_value(1, "service.name", service_name)]
    parts.extend(
        key_value(1, key, value) for key, value in attributes.items() if key != "service.name"
    )
    return b"".join(parts)


def export_request(spans: Iterable[bytes], resource_message: bytes, scope_name: str) -> bytes:
    """ExportTraceServiceRequest { ResourceSpans { Resource, ScopeSpans { scope, spans } } }."""
    scope = _length_delimited(1, _length_delimited(1, scope_name.encode()))
    scope_spans = scope + b"".join(_length_delimited(2, s) for s in spans)
    resource_spans = _length_delimited(1, resource_message) + _length_delimited(2, scope_spans)
    return _length_delimited(1, resource_spans)
