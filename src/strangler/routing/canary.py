"""Stage `canary`: which side, legacy or new, answers one request; sticky per user.

Pure. Never awaits, never reads a clock and never draws a random number: `now` and a fresh
sticky id are facts the proxy hands in. The same plan and facts always give the same choice.

Rules:
- A request's bucket is MurmurHash3 (x86_32, seed 0) of "{group}:{key}" modulo 10,000, as
  Unleash normalizes stickiness (it uses modulo 100); the request goes to new iff its bucket is
  below weight x 100. Raising the weight only adds buckets, so everyone on new at 5 % is still on
  new at 25 %, and one key lands on one side in every worker and every gateway process.
- The key is the first present of the plan's stickiness sources. `sticky_cookie` is always
  present: a request without a valid one is keyed on the fresh id its answer sets as the
  cookie, so sources listed after it are never reached.
- Precedence: an honoured override header, then the first matching segment (with its own
  weight, on the same bucket), then the group's weight. A weight of 0 or 100 needs no key.
- The override header is honoured only from the configured client networks or with a valid,
  unexpired HMAC-SHA256 signature, compared in constant time. Anything else is ignored and the
  reason is returned for counting: without networks and a secret it is never honoured.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import parse_qsl

import mmh3

BUCKETS = 10_000
# Weights are percentages in steps of 0.01, kept as whole basis points (0..10,000).
FULL_WEIGHT_BP = BUCKETS

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

EMPTY: Mapping[str, str] = MappingProxyType({})

# RFC 9110 §5.6.2 token: what a header or cookie name may be.
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}")
# What the gateway issues as the sticky cookie's value (128 random bits in hex).
_STICKY_VALUE = re.compile(r"[0-9a-f]{32}")
_SIGNATURE = re.compile(r"([0-9]{1,12}):([0-9a-fA-F]{64})")

# Headers the gateway consumes or rewrites before forwarding, so a canary can't read them as a
# client sent them: the client address is `client_ip`, cookies are `cookie:NAME`.
GATEWAY_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "forwarded",
        "traceparent",
        "x-request-id",
        "via",
        "cookie",
        "x-strangler-shadow",
        "x-strangler-backend",
        "x-strangler-signature",
    }
)


class Side(enum.StrEnum):
    """Which backend answers a canary route's request."""

    LEGACY = "legacy"
    NEW = "new"


class ChoiceReason(enum.StrEnum):
    """Why a canary request went where it went (a label of `canary_decisions_total`)."""

    OVERRIDE_NETWORK = "override_network"
    OVERRIDE_SIGNATURE = "override_signature"
    SEGMENT = "segment"
    WEIGHT = "weight"
    # A weight strictly between 0 and 100 but no stickiness key: legacy, the safe side.
    NO_KEY = "no_key"


class OverrideRefusal(enum.StrEnum):
    """Why an `X-Strangler-Backend` header was ignored (`canary_overrides_ignored_total`)."""

    BAD_VALUE = "bad_value"
    UNTRUSTED_CLIENT = "untrusted_client"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED_SIGNATURE = "expired_signature"
    SIGNATURE_TTL_TOO_LONG = "signature_ttl_too_long"


class StickinessKind(enum.StrEnum):
    IDENTITY = "identity"
    HEADER = "header"
    COOKIE = "cookie"
    STICKY_COOKIE = "sticky_cookie"
    CLIENT_IP = "client_ip"


_NAMELESS_SOURCES = frozenset(
    {StickinessKind.IDENTITY, StickinessKind.STICKY_COOKIE, StickinessKind.CLIENT_IP}
)


@dataclass(frozen=True, slots=True)
class StickinessSource:
    """One place a stickiness key can come from; `name` is the header (lowercase) or cookie."""

    kind: StickinessKind
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> StickinessSource:
        """`identity`, `header:NAME`, `cookie:NAME`, `sticky_cookie` or `client_ip`."""
        kind_text, sep, name = text.partition(":")
        if not sep:
            if text in _NAMELESS_SOURCES:
                return cls(StickinessKind(text))
            raise ValueError(
                f"unknown stickiness source {text!r}; use identity, header:NAME, cookie:NAME, "
                "sticky_cookie or client_ip"
            )
        if kind_text not in (StickinessKind.HEADER, StickinessKind.COOKIE):
            raise ValueError(
                f"unknown stickiness source {text!r}; only header:NAME and cookie:NAME take a name"
            )
        if TOKEN.fullmatch(name) is None:
            raise ValueError(f"{name!r} is not a valid {kind_text} name")
        if kind_text == StickinessKind.HEADER:
            check_header_name(name)
            return cls(StickinessKind.HEADER, name.lower())
        return cls(StickinessKind.COOKIE, name)

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.name}" if self.name else self.kind.value


def check_header_name(name: str) -> None:
    """Refuse headers a canary can't read as the client sent them (raises ValueError)."""
    if name.lower() in GATEWAY_HEADERS:
        raise ValueError(
            f"header {name!r} is consumed or rewritten by the gateway; "
            "use client_ip for the client's address and cookie:NAME for cookies"
        )


@dataclass(frozen=True, slots=True)
class Segment:
    """Requests that get a weight of their own (100 forces new, 0 forces legacy).

    Every condition given must hold; within one, any listed value matches. Header names are
    lowercase; values are compared exactly (header values without surrounding whitespace,
    cookie values raw, query values percent-decoded).
    """

    name: str
    weight_bp: int
    headers: tuple[tuple[str, frozenset[str]], ...] = ()
    cookies: tuple[tuple[str, frozenset[str]], ...] = ()
    query: tuple[tuple[str, frozenset[str]], ...] = ()
    user_ids: frozenset[str] | None = None
    networks: tuple[IPNetwork, ...] = ()

    def matches(self, facts: CanaryFacts) -> bool:
        if self.user_ids is not None and facts.user_id not in self.user_ids:
            return False
        for name, values in self.headers:
            if facts.headers.get(name) not in values:
                return False
        for name, values in self.cookies:
            if facts.cookies.get(name) not in values:
                return False
        for name, values in self.query:
            if facts.query.get(name) not in values:
                return False
        return not self.networks or is_in_networks(facts.client_ip, self.networks)


@dataclass(frozen=True, slots=True)
class OverridePolicy:
    """Who may pick a side with `X-Strangler-Backend` (shared by every canary route)."""

    networks: tuple[IPNetwork, ...] = ()
    secret: bytes = field(default=b"", repr=False)
    max_ttl_s: float = 86_400.0


@dataclass(frozen=True, slots=True)
class StickyCookie:
    """The cookie the gateway issues when `sticky_cookie` is a stickiness source."""

    name: str = "strangler_sticky"
    max_age_s: int = 31_536_000


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    """Steps the analyzer (a later part of the canary issue) will move the weight through."""

    steps_bp: tuple[int, ...] = (100, 500, 2500, 5000, 10_000)
    interval_s: float = 60.0
    min_requests: int = 50


@dataclass(frozen=True, slots=True)
class CanaryPlan:
    """One rollout group's compiled settings; every route of the group holds the same plan.

    The `*_names` and `needs_*` fields are derived: what the proxy has to extract from a request
    for `choose`, so it extracts nothing else.
    """

    group: str
    weight_bp: int
    stickiness: tuple[StickinessSource, ...]
    segments: tuple[Segment, ...] = ()
    override: OverridePolicy = OverridePolicy()
    sticky_cookie: StickyCookie = StickyCookie()
    rollout: RolloutPlan = RolloutPlan()
    header_names: frozenset[str] = field(init=False)
    cookie_names: frozenset[str] = field(init=False)
    query_names: frozenset[str] = field(init=False)
    needs_user_id: bool = field(init=False)
    needs_client_ip: bool = field(init=False)
    uses_sticky_cookie: bool = field(init=False)

    def __post_init__(self) -> None:
        kinds = {source.kind for source in self.stickiness}
        headers = {s.name for s in self.stickiness if s.kind is StickinessKind.HEADER}
        cookies = {s.name for s in self.stickiness if s.kind is StickinessKind.COOKIE}
        query: set[str] = set()
        for segment in self.segments:
            headers.update(name for name, _ in segment.headers)
            cookies.update(name for name, _ in segment.cookies)
            query.update(name for name, _ in segment.query)
        uses_sticky = StickinessKind.STICKY_COOKIE in kinds
        if uses_sticky:
            cookies.add(self.sticky_cookie.name)
        derived = {
            "header_names": frozenset(headers),
            "cookie_names": frozenset(cookies),
            "query_names": frozenset(query),
            "needs_user_id": StickinessKind.IDENTITY in kinds
            or any(s.user_ids is not None for s in self.segments),
            "needs_client_ip": StickinessKind.CLIENT_IP in kinds
            or bool(self.override.networks)
            or any(s.networks for s in self.segments),
            "uses_sticky_cookie": uses_sticky,
        }
        for name, value in derived.items():
            # A frozen dataclass sets its derived fields once, here.
            object.__setattr__(self, name, value)

    @property
    def weight(self) -> float:
        return self.weight_bp / 100


@dataclass(frozen=True, slots=True)
class CanaryFacts:
    """What the proxy extracted from one request, as plain text; only what the plan asks for.

    `headers` is keyed by lowercase name (the first value), `cookies` and `query` by name (the
    first value). `path` is the raw request path without its query string. `now` (Unix seconds)
    matters only with a signature; `fresh_sticky_value` only when the plan uses a sticky cookie.
    """

    path: str = "/"
    headers: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    cookies: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    query: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    user_id: str | None = None
    client_ip: str = ""
    override: str | None = None
    signature: str | None = None
    now: float = 0.0
    fresh_sticky_value: str = ""


@dataclass(frozen=True, slots=True)
class CanaryChoice:
    """The side one request goes to, why, and whether its answer sets the sticky cookie."""

    side: Side
    reason: ChoiceReason
    sets_sticky_cookie: bool = False
    sticky_value: str | None = None
    segment: str | None = None
    ignored_override: OverrideRefusal | None = None


def bucket(group: str, key: str) -> int:
    """The key's bucket in the group, 0..9999: MurmurHash3 x86_32, seed 0, of "group:key"."""
    return mmh3.hash(f"{group}:{key}", signed=False) % BUCKETS


def choose(plan: CanaryPlan, facts: CanaryFacts) -> CanaryChoice:
    """The side for one request: an honoured override, else the first matching segment's
    weight, else the group's weight, each on the request's sticky bucket."""
    ignored: OverrideRefusal | None = None
    if facts.override is not None:
        verdict = judge_override(plan.override, facts)
        if isinstance(verdict, OverrideRefusal):
            ignored = verdict
        else:
            side, reason = verdict
            return CanaryChoice(side, reason)
    for segment in plan.segments:
        if segment.matches(facts):
            return _by_weight(
                plan, facts, segment.weight_bp, ChoiceReason.SEGMENT, ignored, segment.name
            )
    return _by_weight(plan, facts, plan.weight_bp, ChoiceReason.WEIGHT, ignored, None)


def _by_weight(
    plan: CanaryPlan,
    facts: CanaryFacts,
    weight_bp: int,
    reason: ChoiceReason,
    ignored: OverrideRefusal | None,
    segment: str | None,
) -> CanaryChoice:
    if weight_bp <= 0:
        return CanaryChoice(Side.LEGACY, reason, segment=segment, ignored_override=ignored)
    if weight_bp >= FULL_WEIGHT_BP:
        return CanaryChoice(Side.NEW, reason, segment=segment, ignored_override=ignored)
    key, sets_cookie = sticky_key(plan, facts)
    if key is None:
        return CanaryChoice(
            Side.LEGACY, ChoiceReason.NO_KEY, segment=segment, ignored_override=ignored
        )
    side = Side.NEW if bucket(plan.group, key) < weight_bp else Side.LEGACY
    return CanaryChoice(
        side,
        reason,
        sets_sticky_cookie=sets_cookie,
        sticky_value=key if sets_cookie else None,
        segment=segment,
        ignored_override=ignored,
    )


def sticky_key(plan: CanaryPlan, facts: CanaryFacts) -> tuple[str | None, bool]:
    """(the request's stickiness key or None, whether it is a sticky cookie to issue now)."""
    for source in plan.stickiness:
        kind = source.kind
        value: str | None
        if kind is StickinessKind.IDENTITY:
            value = facts.user_id
        elif kind is StickinessKind.HEADER:
            value = facts.headers.get(source.name)
        elif kind is StickinessKind.COOKIE:
            value = facts.cookies.get(source.name)
        elif kind is StickinessKind.STICKY_COOKIE:
            value = facts.cookies.get(plan.sticky_cookie.name)
            if value is None or not is_sticky_value(value):
                fresh = facts.fresh_sticky_value
                return (fresh, True) if fresh else (None, False)
        else:
            value = facts.client_ip
        if value:
            return value, False
    return None, False


def is_sticky_value(value: str) -> bool:
    """Whether a sticky cookie's value is one the gateway issues (else it is issued anew)."""
    return _STICKY_VALUE.fullmatch(value) is not None


# -- the override header ----------------------------------------------------------------------


def override_message(side: str, path: str, expiry: int) -> bytes:
    """What an override signature signs: "{side}:{path}:{expiry}" (the path without query)."""
    return f"{side}:{path}:{expiry}".encode("latin-1")


def sign_override(secret: bytes, side: str, path: str, expiry: int) -> str:
    """The `X-Strangler-Signature` value that lets `side` be forced on `path` until `expiry`
    (Unix seconds): "{expiry}:{hex HMAC-SHA256(secret, side:path:expiry)}"."""
    mac = hmac.new(secret, override_message(side, path, expiry), hashlib.sha256).hexdigest()
    return f"{expiry}:{mac}"


def judge_override(
    policy: OverridePolicy, facts: CanaryFacts
) -> tuple[Side, ChoiceReason] | OverrideRefusal:
    """The side an `X-Strangler-Backend` header forces, or why it is ignored."""
    value = (facts.override or "").strip().lower()
    if value not in (Side.NEW, Side.LEGACY):
        return OverrideRefusal.BAD_VALUE
    side = Side(value)
    if policy.networks and is_in_networks(facts.client_ip, policy.networks):
        return side, ChoiceReason.OVERRIDE_NETWORK
    if facts.signature is None or not policy.secret:
        return OverrideRefusal.UNTRUSTED_CLIENT
    match = _SIGNATURE.fullmatch(facts.signature.strip())
    if match is None:
        return OverrideRefusal.BAD_SIGNATURE
    expiry = int(match[1])
    expected = hmac.new(
        policy.secret, override_message(value, facts.path, expiry), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected.encode("ascii"), match[2].lower().encode("ascii")):
        return OverrideRefusal.BAD_SIGNATURE
    if expiry <= facts.now:
        return OverrideRefusal.EXPIRED_SIGNATURE
    if expiry - facts.now > policy.max_ttl_s:
        return OverrideRefusal.SIGNATURE_TTL_TOO_LONG
    return side, ChoiceReason.OVERRIDE_SIGNATURE


# -- extracting facts (pure helpers the proxy calls) ------------------------------------------


def parse_address(text: str) -> IPAddress | None:
    """An IP address, IPv4-mapped IPv6 addresses as IPv4; None if `text` isn't one."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_in_networks(text: str, networks: Sequence[IPNetwork]) -> bool:
    address = parse_address(text)
    return address is not None and any(address in network for network in networks)


def client_address(peer: str, forwarded_for: str | None, trusted: Sequence[IPNetwork]) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the right-most
    X-Forwarded-For entry that is not itself a trusted proxy (entries left of it are whatever
    the client claimed, so they are never believed)."""
    if not forwarded_for or not is_in_networks(peer, trusted):
        return peer
    client = peer
    for entry in reversed(forwarded_for.split(",")):
        address = parse_address(entry)
        if address is None:
            break
        client = str(address)
        if not any(address in network for network in trusted):
            break
    return client


def cookie_values(header: str | None, names: Iterable[str]) -> dict[str, str]:
    """The first value of each cookie in `names` the Cookie header carries (raw, as sent)."""
    wanted = set(names)
    found: dict[str, str] = {}
    if not header or not wanted:
        return found
    for pair in header.split(";"):
        name, has_value, value = pair.strip(" \t").partition("=")
        if has_value and name in wanted and name not in found:
            found[name] = value
    return found


def query_values(query: str, names: Iterable[str]) -> dict[str, str]:
    """The first value of each query parameter in `names` (percent-decoded, "+" as space)."""
    wanted = set(names)
    found: dict[str, str] = {}
    if not query or not wanted:
        return found
    for name, value in parse_qsl(query, keep_blank_values=True, encoding="latin-1"):
        if name in wanted and name not in found:
            found[name] = value
    return found


def set_cookie_header(cookie: StickyCookie, value: str, *, is_tls: bool) -> str:
    """The Set-Cookie value that issues the sticky cookie (HttpOnly, SameSite=Lax; Secure on
    TLS, which needs a TLS listener: the gateway has none yet, so callers pass False)."""
    secure = "; Secure" if is_tls else ""
    return (
        f"{cookie.name}={value}; Path=/; Max-Age={cookie.max_age_s}; HttpOnly; SameSite=Lax{secure}"
    )


def weight_to_bp(weight: float) -> int:
    """A percentage in steps of 0.01 as basis points; raises ValueError off the grid."""
    scaled = weight * 100
    bp = round(scaled)
    if abs(scaled - bp) > 1e-6 or not 0 <= bp <= FULL_WEIGHT_BP:
        raise ValueError(f"expected a percentage from 0 to 100 in steps of 0.01, got {weight!r}")
    return bp


__all__ = [
    "BUCKETS",
    "CanaryChoice",
    "CanaryFacts",
    "CanaryPlan",
    "ChoiceReason",
    "OverridePolicy",
    "OverrideRefusal",
    "RolloutPlan",
    "Segment",
    "Side",
    "StickinessKind",
    "StickinessSource",
    "StickyCookie",
    "bucket",
    "choose",
    "client_address",
    "cookie_values",
    "judge_override",
    "query_values",
    "set_cookie_header",
    "sign_override",
]
