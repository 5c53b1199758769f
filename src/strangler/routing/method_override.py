"""Rails' method override: a POST form with `_method=patch` is routed as PATCH.

Rules:
- Pure. The gateway routes and checks CSRF by the method Rails will act on, or a cross-site form
  posted to a path the gateway routes one way runs as another route behind it.
- Exactly as Rack::MethodOverride (rack/lib/rack/method_override.rb): only for POST; the form's
  `_method` field when the body is form data (urlencoded, multipart/form-data, or a POST without
  Content-Type, which Rack reads as a form), else the `X-HTTP-Method-Override` header; the value,
  upper-cased, counts only if it is one of Rack's HTTP_METHODS.
- The request is forwarded as sent: backends apply the override themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strangler.identity.csrf import form_field, rack_form_type

if TYPE_CHECKING:
    from strangler.routing.model import Decision
    from strangler.routing.table import RouteTable

# Rack::MethodOverride::HTTP_METHODS.
_OVERRIDABLE = frozenset(
    {b"GET", b"HEAD", b"PUT", b"POST", b"DELETE", b"OPTIONS", b"PATCH", b"LINK", b"UNLINK"}
)


def override_method(value: bytes | str | None) -> bytes | None:
    """The method `value` names, if Rack would use it; None otherwise."""
    if value is None:
        return None
    raw = value.encode("latin-1") if isinstance(value, str) else value
    method = raw.strip().upper()
    return method if method in _OVERRIDABLE else None


def form_override(body: bytes, content_type: bytes | None) -> bytes | None:
    """The method a POST form body's `_method` field names (the last one, as Rack keeps), or
    None."""
    return override_method(form_field(body, rack_form_type(b"POST", content_type), "_method"))


def override_matters(table: RouteTable, path: str) -> bool:
    """Whether some overridden method would be handled differently from the POST itself: another
    backend, side, shadow or canary. Only then must the form be read before routing."""
    post = _handling(table.decide("POST", path))
    return any(
        _handling(table.decide(method.decode(), path)) != post
        for method in _OVERRIDABLE
        if method != b"POST"
    )


def _handling(decision: Decision) -> tuple[object, ...]:
    return (
        decision.backend,
        decision.is_new_side,
        decision.shadow_backend,
        decision.canary is not None,
        decision.route if decision.is_new_side else None,
    )


__all__ = ["form_override", "override_matters", "override_method"]
