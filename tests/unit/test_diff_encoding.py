"""Compressed answers are inflated (bounded) before they are compared."""

from __future__ import annotations

import gzip
import zlib

import orjson
import pytest

from strangler.diff import BodyKind, DiffRules, ResponseSample, compare_responses

DOC_A = orjson.dumps({"projects": [{"id": i, "name": f"p{i}"} for i in range(50)]})
DOC_B = orjson.dumps({"projects": [{"id": i, "name": f"p{i}"} for i in range(49)] + [{"id": 49}]})
JSON = ("Content-Type", "application/json")


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-15)
    return packer.compress(data) + packer.flush()


def _sample(body: bytes, coding: str | None) -> ResponseSample:
    headers = (JSON,) if coding is None else (JSON, ("Content-Encoding", coding))
    return ResponseSample(200, headers, body)


@pytest.mark.parametrize(
    ("coding_a", "body_a", "coding_b", "body_b"),
    [
        ("gzip", gzip.compress(DOC_A), None, DOC_B),
        ("x-gzip", gzip.compress(DOC_A), "gzip", gzip.compress(DOC_B, mtime=0)),
        ("deflate", zlib.compress(DOC_A), "deflate", _raw_deflate(DOC_B)),
    ],
)
def test_compressed_json_is_compared_structurally(
    coding_a: str, body_a: bytes, coding_b: str | None, body_b: bytes
) -> None:
    comparison = compare_responses(
        _sample(body_a, coding_a), _sample(body_b, coding_b), DiffRules()
    )
    assert comparison.kind is BodyKind.JSON
    assert [d.path for d in comparison.differences] == ["$.projects[49].name"]


def test_same_document_in_different_codings_is_equal() -> None:
    comparison = compare_responses(
        _sample(gzip.compress(DOC_A, mtime=1), "gzip"), _sample(DOC_A, None), DiffRules()
    )
    assert comparison.is_equal
    assert comparison.kind is BodyKind.JSON


def test_a_bomb_past_the_bound_is_not_compared() -> None:
    bomb = gzip.compress(b"[" + b"0," * 600_000 + b"0]")
    assert len(bomb) < 10_000
    comparison = compare_responses(
        _sample(bomb, "gzip"), _sample(bomb, "gzip"), DiffRules(), max_decoded_bytes=1_000_000
    )
    assert not comparison.body_compared
    assert comparison.kind is BodyKind.SKIPPED


@pytest.mark.parametrize(
    ("coding", "body"),
    [("br", b"\x1b\x03\x00\xf8"), ("gzip", b"not gzip at all"), ("gzip, br", b"x")],
)
def test_codings_not_inflated_compare_as_bytes(coding: str, body: bytes) -> None:
    comparison = compare_responses(_sample(body, coding), _sample(body + b"!", coding), DiffRules())
    assert comparison.kind is BodyKind.BINARY
    assert [d.path for d in comparison.differences] == ["body"]
