"""The diff engine's inputs and outputs as bytes: how a pair reaches another process to be
compared there (shadow/offload.py sends, `python -m strangler.diff` compares).

Pure. No I/O: the two ends own their pipes; this module only builds and reads frames.

Rules:
- A request is REQUEST_HEAD (four lengths), then the rules, the two samples' status, headers
  and truncation (JSON), and the two bodies as they are: bodies are never re-encoded.
- The rules travel as their fields, not pickled (compiled classes do not pickle), and are
  rebuilt into the same DiffRules: equal under ==, so a route's rules compare the same in both
  processes. Their bytes are the same for the same rules, so the comparing end can cache them.
- A reply is REPLY_HEAD (one length), then the Comparison as JSON, or `{"failed": true}` when
  the comparing end raised: the caller counts it, it never guesses.
"""

from __future__ import annotations

import struct
from typing import Any, Final

import orjson

from strangler.diff.model import BodyKind, Comparison, Difference, DifferenceKind, ResponseSample
from strangler.diff.normalize import Normalizer
from strangler.diff.rules import DiffRules
from strangler.diff.tolerance import Tolerance

# Lengths of: the rules, the samples' heads, the primary body, the shadow body.
REQUEST_HEAD: Final = struct.Struct("!IIII")
REPLY_HEAD: Final = struct.Struct("!I")
FAILED_REPLY: Final = b'{"failed":true}'


def encode_rules(rules: DiffRules) -> bytes:
    return orjson.dumps(
        [
            rules.ignore,
            rules.unordered,
            [(path, t.amount, t.is_relative) for path, t in rules.tolerance],
            [(n.pattern.pattern, n.replace) for n in rules.normalize],
            rules.headers,
            rules.should_compare_status,
            rules.max_differences,
            rules.max_depth,
            rules.max_nodes,
        ]
    )


def decode_rules(data: bytes) -> DiffRules:
    fields = orjson.loads(data)
    (ignore, unordered, tolerance, normalize, headers, status, differences, depth, nodes) = fields
    return DiffRules(
        ignore=tuple(ignore),
        unordered=tuple((path, key) for path, key in unordered),
        tolerance=tuple(
            (path, Tolerance(amount, is_relative=is_relative))
            for path, amount, is_relative in tolerance
        ),
        normalize=tuple(Normalizer.compile(pattern, replace) for pattern, replace in normalize),
        headers=tuple(headers),
        should_compare_status=status,
        max_differences=differences,
        max_depth=depth,
        max_nodes=nodes,
    )


def encode_request(
    primary: ResponseSample,
    shadow: ResponseSample,
    rules: bytes,
    max_decoded_bytes: int,
) -> list[bytes]:
    """A request frame in pieces (the bodies are not copied); `rules` from encode_rules."""
    heads = orjson.dumps(
        [
            max_decoded_bytes,
            [primary.status, primary.headers, primary.is_truncated],
            [shadow.status, shadow.headers, shadow.is_truncated],
        ]
    )
    lengths = REQUEST_HEAD.pack(len(rules), len(heads), len(primary.body), len(shadow.body))
    return [lengths, rules, heads, primary.body, shadow.body]


def decode_samples(
    heads: bytes, primary_body: bytes, shadow_body: bytes
) -> tuple[ResponseSample, ResponseSample, int]:
    """The two samples and max_decoded_bytes of a request frame's heads and bodies."""
    max_decoded_bytes, primary, shadow = orjson.loads(heads)
    return _sample(primary, primary_body), _sample(shadow, shadow_body), max_decoded_bytes


def _sample(head: list[Any], body: bytes) -> ResponseSample:
    status, headers, is_truncated = head
    return ResponseSample(
        status, tuple((name, value) for name, value in headers), body, is_truncated
    )


def encode_comparison(comparison: Comparison | None) -> bytes:
    """A reply frame: the comparison, or None for a comparison that failed."""
    if comparison is None:
        payload = FAILED_REPLY
    else:
        payload = orjson.dumps(
            {
                "is_equal": comparison.is_equal,
                "differences": [d.as_dict() for d in comparison.differences],
                "body_compared": comparison.body_compared,
                "kind": comparison.kind.value,
                "is_truncated": comparison.is_truncated,
                "nodes_visited": comparison.nodes_visited,
            }
        )
    return REPLY_HEAD.pack(len(payload)) + payload


def decode_comparison(payload: bytes) -> Comparison | None:
    """The comparison of a reply's payload (after REPLY_HEAD), or None for a failed one."""
    fields = orjson.loads(payload)
    if fields.get("failed"):
        return None
    return Comparison(
        is_equal=fields["is_equal"],
        differences=tuple(
            Difference(
                d["path"],
                DifferenceKind(d["kind"]),
                d["primary"],
                d["shadow"],
                d["rule_path"],
                d["detail"],
            )
            for d in fields["differences"]
        ),
        body_compared=fields["body_compared"],
        kind=BodyKind(fields["kind"]),
        is_truncated=fields["is_truncated"],
        nodes_visited=fields["nodes_visited"],
    )
