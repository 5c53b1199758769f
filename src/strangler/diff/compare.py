"""compare_responses: one primary answer against its shadow, under a route's DiffRules.

Pure. No I/O, no clock, no logging: the caller counts and stores the Comparison.

Rules:
- Status first (unless `status: false`), then the configured headers, then the body; the
  differences keep that order and share one budget of `max_differences`.
- A truncated body (on either side) is never compared: kind SKIPPED, body_compared False.
- A JSON walk that would visit more than the rules' `max_nodes` stops: kind OVER_BUDGET,
  body_compared False, and none of the body's differences (the status and headers' stay).
- Identical body bytes are equal without parsing.
- A body in `gzip`, `x-gzip` or `deflate` Content-Encoding (RFC 9110 §8.4.1) is inflated first,
  to at most `max_decoded_bytes`: past that the body is not compared (kind SKIPPED, like a
  truncated one), so a small compressed answer can never make the engine allocate without
  bound. Other codings (br, zstd, stacked codings) and corrupt streams compare as bytes (kind
  BINARY).
- JSON when either Content-Type mentions json, or both bodies start with `{` or `[` (after
  whitespace); if either side then fails to parse, the bodies compare as text instead, which
  shows a human the HTML error page the new backend sent in place of JSON.
- Text when both bodies decode (the Content-Type charset, else UTF-8, strictly); otherwise
  binary: equal bytes or one CHANGED difference at `body` holding sizes and SHA-256 prefixes.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import hashlib
import zlib
from collections.abc import Sequence

import orjson

from strangler.diff.headers import compare_headers
from strangler.diff.json_walk import compare_json
from strangler.diff.model import BodyKind, Comparison, Difference, DifferenceKind, ResponseSample
from strangler.diff.rules import DiffRules
from strangler.diff.text import compare_text

_JSON_STARTS = (b"{", b"[")
_JSON_WHITESPACE = b" \t\r\n"
_SNIFF_BYTES = 1024
DEFAULT_MAX_DECODED_BYTES = 1024 * 1024
# zlib's wbits: 16 + 15 reads a gzip wrapper, 15 a zlib wrapper, -15 raw deflate.
_GZIP_WBITS = 31
_ZLIB_WBITS = 15
_RAW_DEFLATE_WBITS = -15


class _TooLarge(Exception):
    """A decoded body would pass the bound."""


def compare_responses(
    primary: ResponseSample,
    shadow: ResponseSample,
    rules: DiffRules,
    *,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
    max_nodes: int | None = None,
) -> Comparison:
    """Compare a primary (legacy) response with its shadow (new) under `rules`; `max_nodes`,
    when given, replaces the rules' budget of JSON nodes."""
    found: list[Difference] = []
    if rules.should_compare_status and primary.status != shadow.status:
        found.append(
            Difference("status", DifferenceKind.CHANGED, primary.status, shadow.status, "status")
        )
    found.extend(
        compare_headers(primary.headers, shadow.headers, rules.header_names, rules.normalize)
    )
    limit = rules.max_differences
    is_truncated = len(found) > limit
    del found[limit:]
    heads_a = _first_values(primary.headers)
    heads_b = _first_values(shadow.headers)
    if not primary.is_truncated and not shadow.is_truncated:
        try:
            primary = _without_content_coding(primary, heads_a, max_decoded_bytes)
            shadow = _without_content_coding(shadow, heads_b, max_decoded_bytes)
        except _TooLarge:
            primary = dataclasses.replace(primary, is_truncated=True)
    if primary.is_truncated or shadow.is_truncated:
        return Comparison(
            is_equal=not found and not is_truncated,
            differences=tuple(found),
            body_compared=False,
            kind=BodyKind.SKIPPED,
            is_truncated=is_truncated,
        )
    kind, body_found, is_body_truncated, nodes_visited = _compare_body(
        primary,
        shadow,
        heads_a,
        heads_b,
        rules,
        limit - len(found),
        rules.max_nodes if max_nodes is None else max_nodes,
    )
    found.extend(body_found)
    is_truncated = is_truncated or is_body_truncated
    return Comparison(
        is_equal=not found and not is_truncated,
        differences=tuple(found),
        body_compared=kind is not BodyKind.OVER_BUDGET,
        kind=kind,
        is_truncated=is_truncated,
        nodes_visited=nodes_visited,
    )


def _compare_body(
    primary: ResponseSample,
    shadow: ResponseSample,
    heads_a: dict[str, str],
    heads_b: dict[str, str],
    rules: DiffRules,
    budget: int,
    max_nodes: int,
) -> tuple[BodyKind, list[Difference], bool, int]:
    """How the bodies compared, their differences (at most `budget`), whether more exist, and
    the JSON nodes visited."""
    if _is_encoded(heads_a) or _is_encoded(heads_b):
        return BodyKind.BINARY, _binary(primary.body, shadow.body), False, 0
    type_a = heads_a.get("content-type", "").lower()
    type_b = heads_b.get("content-type", "").lower()
    is_json = (
        "json" in type_a
        or "json" in type_b
        or (_starts_like_json(primary.body) and _starts_like_json(shadow.body))
    )
    if primary.body == shadow.body:
        if is_json:
            return BodyKind.JSON, [], False, 0
        is_text = _decode(primary.body, type_a) is not None
        return (BodyKind.TEXT if is_text else BodyKind.BINARY), [], False, 0
    if is_json:
        try:
            document_a = orjson.loads(primary.body)
            document_b = orjson.loads(shadow.body)
        except orjson.JSONDecodeError:
            pass
        else:
            walked = compare_json(
                document_a,
                document_b,
                rules.paths,
                rules.normalize,
                max_differences=budget,
                max_depth=rules.max_depth,
                max_nodes=max_nodes,
            )
            kind = BodyKind.OVER_BUDGET if walked.is_over_budget else BodyKind.JSON
            return kind, walked.differences, walked.is_truncated, walked.nodes_visited
    text_a = _decode(primary.body, type_a)
    text_b = _decode(shadow.body, type_b)
    if text_a is None or text_b is None:
        found = _binary(primary.body, shadow.body)
        kind = BodyKind.BINARY
    else:
        difference = compare_text(text_a, text_b, rules.normalize)
        found = [] if difference is None else [difference]
        kind = BodyKind.TEXT
    if len(found) > budget:
        return kind, [], True, 0
    return kind, found, False, 0


def _first_values(headers: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Each header's first value by lowercased name (one pass, read by every lookup after)."""
    return {key.lower(): value for key, value in reversed(headers)}


def _coding(heads: dict[str, str]) -> str:
    return heads.get("content-encoding", "").strip().lower()


def _is_encoded(heads: dict[str, str]) -> bool:
    return _coding(heads) not in ("", "identity")


def _without_content_coding(
    sample: ResponseSample, heads: dict[str, str], max_bytes: int
) -> ResponseSample:
    """The sample with a gzip/deflate body inflated and Content-Encoding dropped (from `heads`
    too); unchanged when it has no coding, or one we do not inflate, or a corrupt stream (then
    bytes compare)."""
    coding = _coding(heads)
    if coding in ("gzip", "x-gzip"):
        attempts: tuple[int, ...] = (_GZIP_WBITS,)
    elif coding == "deflate":
        # RFC 9110 §8.4.1.2 says zlib-wrapped; some servers send raw deflate, as browsers accept.
        attempts = (_ZLIB_WBITS, _RAW_DEFLATE_WBITS)
    else:
        return sample
    for wbits in attempts:
        inflater = zlib.decompressobj(wbits)
        try:
            body = inflater.decompress(sample.body, max_bytes + 1)
        except zlib.error:
            continue
        if len(body) > max_bytes or inflater.unconsumed_tail:
            raise _TooLarge
        if not inflater.eof:
            continue
        headers = tuple(pair for pair in sample.headers if pair[0].lower() != "content-encoding")
        del heads["content-encoding"]
        return dataclasses.replace(sample, headers=headers, body=body)
    return sample


def _starts_like_json(body: bytes) -> bool:
    # A prefix only: lstrip on the whole body would copy it.
    return body[:_SNIFF_BYTES].lstrip(_JSON_WHITESPACE)[:1] in _JSON_STARTS


def _decode(body: bytes, content_type: str) -> str | None:
    """The body as text per its charset (default UTF-8), or None if it does not decode."""
    encoding = "utf-8"
    for parameter in content_type.split(";")[1:]:
        key, _, value = parameter.partition("=")
        if key.strip() == "charset" and value.strip(' "'):
            # An unknown charset label keeps UTF-8, the web's default (WHATWG Encoding).
            with contextlib.suppress(LookupError):
                encoding = codecs.lookup(value.strip(' "')).name
    try:
        return body.decode(encoding)
    except UnicodeDecodeError:
        return None


def _fingerprint(body: bytes) -> str:
    return f"{len(body)} bytes, sha256 {hashlib.sha256(body).hexdigest()[:16]}"


def _binary(body_a: bytes, body_b: bytes) -> list[Difference]:
    if body_a == body_b:
        return []
    return [
        Difference(
            "body", DifferenceKind.CHANGED, _fingerprint(body_a), _fingerprint(body_b), "body"
        )
    ]
