"""The canonical request path: what `strict` refuses and what `normalize` forwards instead."""

from __future__ import annotations

import pytest

from strangler.errors import ClientProtocolError
from strangler.proxy.request_target import PathPolicy, canonical_path

STRICT, NORMALIZE = PathPolicy.STRICT, PathPolicy.NORMALIZE
REFUSED = None


@pytest.mark.parametrize(
    ("path", "strict", "normalized"),
    [
        (b"/api/projects/1/star", b"/api/projects/1/star", b"/api/projects/1/star"),
        (b"/", b"/", b"/"),
        (b"/a/b/", b"/a/b/", b"/a/b/"),
        (b"/.well-known/x", b"/.well-known/x", b"/.well-known/x"),
        (b"/a%20b", b"/a%20b", b"/a%20b"),
        (b"/caf%c3%a9", b"/caf%c3%a9", b"/caf%C3%A9"),
        (b"/api/projects/1//star", REFUSED, b"/api/projects/1/star"),
        (b"/api/projects//1/star", REFUSED, b"/api/projects/1/star"),
        (b"/api/projects/1/star//", REFUSED, b"/api/projects/1/star/"),
        (b"//api", REFUSED, b"/api"),
        (b"/api/projects/1/%73tar", REFUSED, b"/api/projects/1/star"),
        (b"/a/%7e", REFUSED, b"/a/~"),
        (b"/a/./b", REFUSED, b"/a/b"),
        (b"/a/../b", REFUSED, b"/b"),
        (b"/../../etc", REFUSED, b"/etc"),
        (b"/a/..", REFUSED, b"/"),
        (b"/%2e%2e/x", REFUSED, b"/x"),
        (b"/api/projects/1%2Fstar", REFUSED, REFUSED),
        (b"/api/projects/1%2fstar", REFUSED, REFUSED),
        (b"/a%5cb", REFUSED, REFUSED),
        (b"/a\\b", REFUSED, REFUSED),
        (b"/a;jsessionid=1", REFUSED, REFUSED),
        (b"/a#b", REFUSED, REFUSED),
        (b"/a%zz", REFUSED, REFUSED),
        (b"/a%2", REFUSED, REFUSED),
        (b"/a%00", REFUSED, REFUSED),
    ],
)
def test_canonical_paths(path: bytes, strict: bytes | None, normalized: bytes | None) -> None:
    for policy, expected in ((STRICT, strict), (NORMALIZE, normalized)):
        if expected is None:
            with pytest.raises(ClientProtocolError) as refused:
                canonical_path(path, policy)
            assert refused.value.status == 400
        else:
            assert canonical_path(path, policy) == expected, policy


def test_a_canonical_path_is_returned_as_is() -> None:
    path = b"/api/projects/1"
    assert canonical_path(path, STRICT) is path
