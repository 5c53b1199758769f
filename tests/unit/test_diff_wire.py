"""The diff helper's frames (diff/wire.py) and its loop (`python -m strangler.diff`), without a
process: what comes out of the other end is what compare_responses gives here."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest

from strangler.diff import DiffRules, ResponseSample, compare_responses
from strangler.diff.__main__ import serve
from strangler.diff.wire import (
    REPLY_HEAD,
    REQUEST_HEAD,
    decode_comparison,
    decode_rules,
    decode_samples,
    encode_comparison,
    encode_request,
    encode_rules,
)

RULES = [
    None,
    {
        "ignore": ["$..updated_at", "$.meta.request_id"],
        "unordered": {"$.projects": "id", "$.tags": None},
        "tolerance": {"$..price": 0.01, "$.stats.avg": "1.5%"},
        "normalize": [{"pattern": r"\d{4}-\d{2}-\d{2}", "replace": "<date>"}],
        "headers": ["Content-Type", "Location"],
        "status": False,
        "max_differences": 7,
        "max_depth": 12,
        "max_nodes": 999,
    },
]
JSON = (("Content-Type", "application/json"),)
PAIRS = [
    (
        ResponseSample(200, JSON, orjson.dumps({"a": [1, 2, {"b": "x"}], "t": "2024-01-01"})),
        ResponseSample(404, (("content-type", "text/json"),), b'{"a": [1, 3, {"c": "y"}]}'),
    ),
    (
        ResponseSample(200, (("Content-Type", "text/html; charset=utf-8"),), b"<p>one</p>"),
        ResponseSample(200, (("Content-Type", "text/html"),), "<p>twö</p>".encode()),
    ),
    (ResponseSample(200, (), b"\x00\xff"), ResponseSample(200, (), b"\x00\xfe", is_truncated=True)),
    (
        ResponseSample(200, JSON, orjson.dumps(list(range(500)))),
        ResponseSample(200, JSON, orjson.dumps(list(range(1, 501)))),
    ),
]


@pytest.mark.parametrize("config", RULES)
def test_rules_arrive_as_they_left(config: dict[str, Any] | None) -> None:
    rules = DiffRules.from_config(config)
    assert decode_rules(encode_rules(rules)) == rules
    assert encode_rules(decode_rules(encode_rules(rules))) == encode_rules(rules)


@pytest.mark.parametrize(("primary", "shadow"), PAIRS)
def test_samples_arrive_as_they_left(primary: ResponseSample, shadow: ResponseSample) -> None:
    frame = b"".join(encode_request(primary, shadow, b"[]", 12345))
    lengths = REQUEST_HEAD.unpack_from(frame)
    start = REQUEST_HEAD.size + lengths[0]
    parts = []
    for length in lengths[1:]:
        parts.append(frame[start : start + length])
        start += length
    heads, body_a, body_b = parts
    assert decode_samples(heads, body_a, body_b) == (primary, shadow, 12345)


def _serve(requests: list[bytes]) -> list[Any]:
    """Run the helper's loop over `requests` (one buffer); the replies it wrote, decoded."""
    out = io.BytesIO()
    serve(io.BytesIO(b"".join(requests)), out)
    replies, data = [], out.getvalue()
    while data:
        (length,) = REPLY_HEAD.unpack_from(data)
        replies.append(decode_comparison(data[REPLY_HEAD.size : REPLY_HEAD.size + length]))
        data = data[REPLY_HEAD.size + length :]
    return replies


@pytest.mark.parametrize("config", RULES)
def test_the_helper_compares_as_compare_responses_does(config: dict[str, Any] | None) -> None:
    rules = DiffRules.from_config(config)
    rules_bytes = encode_rules(rules)
    requests = [b"".join(encode_request(a, b, rules_bytes, 1 << 20)) for a, b in PAIRS]
    replies = _serve(requests)
    assert replies == [compare_responses(a, b, rules) for a, b in PAIRS]
    assert any(reply.differences for reply in replies)


def test_the_helper_answers_a_bad_request_as_failed_and_goes_on() -> None:
    a, b = PAIRS[0]
    good = b"".join(encode_request(a, b, encode_rules(DiffRules()), 1 << 20))
    bad = b"".join(encode_request(a, b, b'["not rules"]', 1 << 20))
    replies = _serve([bad, good])
    assert replies == [None, compare_responses(a, b, DiffRules())]


def test_the_helper_stops_at_a_truncated_request() -> None:
    a, b = PAIRS[0]
    frame = b"".join(encode_request(a, b, encode_rules(DiffRules()), 1 << 20))
    assert _serve([frame, frame[:-3]]) == [compare_responses(a, b, DiffRules())]


def test_a_failed_comparison_is_none() -> None:
    reply = encode_comparison(None)
    assert decode_comparison(reply[REPLY_HEAD.size :]) is None
