"""Rack::MethodOverride's rules, as the gateway applies them before routing."""

from __future__ import annotations

import httpx
import pytest

from strangler.identity.csrf import is_form_body
from strangler.routing.method_override import form_override, override_matters, override_method
from strangler.routing.model import DecisionReason, RouteSpec, Stage
from strangler.routing.table import RouteTable


@pytest.mark.parametrize(
    ("value", "method"),
    [(b"patch", b"PATCH"), (" Delete ", b"DELETE"), (b"get", b"GET"), (b"CONNECT", None),
     (b"TRACE", None), (b"", None), (None, None)],
)  # fmt: skip
def test_only_racks_methods_override(value: bytes | str | None, method: bytes | None) -> None:
    assert override_method(value) == method


@pytest.mark.parametrize(
    ("content_type", "is_form"),
    [(None, True), (b"application/x-www-form-urlencoded", True),
     (b"multipart/form-data; boundary=x", True), (b"application/json", False),
     (b"text/plain", False)],
)  # fmt: skip
def test_form_bodies(content_type: bytes | None, is_form: bool) -> None:
    assert is_form_body(b"POST", content_type) is is_form
    # Without a Content-Type, only a POST's body is a form.
    assert is_form_body(b"PUT", None) is False


def test_the_last_method_field_counts_in_urlencoded_and_multipart_forms() -> None:
    assert form_override(b"_method=get&name=x&_method=patch", None) == b"PATCH"
    type_ = b"application/x-www-form-urlencoded"
    assert form_override(b"name=x", type_) is None
    request = httpx.Request(
        "POST", "http://x/", data={"_method": "delete"}, files={"f": ("a.txt", b"hi")}
    )
    body = request.read()
    assert form_override(body, request.headers["content-type"].encode()) == b"DELETE"


def _table(*routes: tuple[str, str, Stage]) -> RouteTable:
    specs = [
        RouteSpec(
            name,
            match,
            stage,
            "new" if stage is Stage.NEW else "legacy",
            DecisionReason.STAGE_NEW if stage is Stage.NEW else DecisionReason.STAGE_LEGACY,
        )
        for name, match, stage in routes
    ]
    return RouteTable.build(specs, "legacy")


def test_the_form_is_read_only_where_an_override_changes_the_handling() -> None:
    table = _table(
        ("projects.show", "GET /projects/:id", Stage.LEGACY),
        ("projects.update", "PATCH|PUT /projects/:id", Stage.NEW),
        ("reports", "ANY /reports/*rest", Stage.LEGACY),
        ("legacy.update", "PATCH /legacy/:id", Stage.LEGACY),
    )
    assert override_matters(table, "/projects/1")
    assert not override_matters(table, "/reports/1")
    # Every method of this path goes to legacy as sent: nothing to read first.
    assert not override_matters(table, "/legacy/1")
