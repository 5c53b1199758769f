"""What the gateway changes about a request because of where it goes: the canary's choice of
side, and the Rails bridge for requests to the new backend (identity, CSRF, the session cookie).

Rules:
- Called from ClientConnection.on_headers_complete, once per request, only for canary routes
  and requests bound for the new backend; everything else never reaches this module.
- These functions read the request head the connection has just parsed (its `_out` parts and
  the header values it kept); they are the connection's own code, kept apart because they are
  a policy of their own. A refusal raises through the connection's `_fail_head`.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from strangler.identity.bridge import SAFE_METHODS, IdentityBridge, RequestFacts
from strangler.identity.rails_session import AnonymousReason, SessionOutcome, session_user_id
from strangler.proxy.exchange import Fallback
from strangler.routing.canary import (
    EMPTY,
    CanaryFacts,
    choose,
    client_address,
    cookie_values,
    query_values,
    set_cookie_header,
)
from strangler.routing.faults import (
    ROLL_BP,
    FaultKind,
    FaultPlan,
    is_fault_requested,
    pick_fault,
)

if TYPE_CHECKING:
    from strangler.proxy.server import ClientConnection
    from strangler.routing.model import CanarySides, Decision
    from strangler.runtime.snapshot import Snapshot

_getrandbits = random.getrandbits
_randrange = random.randrange


def choose_canary_side(
    conn: ClientConnection, snapshot: Snapshot, sides: CanarySides, url: bytes, path: bytes
) -> tuple[Decision, bytes, SessionOutcome | None]:
    """A canary route's request: extract what its plan reads, choose a side, count it.

    Returns the chosen side's Decision, the Set-Cookie line issuing the sticky cookie (or
    b""), and the Rails session when it was decoded, so the bridge doesn't decode it twice.
    """
    plan = sides.plan
    out = conn._out
    headers: dict[str, str] = {}
    if plan.header_names:
        # The copied headers sit in _out as (name, ": ", value, CRLF) after the request line.
        for at in range(1, len(out) - 2, 4):
            name = out[at].lower().decode("latin-1")
            if name in plan.header_names and name not in headers:
                headers[name] = out[at + 2].decode("latin-1").strip()
    cookie = out[conn._cookie_at] if conn._cookie_at >= 0 else None
    cookies = EMPTY
    if cookie is not None and plan.cookie_names:
        cookies = cookie_values(cookie.decode("latin-1"), plan.cookie_names)
    query = EMPTY
    question = url.find(b"?")
    if question >= 0 and plan.query_names:
        query = query_values(url[question + 1 :].decode("latin-1"), plan.query_names)
    session: SessionOutcome | None = None
    user_id: str | None = None
    bridge = conn.worker.bridge
    if plan.needs_user_id and bridge is not None:
        session = bridge.session(cookie)
        if session.session is not None:
            user_id = session_user_id(session.session, bridge.user_id_key)
    client_ip = ""
    if plan.needs_client_ip:
        forwarded = conn._xff if conn.is_trusted_peer else None
        client_ip = client_address(
            conn.peer.decode("latin-1"),
            None if forwarded is None else forwarded.decode("latin-1"),
            snapshot.trusted_networks,
        )
    override, signature = conn._override
    choice = choose(
        plan,
        CanaryFacts(
            path=path.decode("latin-1"),
            headers=headers,
            cookies=cookies,
            query=query,
            user_id=user_id,
            client_ip=client_ip,
            override=None if override is None else override.decode("latin-1"),
            signature=None if signature is None else signature.decode("latin-1"),
            # The wall clock is read only to judge a signature's expiry.
            now=time.time() if signature is not None else 0.0,
            # Not a secret, only a bucket: a fast PRNG will do.
            fresh_sticky_value=f"{_getrandbits(128):032x}" if plan.uses_sticky_cookie else "",
        ),
    )
    route = sides.legacy.route or ""
    counters = conn.counters
    counters.inc("canary_decisions_total", route, choice.side.value, choice.reason.value)
    if choice.ignored_override is not None:
        counters.inc("canary_overrides_ignored_total", route, choice.ignored_override.value)
    set_cookie = b""
    if choice.sets_sticky_cookie and choice.sticky_value is not None:
        counters.inc("canary_sticky_cookies_issued_total", route)
        value = set_cookie_header(plan.sticky_cookie, choice.sticky_value, is_tls=conn.is_tls)
        set_cookie = b"Set-Cookie: " + value.encode("latin-1") + b"\r\n"
    return sides.side(choice.side), set_cookie, session


def bridge_to_new(
    conn: ClientConnection,
    bridge: IdentityBridge,
    decision: Decision,
    method: bytes,
    wire_method: bytes,
    path: bytes,
    session: SessionOutcome | None = None,
    *,
    is_upgrade: bool = False,
) -> tuple[bytes, Callable[[bytes], str | None] | None]:
    """A request to the new side: (the identity header line, a check its form body must pass
    first or None). Refuses a forged state change, or an Upgrade from another origin, with 403;
    drops the Rails cookie. `method` is the one Rails acts on (after `_method`), `wire_method`
    the one sent; `session` is the Rails session when the canary already decoded it.

    A state change by either method is checked: Rails skips the check for a POST overridden to
    GET, but a backend that is not Rack acts on the POST it receives.

    A `csrf: false` route gets no identity from the cookie: it is exempt because its callers are
    not the user's browser (webhooks, API clients with credentials of their own), and a
    cross-site form posted to it must not act as the user."""
    at = conn._cookie_at
    out = conn._out
    cookie = out[at] if at >= 0 else None
    route = decision.route or ""
    is_exempt = route in bridge.csrf_exempt
    if is_exempt:
        if cookie is not None:
            _drop_session_cookie(bridge, out, at, cookie)
        return b"", None
    outcome = bridge.session(cookie) if session is None else session
    gate: Callable[[bytes], str | None] | None = None
    if method in SAFE_METHODS:
        # The per-form token (if any) is for the method the form was made with.
        method = wire_method
    if is_upgrade or bridge.needs_csrf_check(method, outcome):
        facts = _request_facts(conn, method, wire_method, path, cookie)
        if is_upgrade:
            # Cross-site WebSocket hijacking: the handshake is a GET, so CSRF tokens never
            # apply; the Origin is the defence (Action Cable's allow_request_origin?).
            refusal = (
                bridge.check_upgrade_origin(facts, is_tls=conn.is_tls)
                if outcome.anonymous_reason is not AnonymousReason.MISSING
                else None
            )
        else:
            refusal = bridge.check_origin(facts, is_tls=conn.is_tls)
            if refusal is None and bridge.wants_form_body(facts):
                gate = functools.partial(bridge.check_token, facts, outcome)
            elif refusal is None:
                refusal = bridge.check_token(facts, outcome, None)
        if refusal is not None:
            conn.counters.inc("identity_csrf_refused_total", refusal)
            conn.counters.inc("csrf_refused_total", route or "_default")
            conn._fail_head(403, f"the request failed Rails' forgery protection ({refusal})")
    if cookie is not None and route not in bridge.passes_session_cookie:
        _drop_session_cookie(bridge, out, at, cookie)
    identity = bridge.identity_header(
        outcome, route, backend=decision.backend, has_authorization=conn._has_authorization
    )
    return identity, gate


def _drop_session_cookie(bridge: IdentityBridge, out: list[bytes], at: int, cookie: bytes) -> None:
    kept = bridge.without_session_cookie(cookie)
    if kept is None:
        out[at - 2 : at + 2] = (b"", b"", b"", b"")
    else:
        out[at] = kept


def _request_facts(
    conn: ClientConnection, method: bytes, wire_method: bytes, path: bytes, cookie: bytes | None
) -> RequestFacts:
    trusted = conn.is_trusted_peer
    return RequestFacts(
        method=method,
        wire_method=wire_method,
        path=path,
        cookie=cookie,
        has_authorization=conn._has_authorization,
        csrf_token=conn._csrf_token,
        origin=conn._origin,
        host=conn._host,
        forwarded_host=conn._xfh if trusted else None,
        forwarded_proto=conn._xfp if trusted else None,
        content_type=conn._content_type,
    )


def bridge_shadow_copy(
    conn: ClientConnection, bridge: IdentityBridge, decision: Decision, head: bytes
) -> bytes:
    """The head of a shadow copy bound for the new side: identity added (none on a `csrf: false`
    route), Rails cookie dropped, like a request routed there (no CSRF check: the primary went
    to legacy, and only safe methods are copied unless the target is a sandbox)."""
    at = conn._cookie_at
    cookie = conn._out[at] if at >= 0 else None
    route = decision.route or ""
    if cookie is not None and route not in bridge.passes_session_cookie:
        name = conn._out[at - 2]
        kept = bridge.without_session_cookie(cookie)
        line = name + b": " + cookie + b"\r\n"
        head = head.replace(line, b"" if kept is None else name + b": " + kept + b"\r\n", 1)
    if route in bridge.csrf_exempt:
        return head
    identity = bridge.identity_header(
        bridge.session(cookie),
        route,
        backend=decision.shadow_backend or "",
        has_authorization=conn._has_authorization,
    )
    return head[:-2] + identity + b"\r\n" if identity else head


def legacy_fallback(
    conn: ClientConnection,
    snapshot: Snapshot,
    legacy: Decision,
    method: bytes,
    url: bytes,
    request_id: bytes,
    traceparent: bytes,
) -> Fallback:
    """The head and pool for sending a canary request to legacy if new refuses it
    (`retry_on_legacy`). Built before the new side's head: that one may lose the Rails cookie."""
    pool = conn.worker.pools.get(legacy.backend)
    saved = list(conn._out)
    head = conn._build_head(snapshot, method, url, pool, request_id, traceparent, False, b"")
    conn._out = saved
    return Fallback(legacy, pool, head)


def choose_fault(
    conn: ClientConnection, snapshot: Snapshot, plan: FaultPlan, route: str, path: bytes
) -> FaultKind | None:
    """The fault a request on a faulted side gets (None mostly), counted when it gets one.

    Called only for a Decision that carries a FaultPlan, after the side is chosen."""
    if plan.expires_at and plan.is_expired(time.time()):
        return None
    if plan.only_when_header:
        value = _header_value(conn._out, plan.only_when_header)
        if value is None:
            return None
        forwarded = conn._xff if conn.is_trusted_peer else None
        client_ip = client_address(
            conn.peer.decode("latin-1"),
            None if forwarded is None else forwarded.decode("latin-1"),
            snapshot.trusted_networks,
        )
        if not is_fault_requested(plan, client_ip, path.decode("latin-1"), value, time.time()):
            conn.counters.inc("faults_refused_total", route)
            return None
    kind = pick_fault(plan, _randrange(ROLL_BP), _randrange(ROLL_BP))
    if kind is not None:
        conn.counters.inc("faults_injected_total", route, kind.value)
    return kind


def _header_value(out: list[bytes], name: bytes) -> str | None:
    """The first value of header `name` (lowercase) among the copied request headers."""
    # The copied headers sit in _out as (name, ": ", value, CRLF) after the request line.
    for at in range(1, len(out) - 2, 4):
        if out[at].lower() == name:
            return out[at + 2].decode("latin-1").strip()
    return None
