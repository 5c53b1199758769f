"""HeaderPicker: two answers pick equal exactly when their compared headers are equal."""

from __future__ import annotations

from strangler.shadow.picker import HeaderPicker

KEPT = frozenset({b"content-type", b"location"})


def _pick(picker: HeaderPicker, *headers: tuple[bytes, bytes]) -> object:
    return picker.pick([name for name, _ in headers], [value for _, value in headers])


def test_only_compared_headers_count_and_names_fold_case() -> None:
    picker = HeaderPicker(KEPT)
    a = _pick(picker, (b"Date", b"Mon"), (b"Content-Type", b"text/html"), (b"ETag", b'"1"'))
    b = _pick(picker, (b"content-type", b"text/html"), (b"X-Runtime", b"0.2"))
    assert a == b


def test_a_changed_missing_or_extra_compared_header_differs() -> None:
    picker = HeaderPicker(KEPT)
    base = _pick(picker, (b"Content-Type", b"text/html"), (b"Location", b"/a"))
    assert base != _pick(picker, (b"Content-Type", b"text/html"), (b"Location", b"/b"))
    assert base != _pick(picker, (b"Content-Type", b"text/html"))
    assert base != _pick(
        picker, (b"Content-Type", b"text/html"), (b"Location", b"/a"), (b"Location", b"/c")
    )
    # Values compare byte for byte: case in a value is a difference.
    assert base != _pick(picker, (b"Content-Type", b"TEXT/html"), (b"Location", b"/a"))


def test_no_compared_header_on_either_side_is_equal() -> None:
    picker = HeaderPicker(KEPT)
    assert _pick(picker, (b"Date", b"Mon")) == _pick(picker)


def test_pairs_keep_names_as_received() -> None:
    picker = HeaderPicker(KEPT)
    names, values = [b"Date", b"Content-TYPE"], [b"Mon", b"text/html"]
    assert picker.pairs(names, values) == [(b"Content-TYPE", b"text/html")]


def test_the_shape_cache_is_bounded_and_still_answers_past_it() -> None:
    picker = HeaderPicker(KEPT, max_shapes=2)
    picks = [_pick(picker, (b"X-%d" % i, b"1"), (b"Location", b"/a")) for i in range(5)]
    assert len(picker._shapes) == 2
    assert all(p == picks[0] for p in picks)
