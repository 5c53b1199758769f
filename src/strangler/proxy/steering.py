"""Where a request goes and what the gateway changes about it on the way: the route, the
canary's choice of side, a drill's fault, the legacy fallback, and the Rails bridge for
requests to the new backend (identity, CSRF, the session cookie).

Rules:
- `steer` is called once per request, from ClientConnection, with the frozen RequestHead; the
  routing decision, the canary side included, is made there and nowhere else. Everything here
  is a function of the head, the snapshot and the bridge; the only side effects are counters.
- A request on a plain route (no canary, no fault, not bound for the new backend) costs one
  table lookup and one Steering.
- A refusal (Rails' forgery protection) is returned in `Steering.refusal`: the connection
  answers it, since only it knows how a refused head is written and counted.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from strangler.identity.bridge import SAFE_METHODS, IdentityBridge, RequestFacts
from strangler.identity.rails_session import AnonymousReason, SessionOutcome, session_user_id
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
    from strangler.observe.counters import Counters
    from strangler.proxy.request_head import RequestHead
    from strangler.routing.model import CanarySides, Decision
    from strangler.runtime.snapshot import Snapshot

_getrandbits = random.getrandbits
_randrange = random.randrange

# What `retry_on_legacy` may send twice: RFC 9110 §9.2.1 safe methods a browser sends.
IDEMPOTENT_METHODS: Final = frozenset({b"GET", b"HEAD", b"OPTIONS"})

_METHOD_NAMES: Final[dict[bytes, str]] = {
    m: m.decode() for m in (b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS")
}


class Steering:
    """What `steer` decided for one request. Fields that most requests leave alone are
    class-level defaults: one Steering is made per request."""

    # The canary's Set-Cookie line issuing the sticky cookie, added to the answer.
    set_cookie = b""
    fault: FaultKind | None = None
    # Canary `retry_on_legacy`: the legacy side, where this safe request goes if new refuses it.
    fallback: Decision | None = None
    # The Rails bridge: the identity header line, a check the form body must pass before the
    # request is forwarded, the user it named, and why the request is refused (403).
    identity = b""
    body_gate: Callable[[bytes], str | None] | None = None
    user: str | None = None
    refusal: str | None = None

    def __init__(self, decision: Decision, cookie: bytes | None) -> None:
        # The side that answers (for a canary route, the side it chose).
        self.decision = decision
        # The Cookie value to forward (see request_head.upstream_head): as sent, unless the
        # bridge drops the Rails session from it.
        self.cookie = cookie


def steer(
    head: RequestHead,
    snapshot: Snapshot,
    route_method: bytes,
    bridge: IdentityBridge | None,
    counters: Counters,
) -> Steering:
    """Route a request (`route_method`: the method Rails will act on, after `_method`)."""
    method_name = _METHOD_NAMES.get(route_method) or route_method.decode("latin-1")
    decision = snapshot.table.decide(method_name, head.path.decode("latin-1"))
    steering = Steering(decision, head.cookie)
    session: SessionOutcome | None = None
    sides = decision.canary
    if sides is not None:
        decision, steering.set_cookie, session = choose_canary_side(
            head, snapshot, sides, bridge, counters
        )
        steering.decision = decision
        if (
            sides.retries_on_legacy
            and decision is sides.new
            and head.method in IDEMPOTENT_METHODS
            and not (head.is_upgrade or head.has_body)
        ):
            steering.fallback = sides.legacy
    if decision.faults is not None:
        steering.fault = choose_fault(
            head, snapshot, decision.faults, decision.route_label, counters
        )
    # Bridged by the side that answers, never by the backend's name: a route's own backend,
    # a canary's `backend:` and `default: new` are all the new side.
    if bridge is not None and (decision.is_new_side or decision.backend == bridge.new_backend):
        _bridge_to_new(steering, head, bridge, route_method, session, counters)
    return steering


def choose_canary_side(
    head: RequestHead,
    snapshot: Snapshot,
    sides: CanarySides,
    bridge: IdentityBridge | None,
    counters: Counters,
) -> tuple[Decision, bytes, SessionOutcome | None]:
    """A canary route's request: extract what its plan reads, choose a side, count it.

    Returns the chosen side's Decision, the Set-Cookie line issuing the sticky cookie (or
    b""), and the Rails session when it was decoded, so the bridge doesn't decode it twice.
    """
    plan = sides.plan
    parts = head.parts
    headers: dict[str, str] = {}
    if plan.header_names:
        # The copied headers sit in parts as (name, ": ", value, CRLF) after the request line.
        for at in range(1, len(parts) - 2, 4):
            name = parts[at].lower().decode("latin-1")
            if name in plan.header_names and name not in headers:
                headers[name] = parts[at + 2].decode("latin-1").strip()
    cookie = head.cookie
    cookies = EMPTY
    if cookie is not None and plan.cookie_names:
        cookies = cookie_values(cookie.decode("latin-1"), plan.cookie_names)
    query = EMPTY
    url = head.url
    question = url.find(b"?")
    if question >= 0 and plan.query_names:
        query = query_values(url[question + 1 :].decode("latin-1"), plan.query_names)
    session: SessionOutcome | None = None
    user_id: str | None = None
    if plan.needs_user_id and bridge is not None:
        session = bridge.session(cookie)
        if session.session is not None:
            user_id = session_user_id(session.session, bridge.user_id_key)
    client_ip = ""
    if plan.needs_client_ip:
        client_ip = client_address(
            head.peer.decode("latin-1"), head.trusted_forwarded_for(), snapshot.trusted_networks
        )
    override, signature = head.override, head.signature
    choice = choose(
        plan,
        CanaryFacts(
            path=head.path.decode("latin-1"),
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
    counters.inc("canary_decisions_total", route, choice.side.value, choice.reason.value)
    if choice.ignored_override is not None:
        counters.inc("canary_overrides_ignored_total", route, choice.ignored_override.value)
    set_cookie = b""
    if choice.sets_sticky_cookie and choice.sticky_value is not None:
        counters.inc("canary_sticky_cookies_issued_total", route)
        value = set_cookie_header(plan.sticky_cookie, choice.sticky_value, is_tls=head.is_tls)
        set_cookie = b"Set-Cookie: " + value.encode("latin-1") + b"\r\n"
    return sides.side(choice.side), set_cookie, session


def _bridge_to_new(
    steering: Steering,
    head: RequestHead,
    bridge: IdentityBridge,
    method: bytes,
    session: SessionOutcome | None,
    counters: Counters,
) -> None:
    """A request to the new side: the identity header line, and a check its form body must pass
    first. Refuses a forged state change, or an Upgrade from another origin (403); drops the
    Rails cookie. `method` is the one Rails acts on (after `_method`), `head.method` the one
    sent; `session` is the Rails session when the canary already decoded it.

    A state change by either method is checked: Rails skips the check for a POST overridden to
    GET, but a backend that is not Rack acts on the POST it receives.

    A `csrf: false` route gets no identity from the cookie: it is exempt because its callers are
    not the user's browser (webhooks, API clients with credentials of their own), and a
    cross-site form posted to it must not act as the user."""
    decision = steering.decision
    cookie = head.cookie
    route = decision.route or ""
    if route in bridge.csrf_exempt:
        if cookie is not None:
            steering.cookie = bridge.without_session_cookie(cookie)
        return
    outcome = bridge.session(cookie) if session is None else session
    wire_method = head.method
    if method in SAFE_METHODS:
        # The per-form token (if any) is for the method the form was made with.
        method = wire_method
    if head.is_upgrade or bridge.needs_csrf_check(method, outcome):
        facts = _request_facts(head, method, cookie)
        refusal: str | None
        if head.is_upgrade:
            # Cross-site WebSocket hijacking: the handshake is a GET, so CSRF tokens never
            # apply; the Origin is the defence (Action Cable's allow_request_origin?).
            refusal = (
                bridge.check_upgrade_origin(facts, is_tls=head.is_tls)
                if outcome.anonymous_reason is not AnonymousReason.MISSING
                else None
            )
        else:
            refusal = bridge.check_origin(facts, is_tls=head.is_tls)
            if refusal is None and bridge.wants_form_body(facts):
                steering.body_gate = functools.partial(bridge.check_token, facts, outcome)
            elif refusal is None:
                refusal = bridge.check_token(facts, outcome, None)
        if refusal is not None:
            counters.inc("identity_csrf_refused_total", refusal)
            counters.inc("csrf_refused_total", route or "_default")
            steering.refusal = refusal
            return
    if cookie is not None and route not in bridge.passes_session_cookie:
        steering.cookie = bridge.without_session_cookie(cookie)
    identity = bridge.identity_header(
        outcome, route, backend=decision.backend, has_authorization=head.has_authorization
    )
    steering.identity = identity
    if identity:
        steering.user = bridge.last_user_id


def _request_facts(head: RequestHead, method: bytes, cookie: bytes | None) -> RequestFacts:
    trusted = head.is_trusted_peer
    return RequestFacts(
        method=method,
        wire_method=head.method,
        path=head.path,
        cookie=cookie,
        has_authorization=head.has_authorization,
        csrf_token=head.csrf_token,
        origin=head.origin,
        host=head.host,
        forwarded_host=head.forwarded_host if trusted else None,
        forwarded_proto=head.forwarded_proto if trusted else None,
        content_type=head.content_type,
    )


def bridge_shadow_copy(
    head: RequestHead, bridge: IdentityBridge, decision: Decision, copy_head: bytes
) -> bytes:
    """The head of a shadow copy bound for the new side: identity added (none on a `csrf: false`
    route), Rails cookie dropped, like a request routed there (no CSRF check: the primary went
    to legacy, and only safe methods are copied unless the target is a sandbox)."""
    cookie = head.cookie
    route = decision.route or ""
    if cookie is not None and route not in bridge.passes_session_cookie:
        name = head.parts[head.cookie_at - 2]
        kept = bridge.without_session_cookie(cookie)
        line = name + b": " + cookie + b"\r\n"
        replacement = b"" if kept is None else name + b": " + kept + b"\r\n"
        copy_head = copy_head.replace(line, replacement, 1)
    if route in bridge.csrf_exempt:
        return copy_head
    identity = bridge.identity_header(
        bridge.session(cookie),
        route,
        backend=decision.shadow_backend or "",
        has_authorization=head.has_authorization,
    )
    return copy_head[:-2] + identity + b"\r\n" if identity else copy_head


def choose_fault(
    head: RequestHead, snapshot: Snapshot, plan: FaultPlan, route: str, counters: Counters
) -> FaultKind | None:
    """The fault a request on a faulted side gets (None mostly), counted when it gets one.

    Called only for a Decision that carries a FaultPlan, after the side is chosen."""
    if plan.expires_at and plan.is_expired(time.time()):
        return None
    if plan.only_when_header:
        value = head.header_value(plan.only_when_header)
        if value is None:
            return None
        client_ip = client_address(
            head.peer.decode("latin-1"), head.trusted_forwarded_for(), snapshot.trusted_networks
        )
        if not is_fault_requested(plan, client_ip, head.path.decode("latin-1"), value, time.time()):
            counters.inc("faults_refused_total", route)
            return None
    kind = pick_fault(plan, _randrange(ROLL_BP), _randrange(ROLL_BP))
    if kind is not None:
        counters.inc("faults_injected_total", route, kind.value)
    return kind
