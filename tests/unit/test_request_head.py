"""The upstream head built from one frozen RequestHead: what a backend receives, and that the
head itself never changes (a canary's legacy fallback and its new side share it)."""

from __future__ import annotations

from strangler.proxy.request_head import RequestHead, upstream_head
from strangler.runtime.snapshot import BackendTarget

VIA = b"1.1 strangler"


def _head(
    headers: list[tuple[bytes, bytes]],
    *,
    cookie: bytes | None = None,
    xff: bytes | None = None,
    is_trusted_peer: bool = False,
    connection_tokens: bytes | None = None,
) -> RequestHead:
    parts = [b""]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    cookie_at = -1
    if cookie is not None:
        cookie_at = len(parts) + 2
        parts += (b"Cookie", b": ", cookie, b"\r\n")
    return RequestHead(
        b"GET",
        b"/a?b=1",
        b"/a",
        False,
        True,
        False,
        False,
        -1,
        False,
        parts,
        cookie_at,
        b"shop.example",
        xff,
        b"https" if is_trusted_peer else None,
        None,
        None,
        connection_tokens,
        None,
        None,
        False,
        None,
        None,
        None,
        None,
        None,
        None,
        b"10.0.0.9",
        is_trusted_peer,
        False,
    )


def _target(*, is_host_preserved: bool) -> BackendTarget:
    return BackendTarget(
        "legacy", "127.0.0.1", 3000, b"127.0.0.1:3000", 1.0, 5.0, 8, 30.0, is_host_preserved
    )


def test_the_head_carries_the_copied_headers_host_and_forwarding_headers_in_order() -> None:
    head = _head([(b"Accept", b"*/*")], cookie=b"a=1; _app_session=x")
    sent = upstream_head(
        head, _target(is_host_preserved=True), VIA, b"rid", b"00-t-s-01", b"", head.cookie
    )
    assert sent == (
        b"GET /a?b=1 HTTP/1.1\r\nAccept: */*\r\nCookie: a=1; _app_session=x\r\n"
        b"Host: shop.example\r\nX-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Proto: http\r\n"
        b"X-Forwarded-Host: shop.example\r\nVia: 1.1 strangler\r\n"
        b"traceparent: 00-t-s-01\r\nX-Request-Id: rid\r\n\r\n"
    )


def test_a_replaced_or_dropped_cookie_leaves_the_frozen_head_as_it_was() -> None:
    head = _head([(b"Accept", b"*/*")], cookie=b"a=1; _app_session=x")
    before = list(head.parts)
    target = _target(is_host_preserved=False)
    kept = upstream_head(head, target, VIA, b"r", b"t", b"X-Identity: 7\r\n", b"a=1")
    dropped = upstream_head(head, target, VIA, b"r", b"t", b"", None)
    assert b"Cookie: a=1\r\n" in kept and b"_app_session" not in kept
    assert kept.endswith(b"X-Identity: 7\r\n\r\n")
    assert b"Cookie" not in dropped
    assert b"Host: 127.0.0.1:3000\r\n" in dropped
    assert head.parts == before
    assert head.cookie == b"a=1; _app_session=x"


def test_only_a_trusted_peer_s_forwarding_headers_are_extended() -> None:
    trusted = _head([], xff=b"203.0.113.5", is_trusted_peer=True)
    untrusted = _head([], xff=b"203.0.113.5")
    target = _target(is_host_preserved=True)
    assert b"X-Forwarded-For: 203.0.113.5, 10.0.0.9\r\nX-Forwarded-Proto: https\r\n" in (
        upstream_head(trusted, target, VIA, b"r", b"t", b"", None)
    )
    assert b"X-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Proto: http\r\n" in (
        upstream_head(untrusted, target, VIA, b"r", b"t", b"", None)
    )
    assert untrusted.trusted_forwarded_for() is None
    assert trusted.trusted_forwarded_for() == "203.0.113.5"


def test_headers_a_connection_header_names_are_dropped() -> None:
    head = _head([(b"X-Secret", b"1"), (b"Accept", b"*/*")], connection_tokens=b"X-Secret")
    sent = upstream_head(head, None, VIA, b"r", b"t", b"", None)
    assert b"X-Secret" not in sent
    assert b"Accept: */*\r\n" in sent
    assert head.header_value(b"x-secret") == "1"
