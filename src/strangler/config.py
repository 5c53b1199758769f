"""The YAML config: pydantic models and `load_config(path)`.

Rules: a file that cannot be used raises `ConfigError` naming the file, the line and the field,
and what was expected; nothing is half-applied. Loading reads the file and nothing else.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import fnmatch
import ipaddress
import itertools
import os
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from strangler.diff import DiffRules
from strangler.errors import ConfigError, ConfigProblem
from strangler.proxy.request_target import PathPolicy
from strangler.routing.canary import (
    TOKEN,
    StickinessKind,
    StickinessSource,
    check_header_name,
    weight_to_bp,
)
from strangler.routing.model import SUPPORTED_STAGES, Stage
from strangler.routing.overlap import unreachable
from strangler.routing.pattern import PatternError, parse_match

PositiveSeconds = Annotated[float, Field(gt=0, le=86_400)]


class _Model(BaseModel):
    # A misspelt key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackendTlsConfig(_Model):
    """How the gateway talks TLS to an https:// backend. Files are relative to the config file."""

    # PEM bundle of the CAs to trust instead of the system store.
    ca: str | None = None
    # The name sent in SNI and checked against the certificate (default: the URL's host).
    server_name: str | None = None
    # A client certificate chain and its key, for a backend that asks for one (mTLS).
    client_cert: str | None = None
    client_key: str | None = None
    # false accepts any certificate: only for a test backend with a throwaway certificate.
    verify: bool = True

    @model_validator(mode="after")
    def _cert_with_key(self) -> BackendTlsConfig:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together: give both or neither")
        return self


class ServerUrlConfig(_Model):
    """One server of a backend with several, and its share of the traffic."""

    url: str
    # Relative to the other servers' weights (smooth weighted round robin, least_request).
    weight: Annotated[int, Field(ge=1, le=1000)] = 1

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _check_backend_url(value)


class HealthCheckConfig(_Model):
    """Active health checks: a GET of `path` on every server of the backend, each interval."""

    # Rails 7.1 generates `/up` (rails/health#show): 200 when the app boots, 500 otherwise.
    path: Annotated[str, Field(pattern=r"^/[^\s?#]*(\?[^\s#]*)?$")] = "/up"
    interval_s: Annotated[float, Field(ge=0.05, le=3600)] = 5.0
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    # Consecutive failed checks that mark an up server down, and passed ones that bring it back.
    unhealthy_after: Annotated[int, Field(ge=1, le=100)] = 3
    healthy_after: Annotated[int, Field(ge=1, le=100)] = 2


class OutlierConfig(_Model):
    """Passive outlier detection: servers that fail requests are ejected for a while."""

    # Connect failures, resets, read timeouts and 5xx answers in a row that eject a server.
    consecutive_failures: Annotated[int, Field(ge=1, le=10_000)] = 5
    # The first ejection lasts this long; each further one in a row lasts one more eject_s
    # (at most 10 x eject_s), like Envoy's base_ejection_time.
    eject_s: Annotated[float, Field(gt=0, le=86_400)] = 30.0
    # Never eject more than this share of the servers (outlier detection alone never takes
    # a backend's last server below 100).
    max_ejected_percent: Annotated[int, Field(ge=0, le=100)] = 50


class BackendConfig(_Model):
    """One upstream the gateway can send requests to: one server (`url`) or several (`urls`)."""

    url: str | None = None
    # Several servers, each a URL or {url, weight}; same scheme, path prefix and `tls:`.
    urls: Annotated[list[ServerUrlConfig], Field(min_length=1, max_length=256)] | None = None
    balance: Literal["least_request", "round_robin"] = "least_request"
    health: HealthCheckConfig | None = None
    outlier: OutlierConfig | None = None
    # How long a host name's addresses are used before they are looked up again; set, a name
    # with several addresses is several servers (Envoy's STRICT_DNS). Unset for a lone `url`:
    # every new connection resolves the name itself, as the system resolver answers.
    dns_ttl_s: Annotated[float, Field(ge=0.05, le=86_400)] | None = None
    connect_timeout_s: PositiveSeconds = 1.0
    read_timeout_s: PositiveSeconds = 30.0
    pool_size: Annotated[int, Field(ge=1, le=100_000)] = 256
    pool_idle_s: PositiveSeconds = 60.0
    # Rails apps build absolute URLs from Host, so by default the client's Host passes through.
    host_header: Literal["preserve", "backend"] = "preserve"
    # As a shadow target: copies of GET/OPTIONS are pipelined (RFC 9112 §9.3.2) up to this many
    # per connection, which saves most of their syscalls; 1 turns pipelining off for a server
    # that mishandles it (its failures would only ever show as shadow errors).
    shadow_pipeline_depth: Annotated[int, Field(ge=1, le=1024)] = 16
    # Only for https:// URLs.
    tls: BackendTlsConfig | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_backend_url(value)

    @field_validator("urls", mode="before")
    @classmethod
    def _check_urls(cls, value: object) -> object:
        # A plain string is a server of weight 1.
        if isinstance(value, list):
            return [{"url": item} if isinstance(item, str) else item for item in value]
        return value

    @model_validator(mode="after")
    def _one_way_to_name_servers(self) -> BackendConfig:
        if self.url is not None and self.urls is not None:
            raise _FieldError(("urls",), "give `url` (one server) or `urls` (several), not both")
        if self.url is None and self.urls is None:
            raise _FieldError(("url",), "this field is required (or `urls` for several servers)")
        servers = self.servers
        first = urlsplit(servers[0][0])
        for index, (url, _) in enumerate(servers[1:], start=1):
            parts = urlsplit(url)
            if parts.scheme != first.scheme or parts.path.rstrip("/") != first.path.rstrip("/"):
                raise _FieldError(
                    ("urls", index),
                    f"every server of a backend has the same scheme and path prefix: {url!r} "
                    f"differs from {servers[0][0]!r}",
                )
        seen = set()
        for index, (url, _) in enumerate(servers):
            key = (urlsplit(url).hostname, _port_of(url))
            if key in seen:
                raise _FieldError(("urls", index), f"{url!r} names the same server twice")
            seen.add(key)
        return self

    @model_validator(mode="after")
    def _tls_needs_https(self) -> BackendConfig:
        if self.tls is not None and not self.is_https:
            raise ValueError("`tls:` is only for https:// backends; this url is http://")
        return self

    @property
    def servers(self) -> list[tuple[str, int]]:
        """Each server's URL and weight (one for a lone `url`)."""
        if self.urls is None:
            return [(self.url or "", 1)]
        return [(item.url, item.weight) for item in self.urls]

    @property
    def is_balanced(self) -> bool:
        """Whether requests go through the balancer (several servers, health, outlier
        detection or DNS expansion); a lone `url` without them takes the plain pool."""
        return (
            self.urls is not None
            or self.health is not None
            or self.outlier is not None
            or self.dns_ttl_s is not None
        )

    @property
    def first_url(self) -> str:
        return self.servers[0][0]

    @property
    def is_https(self) -> bool:
        return urlsplit(self.first_url).scheme == "https"

    @property
    def host(self) -> str:
        hostname = urlsplit(self.first_url).hostname
        assert hostname is not None  # guaranteed by _check_backend_url
        return hostname

    @property
    def port(self) -> int:
        return _port_of(self.first_url)

    @property
    def authority(self) -> str:
        return urlsplit(self.first_url).netloc

    @property
    def path_prefix(self) -> str:
        """What goes before every forwarded path: `/v2` for `https://api:443/v2/` ("" for none)."""
        return urlsplit(self.first_url).path.rstrip("/")


def _port_of(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def _check_backend_url(value: str) -> str:
    if "://" not in value:
        # urlsplit reads "127.0.0.1:3000" as scheme "127.0.0.1"; say what is missing.
        raise ValueError(f"expected a URL with a scheme, e.g. http://{value}")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"expected an http:// or https:// URL, not {parts.scheme}://")
    if not parts.hostname:
        raise ValueError("expected a host, e.g. http://127.0.0.1:3000")
    if parts.query or parts.fragment:
        raise ValueError("expected scheme, host, port and a path prefix only (no ? or #)")
    if parts.path and not _PATH_PREFIX.fullmatch(parts.path):
        raise ValueError(
            f"the path prefix {parts.path!r} may hold only unreserved characters, `%XX` "
            "escapes and single slashes (it is prepended to every forwarded path as written)"
        )
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port: {exc}") from exc
    return value


# Segments of RFC 3986 unreserved characters and escapes; no empty or dot segment, so the
# prefix can't turn a canonical path (proxy/request_target.py) into another one.
_PATH_PREFIX = re.compile(r"(/(?!\.{1,2}(/|$))([A-Za-z0-9\-._~]|%[0-9A-Fa-f]{2})+)*/?")


class TlsConfig(_Model):
    """The HTTPS listener. Files are relative to the config file; re-read on SIGHUP."""

    listen: str = "0.0.0.0:8443"
    # PEM: the certificate chain (leaf first); `key` may be the same file when it holds both.
    cert: str
    key: str
    min_version: Literal["1.2", "1.3"] = "1.2"
    # true: the plain listener answers every request with 308 to the same URL over https.
    redirect_plain: bool = False

    @field_validator("listen", mode="before")
    @classmethod
    def _check_listen(cls, value: object) -> object:
        check_listen(value)
        return value


# Rails 7.1's generated config/initializers/filter_parameter_logging.rb (without :email, which is
# no credential and whose differences are worth seeing), plus what a gateway sees that Rails
# params never hold: Cookie and Authorization headers, session ids, API keys, JWTs. "^code$" is
# the whole key only: an OAuth authorization code, where a substring would also filter
# status_code, postcode and error_code.
DEFAULT_REDACT = (
    *("passw", "secret", "token", "_key", "crypt", "salt", "certificate", "otp", "ssn"),
    *("cvv", "cvc", "cookie", "session", "authorization", "apikey", "jwt", "bearer", "^code$"),
)


class ShadowConfig(_Model):
    """How a route in stage `shadow` copies its traffic to the new backend."""

    # `sandbox` means "the shadow target writes to a sandbox database": only then are
    # non-idempotent requests copied. Dual writes are how migrations corrupt data.
    writes: Literal["none", "sandbox"] = "none"
    max_body_bytes: Annotated[int, Field(ge=0, le=64 << 20)] = 1 << 20
    # Pairs whose bodies together pass this many bytes (a compressed body counts as
    # max_body_bytes) are compared in the worker's helper process, never on its event loop;
    # null compares every pair on the loop.
    diff_off_loop_bytes: Annotated[int, Field(ge=0)] | None = 64 << 10
    timeout_s: PositiveSeconds = 5.0
    backend: str | None = None
    # Noise learning (Diffy's idea): this share of safe requests is also sent to the legacy
    # backend a second time; paths where legacy differs from itself are noise, not regressions.
    noise_sample_rate: Annotated[float, Field(ge=0.0, le=1.0)] = 0.05
    # ...but at most this many a second per route and worker: each probe is one more request to
    # the legacy backend, and a busy route must not load it 5 % more for what a few hundred
    # samples already show.
    noise_max_per_s: Annotated[float, Field(gt=0.0)] = 20.0
    # Keys whose values never reach the store: substring match, like Rails filter_parameters,
    # or the whole key for "^name$"; `-` and `_` are the same. JWTs, Bearer and Basic
    # credentials and the Rails session cookie are filtered whatever their key.
    redact: list[str] = Field(default_factory=lambda: list(DEFAULT_REDACT))


def _on_weight_grid(value: float) -> float:
    weight_to_bp(value)
    return value


# A canary weight: a percentage from 0 to 100 in steps of 0.01 (10,000 buckets).
CanaryWeight = Annotated[float, Field(ge=0, le=100), AfterValidator(_on_weight_grid)]
_NAME_VALUES = dict[str, Annotated[list[str], Field(min_length=1)]]


def _check_networks(value: list[str]) -> list[str]:
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError as exc:
            raise ValueError(f"{item!r} is not an IP address or CIDR network") from exc
    return value


class CanarySegmentConfig(_Model):
    """Requests that get a weight of their own: 100 puts them all on new, 0 all on legacy.

    Every condition given must hold; within one, any of the listed values matches.
    """

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")]
    header: _NAME_VALUES = Field(default_factory=dict)
    cookie: _NAME_VALUES = Field(default_factory=dict)
    query: _NAME_VALUES = Field(default_factory=dict)
    user_ids: Annotated[list[StrictStr | StrictInt], Field(min_length=1)] | None = None
    client_cidrs: Annotated[list[str], Field(min_length=1)] | None = None
    weight: CanaryWeight

    @field_validator("header")
    @classmethod
    def _check_headers(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for name in value:
            if TOKEN.fullmatch(name) is None:
                raise ValueError(f"{name!r} is not a valid header name")
            check_header_name(name)
        return value

    @field_validator("cookie")
    @classmethod
    def _check_cookies(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for name in value:
            if TOKEN.fullmatch(name) is None:
                raise ValueError(f"{name!r} is not a valid cookie name")
        return value

    @field_validator("client_cidrs")
    @classmethod
    def _check_cidrs(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_networks(value)

    @model_validator(mode="after")
    def _has_a_condition(self) -> CanarySegmentConfig:
        if not (self.header or self.cookie or self.query or self.user_ids or self.client_cidrs):
            raise ValueError(
                "a segment needs at least one of header, cookie, query, user_ids, client_cidrs"
            )
        return self


class CanaryChecksConfig(_Model):
    """What one analysis interval checks (strangler.rollout.judge.Checks)."""

    # New's share of 5xx answers and connection failures: at most this, ...
    max_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.05
    # ... and at most k x legacy's (legacy's rate counts as at least error_rate_floor).
    max_error_ratio: Annotated[float, Field(ge=1, le=1000)] = 2.0
    error_rate_floor: Annotated[float, Field(ge=0, le=1)] = 0.01
    max_p50_ratio: Annotated[float, Field(ge=1, le=1000)] = 1.5
    max_p99_ratio: Annotated[float, Field(ge=1, le=1000)] = 2.0
    # Latency checks fail only when new is also slower by more than this.
    latency_slack_ms: Annotated[float, Field(ge=0, le=60_000)] = 5.0
    # Mann-Whitney U (new slower than legacy): significance and minimum effect P(new > legacy).
    mann_whitney_alpha: Annotated[float, Field(gt=0, lt=1)] = 0.01
    mann_whitney_min_effect: Annotated[float, Field(ge=0.5, le=1)] = 0.6
    # With `canary.shadow: true`: the Wilson 95 % lower bound of the interval's parity (on at
    # least 100 comparisons) at least this.
    min_parity: Annotated[float, Field(ge=0, le=1)] = 0.99


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL")
    return value


class GateConfig(_Model):
    """A confirm gate (Flagger's confirm-traffic-increase): before each step that raises new's
    share, the analyzer POSTs the step here and moves only on a 2xx answer."""

    url: str
    timeout_s: PositiveSeconds = 5.0
    # The environment variable holding the HMAC-SHA256 signing secret (never the secret itself).
    secret_env: str | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _check_http_url(value)


class CanaryRolloutConfig(_Model):
    """The steps the canary analyzer moves a group's weight through, and when."""

    steps: Annotated[list[CanaryWeight], Field(min_length=1, max_length=100)] = Field(
        default_factory=lambda: [1.0, 5.0, 25.0, 50.0, 100.0]
    )
    interval_s: Annotated[float, Field(ge=1, le=86_400)] = 60.0
    # Per interval and side: fewer requests make the interval inconclusive.
    min_requests: Annotated[int, Field(ge=1, le=1_000_000_000)] = 50
    # Consecutive passing intervals that promote to the next step.
    passes: Annotated[int, Field(ge=1, le=1000)] = 1
    # What a failing interval does: roll back to legacy at once, or pause where it is.
    on_fail: Literal["rollback", "pause"] = "rollback"
    # Consecutive inconclusive intervals (too little traffic) that pause the rollout.
    max_inconclusive: Annotated[int, Field(ge=1, le=100_000)] = 10
    # false: the analyzer judges and records verdicts but never moves the weight itself.
    auto: bool = True
    # Asked, in order, before every promotion and completion; all must answer 2xx.
    gates: Annotated[list[GateConfig], Field(max_length=20)] = Field(default_factory=list)
    checks: CanaryChecksConfig = Field(default_factory=CanaryChecksConfig)

    @field_validator("steps")
    @classmethod
    def _check_steps(cls, value: list[float]) -> list[float]:
        if value[0] <= 0:
            raise ValueError("steps start above 0 (weight 0 is where a rollout begins)")
        if any(later <= earlier for earlier, later in itertools.pairwise(value)):
            raise ValueError("steps must grow strictly, e.g. [1, 5, 25, 50, 100]")
        return value


# Settings a rollout group shares: the routes of one group move together.
CANARY_GROUP_FIELDS = ("weight", "stickiness", "segments", "plan")


class RouteCanaryConfig(_Model):
    """Stage `canary`: a sticky share of users (`weight` %) goes to the new backend."""

    weight: CanaryWeight = 0.0
    # Routes with one group move together; it defaults to the route's name.
    group: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    # The new side (default: new_backend); the legacy side is the route's `backend`.
    backend: str | None = None
    # null: identity (with `rails:`), sticky_cookie, client_ip.
    stickiness: Annotated[list[str], Field(min_length=1, max_length=20)] | None = None
    segments: Annotated[list[CanarySegmentConfig], Field(max_length=100)] = Field(
        default_factory=list
    )
    plan: CanaryRolloutConfig = Field(default_factory=CanaryRolloutConfig)
    # A GET, HEAD or OPTIONS without a body that the new side refuses (no connection, or a
    # 502/503 answer) is sent to legacy, whose answer the user gets; it still counts as a
    # failure of new. Never for other methods: they may have changed something already.
    retry_on_legacy: bool = False
    # Keep shadowing during the canary: requests of users on the legacy side are mirrored to
    # the new side and compared, as in stage shadow (same `shadow:` and `diff:` settings), and
    # each interval's parity becomes one of the analyzer's checks (`checks.min_parity`).
    shadow: bool = False

    @field_validator("stickiness")
    @classmethod
    def _check_stickiness(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        seen: set[StickinessSource] = set()
        for text in value:
            source = StickinessSource.parse(text)
            if source in seen:
                raise ValueError(f"{text!r} is listed twice")
            seen.add(source)
        return value

    @field_validator("segments")
    @classmethod
    def _check_segment_names(cls, value: list[CanarySegmentConfig]) -> list[CanarySegmentConfig]:
        names = [segment.name for segment in value]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"segment name {name!r} is used twice")
        return value

    def sources(self, *, has_identity: bool) -> tuple[StickinessSource, ...]:
        """The stickiness sources in order, the default when none are configured."""
        if self.stickiness is not None:
            return tuple(StickinessSource.parse(text) for text in self.stickiness)
        kinds = [StickinessKind.STICKY_COOKIE, StickinessKind.CLIENT_IP]
        if has_identity:
            kinds.insert(0, StickinessKind.IDENTITY)
        return tuple(StickinessSource(kind) for kind in kinds)


class FaultAbortConfig(_Model):
    """Answer `percent` % of the side's requests with `status` (problem+json), upstream
    untouched."""

    percent: Annotated[float, Field(ge=0, le=100)]
    status: Annotated[int, Field(ge=400, le=599)] = 503


class FaultDelayConfig(_Model):
    """Hold `percent` % of the side's requests `ms` milliseconds before they go upstream."""

    percent: Annotated[float, Field(ge=0, le=100)]
    ms: Annotated[int, Field(ge=1, le=60_000)]


class FaultsConfig(_Model):
    """Faults injected into a route's answers on one side, for drills (`strangler drill`)."""

    abort: FaultAbortConfig | None = None
    delay: FaultDelayConfig | None = None
    # Only requests carrying this header, from the canary override's networks or signed with
    # its secret (the value `{expiry}:{hex HMAC-SHA256(secret, "fault:{path}:{expiry}")}`).
    only_when_header: (
        Annotated[str, Field(pattern=r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}$")] | None
    ) = None
    side: Literal["new", "legacy", "both"] = "new"

    @field_validator("only_when_header")
    @classmethod
    def _check_fault_header(cls, value: str | None) -> str | None:
        if value is not None:
            check_header_name(value)
        return value

    @model_validator(mode="after")
    def _check_some_fault(self) -> FaultsConfig:
        if self.abort is None and self.delay is None:
            raise ValueError("names no fault: give `abort`, `delay` or both")
        return self


class RouteConfig(_Model):
    """One route: a Rails-style `match`, its stage, and optionally its own backend."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    match: Annotated[str, Field(min_length=1)]
    stage: Stage = Stage.LEGACY
    backend: str | None = None
    shadow: ShadowConfig = Field(default_factory=ShadowConfig)
    diff: dict[str, Any] | None = None
    canary: RouteCanaryConfig = Field(default_factory=RouteCanaryConfig)
    # With `rails:` set, requests to the new backend that carry the Rails session are checked
    # for a valid authenticity token when they change state. `false` for routes that are
    # authenticated by bearer tokens rather than the session (an API).
    csrf: bool = True
    # The Rails session cookie is removed from requests to the new backend unless this is set.
    pass_session_cookie: bool = False
    faults: FaultsConfig | None = None

    @field_validator("diff")
    @classmethod
    def _check_diff(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        DiffRules.from_config(value)
        return value

    @field_validator("match")
    @classmethod
    def _check_match(cls, value: str) -> str:
        try:
            parse_match(value)
        except PatternError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @property
    def canary_group(self) -> str:
        return self.canary.group or self.name

    @field_validator("stage", mode="before")
    @classmethod
    def _check_stage(cls, value: object) -> object:
        # Before the enum's own check, whose message would offer the reserved stages too.
        supported = [stage.value for stage in Stage if stage in SUPPORTED_STAGES]
        if isinstance(value, Stage | str) and value in supported:
            return value
        choices = ", ".join(supported)
        if isinstance(value, str) and value in {stage.value for stage in Stage}:
            raise ValueError(
                f"stage {value!r} is reserved for a later release; use one of: {choices}"
            )
        raise ValueError(f"expected one of: {choices} (got {_short(value)})")


class LimitsConfig(_Model):
    """Bounds on what one client may cost a worker."""

    max_header_bytes: Annotated[int, Field(ge=1024, le=1 << 20)] = 32 * 1024
    max_body_bytes: Annotated[int, Field(ge=0)] = 1 << 30
    header_timeout_s: PositiveSeconds = 10.0
    body_timeout_s: PositiveSeconds = 60.0
    idle_timeout_s: PositiveSeconds = 75.0
    max_connections: Annotated[int, Field(ge=1)] = 10_000
    # Connections one client address may hold at once (a peer in forwarding.trusted_proxies is
    # not capped: its connections carry many clients' requests). More are answered 503.
    max_connections_per_client: Annotated[int, Field(ge=1)] = 512
    # A request body at most this large is read whole before the request takes an upstream
    # connection, so a client trickling a small body holds no connection of the backend's pool.
    buffer_body_bytes: Annotated[int, Field(ge=0, le=16 << 20)] = 64 * 1024
    # The whole body must have arrived this many seconds after the head (body_timeout_s bounds
    # each pause between reads; this bounds a body trickled one byte at a time).
    body_deadline_s: PositiveSeconds = 300.0
    # Shadow copies in flight per worker; more are dropped and counted (queue_full).
    max_shadow_in_flight: Annotated[int, Field(ge=0, le=100_000)] = 256
    drain_timeout_s: PositiveSeconds = 30.0


class StoreConfig(_Model):
    """Where shadow results and traffic counts are kept: a SQLite file shared by every worker on
    this machine (`path`, the default), or a PostgreSQL database shared by every replica (`url`)."""

    # Relative paths are taken from the config file's folder.
    path: Annotated[str, Field(min_length=1)] = "strangler.db"
    # postgresql://user@host:5432/database; the password is better left to PGPASSWORD or
    # ~/.pgpass (libpq reads both) than written here. Kept out of repr either way.
    url: str | None = Field(default=None, repr=False)
    flush_interval_s: PositiveSeconds = 2.0
    # Traffic counts and latency histograms (the series, `progress`, the share on new) wait
    # longer by default: each flush holds a worker's GIL for a few ms of SQLAlchemy.
    traffic_flush_interval_s: PositiveSeconds = 15.0
    retention_days: Annotated[float, Field(gt=0, le=3650)] = 7.0
    max_paths_per_route: Annotated[int, Field(ge=1, le=100_000)] = 200

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_postgres_url(value)
        return value

    @model_validator(mode="after")
    def _one_location(self) -> StoreConfig:
        if self.url is not None and "path" in self.model_fields_set:
            raise _RefError(
                ("store", "url"),
                "give store.url (PostgreSQL) or store.path (SQLite), not both",
            )
        return self

    def sqlite_path(self, source: str | Path) -> Path:
        """The SQLite file: `path`, relative to the folder of the config file `source`."""
        path = Path(self.path)
        return path if path.is_absolute() else Path(source).parent / path


POSTGRES_SCHEMES = ("postgresql", "postgresql+psycopg")


def check_postgres_url(value: str) -> None:
    """Raise ValueError unless `value` is a postgresql:// URL naming a database.

    Messages show the URL with its password masked, and always say "got", so the config error
    does not append the raw value after them.
    """
    shown = hide_password(value)
    example = "postgresql://user@host:5432/database"
    parts = urlsplit(value)
    if parts.scheme not in POSTGRES_SCHEMES:
        raise ValueError(f"expected {example} (or postgresql+psycopg://), got {shown!r}")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port: {exc}; got {shown!r}") from None
    # No host is libpq's default: the local socket (or ?host=/socket/folder).
    database = parts.path.removeprefix("/")
    if not database or "/" in database:
        raise ValueError(
            f"expected one database name after the host, as in {example}, got {shown!r}"
        )
    if parts.fragment:
        raise ValueError(f"expected no #fragment, got {shown!r}")


def hide_password(url: str) -> str:
    """`url` with the password of its user:password@ part replaced by ***.

    Masks up to the last "@", wherever it is: a password with a raw "/" or "?" in it is still
    hidden (at worst, so is the host).
    """
    scheme, sep, rest = url.partition("://")
    end = rest.rfind("@")
    if not sep or end < 0:
        return url
    user, colon, _password = rest[:end].partition(":")
    if not colon:
        return url
    return f"{scheme}://{user}:***@{rest[end + 1 :]}"


class RailsSecretConfig(_Model):
    """A secret_key_base, read from an environment variable or a file: never from the YAML."""

    env: str | None = None
    file: str | None = None
    # The KeyGenerator digest of the app that used it: sha1 before Rails 7.0, sha256 from 7.0.
    key_digest: Literal["sha1", "sha256"] = "sha1"

    @model_validator(mode="after")
    def _one_source(self) -> RailsSecretConfig:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env or file")
        return self


class RailsConfig(_Model):
    """How the legacy Rails app keeps its cookie session (the bridge reads it, never writes)."""

    cookie: Annotated[str, Field(pattern=r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}$")]
    secret_key_base_env: str | None = None
    secret_key_base_file: str | None = None
    key_digest: Literal["sha1", "sha256"] = "sha1"
    # Older secrets still accepted, newest first (rotation: Rails' cookies_rotations).
    previous_secrets: list[RailsSecretConfig] = Field(default_factory=list)
    serializer: Literal["json", "marshal", "hybrid"] = "json"
    # Where the user id is in the session: a key, Devise's "warden.user.user.key", or a.b.c.
    user_id: Annotated[str, Field(min_length=1)] = "user_id"
    # Rails' per_form_csrf_tokens and forgery_protection_origin_check (both on since 5.0).
    per_form_csrf_tokens: bool = True
    origin_check: bool = True
    # Action Cable's allowed_request_origins: besides the app's own origin, the origins whose
    # pages may open a WebSocket (any Upgrade) that carries the session to the new backend.
    allowed_request_origins: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9+.-]*://\S+$")]] = (
        Field(default_factory=list)
    )

    @model_validator(mode="after")
    def _one_source(self) -> RailsConfig:
        if (self.secret_key_base_env is None) == (self.secret_key_base_file is None):
            raise ValueError("give exactly one of secret_key_base_env or secret_key_base_file")
        return self


class IdentityConfig(_Model):
    """The signed identity token the gateway gives the new backend (EdDSA JWT)."""

    # Used when the client sent no header of that name itself; otherwise fallback_header.
    header: Annotated[str, Field(pattern=r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}$")] = "Authorization"
    fallback_header: Annotated[str, Field(pattern=r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}$")] = (
        "X-Strangler-Identity"
    )
    ttl_s: Annotated[float, Field(ge=5, le=3600)] = 60.0
    issuer: Annotated[str, Field(min_length=1)] = "strangler"
    audience: str | None = None
    # The signing keys, shared by every worker on this machine; relative to the config's folder.
    keys_path: Annotated[str, Field(min_length=1)] = "strangler-identity-keys.json"


_SCRYPT_HASH = re.compile(
    r"^scrypt\$(?P<n>[0-9]{1,8})\$(?P<r>[0-9]{1,3})\$(?P<p>[0-9]{1,3})"
    r"\$(?P<salt>[A-Za-z0-9+/]+={0,2})\$(?P<hash>[A-Za-z0-9+/]+={0,2})$"
)


class AdminUserConfig(_Model):
    """A person who may log in to the admin API with a password (see `token hash-password`)."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9._@-]{1,64}$")]
    scope: Literal["read", "write"] = "read"
    # scrypt$<n>$<r>$<p>$<salt base64>$<hash base64>; never the password itself.
    password_hash: str = Field(repr=False)

    @field_validator("password_hash")
    @classmethod
    def _check_password_hash(cls, value: str) -> str:
        match = _SCRYPT_HASH.match(value)
        if match is None:
            raise ValueError(
                "expected scrypt$<n>$<r>$<p>$<salt>$<hash>, as `strangler token hash-password` "
                "prints it"
            )
        n, r, p = int(match["n"]), int(match["r"]), int(match["p"])
        # Bounded so a config can't make each login cost seconds or gigabytes: scrypt takes
        # 128*n*r bytes (16 MiB for the default n=2**14, r=8), capped here at 256 MiB.
        if n < 2 or n & (n - 1) or n > 2**20:
            raise ValueError(f"scrypt n must be a power of 2 up to 2**20, got {n}")
        if not 1 <= r <= 32 or not 1 <= p <= 16 or 128 * n * r > 256 * 2**20:
            raise ValueError(f"scrypt r={r}, p={p} out of range (memory capped at 256 MiB)")
        try:
            salt = base64.b64decode(match["salt"], validate=True)
            digest = base64.b64decode(match["hash"], validate=True)
        except binascii.Error as exc:
            raise ValueError(f"bad base64 in the password hash: {exc}") from None
        if len(salt) < 16 or len(digest) < 32:
            raise ValueError("expected a salt of at least 16 bytes and a hash of at least 32")
        return value

    def scrypt_parameters(self) -> tuple[int, int, int, bytes, bytes]:
        """(n, r, p, salt, hash) of `password_hash`, which the validator has checked."""
        match = _SCRYPT_HASH.match(self.password_hash)
        if match is None:
            raise ValueError("unparsable password hash")  # unreachable after validation
        return (
            int(match["n"]),
            int(match["r"]),
            int(match["p"]),
            base64.b64decode(match["salt"]),
            base64.b64decode(match["hash"]),
        )


class AdminConfig(_Model):
    """The admin listener: health, the identity JWKS, and the authenticated admin API."""

    # host:port like the top-level `listen`; null turns the admin listener off.
    listen: str | None = "127.0.0.1:9900"
    # People who may log in with a password; tokens (`strangler token create`) need no config.
    users: list[AdminUserConfig] = Field(default_factory=list)
    # How long a browser session lasts after login (8 h); there is no sliding renewal.
    session_ttl_s: Annotated[int, Field(ge=60, le=7 * 86_400)] = 8 * 3600
    # Failed logins a minute one (user, client address) may make once its backoff is at its cap:
    # after the n-th failure in a row the next attempt waits min(2**(n-1), 60 / this) s
    # (1, 2, 4, 6, 6 ... s at 10). A user failing from 4+ clients waits 60 / this s after each
    # failure from anywhere. Successful logins are free. See admin/login_throttle.py.
    login_attempts_per_minute: Annotated[int, Field(ge=1, le=10_000)] = 10
    # `/metrics` without a token. Unset: public while the admin listener is on loopback only
    # (`is_metrics_public`), so a listener opened to the network never shows it by default.
    metrics_public: bool | None = None

    @field_validator("listen", mode="before")
    @classmethod
    def _check_listen(cls, value: object) -> object:
        if value is not None:
            check_listen(value)
        return value

    @property
    def is_metrics_public(self) -> bool:
        if self.metrics_public is not None:
            return self.metrics_public
        if self.listen is None:
            return False
        host = split_listen(self.listen)[0]
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    @field_validator("users")
    @classmethod
    def _check_unique_users(cls, value: list[AdminUserConfig]) -> list[AdminUserConfig]:
        names = [user.name for user in value]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"user names must be unique; given more than once: {twice}")
        return value


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ForwardingConfig(_Model):
    """How X-Forwarded-* and Via are written."""

    # Incoming X-Forwarded-* are believed only from these networks (e.g. your load balancer).
    trusted_proxies: list[str] = Field(default_factory=list)
    via: Annotated[str, Field(pattern=r"^[!-~]{1,64}$")] = "strangler"

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted(cls, value: list[str]) -> list[str]:
        return _check_networks(value)

    def networks(self) -> tuple[IPNetwork, ...]:
        return tuple(ipaddress.ip_network(item, strict=False) for item in self.trusted_proxies)


class CanaryOverrideConfig(_Model):
    """Who may pick a canary route's side with `X-Strangler-Backend: new|legacy`."""

    # Clients (after X-Forwarded-For from trusted proxies) whose header is honoured unsigned.
    networks: list[str] = Field(default_factory=list)
    # The environment variable holding the HMAC-SHA256 secret of signed overrides; never the YAML.
    secret_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")] | None = None
    # A signature whose expiry is further ahead than this is refused.
    max_ttl_s: Annotated[float, Field(gt=0, le=30 * 86_400)] = 86_400.0

    @field_validator("networks")
    @classmethod
    def _check_override_networks(cls, value: list[str]) -> list[str]:
        return _check_networks(value)


class CanaryStickyCookieConfig(_Model):
    """The cookie the gateway issues for the `sticky_cookie` stickiness source."""

    name: Annotated[str, Field(pattern=r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}$")] = (
        "strangler_sticky"
    )
    # RFC 6265bis caps Max-Age at 400 days.
    max_age_s: Annotated[int, Field(ge=60, le=400 * 86_400)] = 365 * 86_400


class CanaryConfig(_Model):
    """Settings every canary route shares: the override header and the sticky cookie."""

    override: CanaryOverrideConfig = Field(default_factory=CanaryOverrideConfig)
    sticky_cookie: CanaryStickyCookieConfig = Field(default_factory=CanaryStickyCookieConfig)


class MetricsConfig(_Model):
    """Prometheus metrics (served at the admin listener's `/metrics`)."""

    enabled: bool = True


_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TracingConfig(_Model):
    """OpenTelemetry traces, exported as OTLP/HTTP protobuf."""

    # Spans are POSTed to <endpoint>/v1/traces; null: tracing off.
    otlp_endpoint: Annotated[str, Field(pattern=r"^https?://\S+$")] | None = None
    # Head sampling of requests that come without a sampled traceparent (parent-based: a
    # sampled incoming traceparent is always followed, an unsampled one never).
    sample_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01
    service_name: Annotated[str, Field(min_length=1, max_length=200)] = "strangler"
    # Extra export headers (an API key); values may name environment variables as ${NAME}.
    headers: dict[str, str] = Field(default_factory=dict, repr=False)

    def resolved_headers(self) -> dict[str, str]:
        """The headers with ${NAME} replaced by the environment's value (empty when unset)."""
        return {
            name: _ENV_REFERENCE.sub(lambda m: os.environ.get(m[1], ""), value)
            for name, value in self.headers.items()
        }


class AccessLogConfig(_Model):
    """One line per answered request."""

    # `stdout` or a file path; null: no access log.
    path: Annotated[str, Field(min_length=1)] | None = None
    format: Literal["json", "combined"] = "json"
    # Every answer with status >= min_status, or slower than min_duration_ms, is logged; the
    # rest are logged with probability `sample` (0 for either filter: it is off).
    min_status: Annotated[int, Field(ge=0, le=599)] = 0
    min_duration_ms: Annotated[float, Field(ge=0)] = 0.0
    sample: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_duration(value: object) -> float:
    """`"5m"`, `"1h"`, `"3d"`, `"10s"` (or a number of seconds) -> seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value).strip())
        if match is None:
            raise ValueError(f"expected a duration like 10s, 5m, 1h or 3d, got {value!r}")
        seconds = float(match[1]) * _DURATION_UNITS[match[2]]
    if seconds <= 0:
        raise ValueError(f"expected a duration above 0, got {value!r}")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class SloAlertConfig(_Model):
    """One multiwindow burn-rate alert (Google SRE workbook, "Alerting on SLOs", §6): it fires
    while the error budget burns `burn` times faster than the objective allows, over both the
    long window and the short one (the short one makes it resolve soon after the burn stops)."""

    severity: Literal["page", "ticket"]
    burn: Annotated[float, Field(gt=0)]
    long: Duration
    short: Duration

    @model_validator(mode="after")
    def _short_is_shorter(self) -> SloAlertConfig:
        if self.short >= self.long:
            raise ValueError("`short` must be shorter than `long`")
        return self


# The SRE workbook's recommended four for a 30-day-ish window (table 5-8 of its chapter 5).
DEFAULT_SLO_ALERTS = (
    SloAlertConfig(severity="page", burn=14.4, long=3600, short=300),
    SloAlertConfig(severity="page", burn=6, long=6 * 3600, short=1800),
    SloAlertConfig(severity="ticket", burn=3, long=86_400, short=2 * 3600),
    SloAlertConfig(severity="ticket", burn=1, long=3 * 86_400, short=6 * 3600),
)


def selector_selects(selector: str, route: RouteConfig) -> bool:
    """One entry of an SLO's `routes`: a route name, `group:NAME` or a glob."""
    if selector.startswith("group:"):
        return route.canary_group == selector.removeprefix("group:")
    return fnmatch.fnmatchcase(route.name, selector)


class SloConfig(_Model):
    """A service level objective over some routes: the share of good answers over a window."""

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")]
    # Route names, "group:NAME" (a canary group) or a glob ("projects.*").
    routes: Annotated[list[str], Field(min_length=1)]
    objective: Annotated[float, Field(gt=0, lt=100)]
    window_days: Annotated[float, Field(gt=0, le=366)] = 28
    # An answer slower than this is bad too (counted exactly, not at a histogram bucket).
    latency_ms: Annotated[float, Field(gt=0)] | None = None
    side: Literal["all", "new", "legacy"] = "all"
    alerts: list[SloAlertConfig] = Field(default_factory=lambda: list(DEFAULT_SLO_ALERTS))
    # Fewer requests than this in an alert's long window: the alert stays quiet (low traffic).
    min_requests: Annotated[int, Field(ge=0)] = 100
    on_page: Literal["none", "pause", "rollback"] = "none"
    # % of the error budget that must remain to promote a route of this SLO (null: no gate).
    budget_gate: Annotated[float, Field(ge=0, le=100)] | None = None

    @property
    def window_s(self) -> float:
        return self.window_days * 86_400

    def selects(self, route: RouteConfig) -> bool:
        """Whether `route` is one of this SLO's routes."""
        return any(selector_selects(selector, route) for selector in self.routes)


WebhookEvent = Literal[
    "stage_changed", "rollout_verdict", "alert_firing", "alert_resolved", "budget_exhausted"
]


def _default_webhook_events() -> list[WebhookEvent]:
    return ["stage_changed", "rollout_verdict"]


class WebhookConfig(_Model):
    """Where the gateway reports what happened (Flagger-style event webhooks)."""

    url: str
    events: Annotated[list[WebhookEvent], Field(min_length=1)] = Field(
        default_factory=_default_webhook_events
    )
    # The environment variable holding the HMAC-SHA256 signing secret (never the secret itself).
    secret_env: str | None = None
    kind: Literal["json", "slack"] = "json"
    timeout_s: PositiveSeconds = 5.0

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL")
        return value


DATA_URL_SCHEMES = ("mysql", "mysql+pymysql", "postgresql", "postgresql+psycopg", "sqlite")
# A SQL identifier as the data section accepts it: letters, digits, `_` and `$`, optionally one
# `schema.` in front. Anything else would have to be quoted, and a quoted typo hides too well.
_SQL_NAME = r"^(?:[A-Za-z_][A-Za-z0-9_$]{0,63}\.)?[A-Za-z_][A-Za-z0-9_$]{0,63}$"
SqlName = Annotated[str, Field(pattern=_SQL_NAME)]
ColumnName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_$]{0,63}$")]
# `columns:` maps a legacy column to this: a new column's name, or "-" to leave it out.
LEAVE_OUT = "-"


def check_data_url(value: str) -> None:
    """Raise ValueError unless `value` is a mysql://, postgresql:// or sqlite:/// URL naming a
    database. Messages show the URL with its password masked and always say "got"."""
    shown = hide_password(value)
    parts = urlsplit(value)
    if parts.scheme not in DATA_URL_SCHEMES:
        raise ValueError(
            "expected mysql://user@host:3306/database, postgresql://user@host:5432/database "
            f"or sqlite:///path/to/file.db, got {shown!r}"
        )
    if parts.scheme == "sqlite":
        if parts.netloc or not parts.path.removeprefix("/"):
            raise ValueError(
                f"expected sqlite:///relative.db or sqlite:////absolute.db, got {shown!r}"
            )
        return
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port: {exc}; got {shown!r}") from None
    database = parts.path.removeprefix("/")
    if not database or "/" in database:
        raise ValueError(f"expected one database name after the host, got {shown!r}")


class DataSideConfig(_Model):
    """One of the two databases: where it is. Passwords are better left to the environment,
    ~/.pgpass or ~/.my.cnf than written here; kept out of repr and messages either way."""

    url: str = Field(repr=False)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        check_data_url(value)
        return value


class DataTransformConfig(_Model):
    """How a legacy column's values read on the new side: exactly one of the keys."""

    # Rails integer enums: the legacy value (as text) -> the new one.
    map: Annotated[dict[StrictInt | StrictStr, StrictStr], Field(min_length=1)] | None = None
    # Both sides rounded half away from zero to this many decimal places.
    decimal: Annotated[int, Field(ge=0, le=30)] | None = None
    # An integer column that holds a boolean (non-zero is true) without saying so in its type.
    bool: Literal[True] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> DataTransformConfig:
        given = [name for name in ("map", "decimal", "bool") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of map, decimal or bool (got {given or 'none'})")
        return self


class DataTableConfig(_Model):
    """One legacy table, the new table that should hold the same rows, and how they read."""

    name: SqlName
    new: SqlName | None = None
    key: Annotated[list[ColumnName], Field(min_length=1, max_length=8)]
    columns: dict[ColumnName, str] = Field(default_factory=dict)
    transform: dict[ColumnName, DataTransformConfig] = Field(default_factory=dict)
    where: Annotated[str, Field(min_length=1)] | None = None
    new_where: Annotated[str, Field(min_length=1)] | None = None
    ignore: list[ColumnName] = Field(default_factory=list)
    routes: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)

    @field_validator("key", mode="before")
    @classmethod
    def _one_key_is_a_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("columns")
    @classmethod
    def _check_columns(cls, value: dict[str, str]) -> dict[str, str]:
        for legacy, new in value.items():
            if new != LEAVE_OUT and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]{0,63}", new) is None:
                raise ValueError(
                    f"{legacy}: {new!r} is not a column name (or {LEAVE_OUT!r} to leave it out)"
                )
        return value

    @model_validator(mode="after")
    def _check_column_uses(self) -> DataTableConfig:
        left_out = {column for column, new in self.columns.items() if new == LEAVE_OUT}
        for column in self.key:
            if column in left_out or column in self.ignore:
                raise ValueError(f"key column {column!r} cannot be left out or ignored")
        for column in self.transform:
            if column in left_out or column in self.ignore:
                raise ValueError(f"transform of {column!r}, which is left out or ignored")
        return self

    @property
    def new_name(self) -> str:
        return self.new or self.name

    def new_column(self, legacy: str) -> str | None:
        """The new side's name of a legacy column; None when it is left out or ignored."""
        if legacy in self.ignore:
            return None
        mapped = self.columns.get(legacy, legacy)
        return None if mapped == LEAVE_OUT else mapped

    def selects(self, route: RouteConfig) -> bool:
        """Whether `route` reads or writes this table (the data gate holds it back)."""
        return any(selector_selects(selector, route) for selector in self.routes)


class DataWatchConfig(_Model):
    """`strangler data watch`: how long a changed key may differ on new before it is drift."""

    # A changed key is first checked this long after its change committed on legacy (the sync
    # job's usual lag), then again until `max_lag_s`; still different then, it is drift.
    lag_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    max_lag_s: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    # Keys waiting for their check; when full, the stream is not read (backpressure).
    max_pending: Annotated[int, Field(ge=10, le=10_000_000)] = 100_000
    # How often the change stream is polled for new changes when it was idle.
    poll_s: Annotated[float, Field(gt=0, le=60)] = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> DataWatchConfig:
        if self.max_lag_s < self.lag_s:
            raise ValueError(
                f"max_lag_s ({self.max_lag_s:g}) must be at least lag_s ({self.lag_s:g})"
            )
        return self


class DataConfig(_Model):
    """Data parity: the legacy and new databases, and the tables that must hold the same rows."""

    legacy: DataSideConfig
    new: DataSideConfig
    # Rows updated this recently (by `updated_at`) are not judged yet: replication lag.
    min_age_s: Annotated[float, Field(ge=0, le=7 * 86_400)] = 60.0
    # A route whose table's last complete diff is older than this cannot be promoted to `new`.
    max_age_h: Annotated[float, Field(gt=0, le=24 * 366)] = 24.0
    # The zone of legacy's zone-less timestamps (MySQL DATETIME): Rails writes UTC by default.
    legacy_timezone: Annotated[
        str, Field(pattern=r"^(UTC|[+-]\d\d:\d\d|[A-Za-z_]+(/[A-Za-z_+-]+)*)$")
    ] = "UTC"
    tables: Annotated[list[DataTableConfig], Field(min_length=1)]
    watch: DataWatchConfig = Field(default_factory=DataWatchConfig)

    @field_validator("tables")
    @classmethod
    def _check_unique_tables(cls, value: list[DataTableConfig]) -> list[DataTableConfig]:
        names = [table.name for table in value]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"table names must be unique; given more than once: {twice}")
        return value

    def tables_of(self, route: RouteConfig) -> list[DataTableConfig]:
        """The tables `route` reads or writes."""
        return [table for table in self.tables if table.selects(route)]


def _data_problems(config: Config) -> list[_RefError]:
    """Each selector of a data table's `routes` selects a route of the file."""
    if config.data is None:
        return []
    problems: list[_RefError] = []
    for index, table in enumerate(config.data.tables):
        for number, selector in enumerate(table.routes):
            if not any(selector_selects(selector, route) for route in config.routes):
                problems.append(
                    _RefError(
                        ("data", "tables", index, "routes", number),
                        f"{selector!r} selects no route (a route name, `group:NAME` of a "
                        "canary group, or a glob such as `projects.*`)",
                    )
                )
    return problems


class Config(_Model):
    """The whole file."""

    # Null: no plain HTTP listener (then `tls:` is required).
    listen: str | None = "127.0.0.1:8000"
    tls: TlsConfig | None = None
    backends: dict[str, BackendConfig]
    # A request path some backend could read as another path (`//`, `/./`, `%2F`, `%73`, `;`):
    # `strict` answers 400, `normalize` rewrites it and forwards the rewritten path.
    path_policy: PathPolicy = PathPolicy.STRICT
    default: str = "legacy"
    # Which backend a route in stage `legacy` / `new` is sent to.
    legacy_backend: str = "legacy"
    # Null (or no backend named `new` when the key is left out): a façade in front of legacy
    # only, the first step of every migration; a route can't be moved past legacy until it is set.
    new_backend: str | None = "new"
    routes: list[RouteConfig] = Field(default_factory=list)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    forwarding: ForwardingConfig = Field(default_factory=ForwardingConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    rails: RailsConfig | None = None
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    canary: CanaryConfig = Field(default_factory=CanaryConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    access_log: AccessLogConfig = Field(default_factory=AccessLogConfig)
    slos: list[SloConfig] = Field(default_factory=list)
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    data: DataConfig | None = None

    @field_validator("listen", mode="before")
    @classmethod
    def _check_listen(cls, value: object) -> object:
        if value is not None:
            check_listen(value)
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_new_backend(cls, data: Any) -> Any:
        # Day one of a migration has no new backend yet: the default name only binds when a
        # backend of that name exists. A `new_backend:` the user wrote must name one.
        if isinstance(data, dict) and "new_backend" not in data:
            backends = data.get("backends")
            if isinstance(backends, dict) and "new" not in backends:
                return {**data, "new_backend": None}
        return data

    @model_validator(mode="after")
    def _check_references(self) -> Config:
        names = set(self.backends)
        if not names:
            raise ValueError("backends: at least one backend is required")
        problems: list[_RefError] = []
        for key in ("default", "legacy_backend", "new_backend"):
            target = getattr(self, key)
            if target is not None and target not in names:
                problems.append(
                    _RefError(
                        (key,),
                        f"names backend {target!r}, which is not in backends "
                        f"({', '.join(sorted(names))})",
                    )
                )
        seen: dict[str, int] = {}
        for index, route in enumerate(self.routes):
            for loc, target in (
                (("routes", index, "backend"), route.backend),
                (("routes", index, "shadow", "backend"), route.shadow.backend),
                (("routes", index, "canary", "backend"), route.canary.backend),
            ):
                if target is not None and target not in names:
                    problems.append(
                        _RefError(
                            loc,
                            f"names backend {target!r}, which is not in backends "
                            f"({', '.join(sorted(names))})",
                        )
                    )
            if route.stage is Stage.RETIRED and route.backend == self.legacy_backend:
                problems.append(
                    _RefError(
                        ("routes", index, "backend"),
                        f"names the legacy backend {route.backend!r}, and stage retired means "
                        "legacy no longer answers this route: drop `backend:` or use another stage",
                    )
                )
            faults = route.faults
            if (
                faults is not None
                and faults.only_when_header is not None
                and not self.canary.override.networks
                and self.canary.override.secret_env is None
            ):
                problems.append(
                    _RefError(
                        ("routes", index, "faults", "only_when_header"),
                        "would never be honoured: nobody is trusted to ask for a fault; set "
                        "canary.override.networks or canary.override.secret_env",
                    )
                )
            if self.new_backend is None and self.needs_new_backend(route):
                problems.append(
                    _RefError(
                        ("routes", index, "stage"),
                        f"stage {route.stage.value} sends requests of route {route.name!r} to "
                        "the new backend, and there is none: add a backend named `new` to "
                        "backends (or set `new_backend:` to the one that is)",
                    )
                )
            if not route.csrf and route.pass_session_cookie:
                problems.append(
                    _RefError(
                        ("routes", index, "pass_session_cookie"),
                        "cannot be true on a route with `csrf: false`: a cross-site form could "
                        "reach the new backend with the user's session cookie and no forgery check",
                    )
                )
            if route.name in seen:
                problems.append(
                    _RefError(
                        ("routes", index, "name"),
                        f"route name {route.name!r} is already used by routes[{seen[route.name]}]",
                    )
                )
            seen.setdefault(route.name, index)
        problems.extend(self._check_canaries())
        problems.extend(self._check_reachable())
        problems.extend(self._check_slos())
        problems.extend(_data_problems(self))
        problems.extend(self._check_listeners())
        if problems:
            raise _RefErrors(problems)
        return self

    def _check_listeners(self) -> list[_RefError]:
        problems: list[_RefError] = []
        if self.listen is None and self.tls is None:
            problems.append(
                _RefError(
                    ("listen",), "is null and there is no `tls:` listener: nothing would serve"
                )
            )
        if self.tls is not None and self.tls.redirect_plain and self.listen is None:
            problems.append(
                _RefError(
                    ("tls", "redirect_plain"),
                    "is true but `listen` is null: there is no plain listener to redirect",
                )
            )
        taken: list[tuple[str, str]] = []
        if self.listen is not None:
            taken.append(("listen", self.listen))
        if self.tls is not None:
            taken.append(("tls.listen", self.tls.listen))
        if self.admin.listen is not None:
            taken.append(("admin.listen", self.admin.listen))
        for index, (key, address) in enumerate(taken):
            host, port = split_listen(address)
            for other_key, other in taken[:index]:
                if port and (host, port) == split_listen(other):
                    problems.append(
                        _RefError(
                            tuple(key.split(".")),
                            f"is the same address as `{other_key}` ({other}); "
                            "each listener needs a port of its own",
                        )
                    )
        return problems

    @staticmethod
    def needs_new_backend(route: RouteConfig, stage: Stage | None = None) -> bool:
        """Whether the route, in `stage` (default: its own), sends a request (or a copy) to
        `new_backend` rather than to a backend it names itself."""
        stage = route.stage if stage is None else stage
        if stage in (Stage.NEW, Stage.RETIRED):
            return route.backend is None
        if stage is Stage.SHADOW:
            return route.shadow.backend is None
        if stage is Stage.CANARY:
            return route.canary.backend is None
        return False

    def _check_slos(self) -> list[_RefError]:
        """Each SLO has a name of its own, and each of its selectors selects a route."""
        problems: list[_RefError] = []
        seen: set[str] = set()
        for index, slo in enumerate(self.slos):
            if slo.name in seen:
                problems.append(
                    _RefError(("slos", index, "name"), f"SLO name {slo.name!r} is already used")
                )
            seen.add(slo.name)
            for number, selector in enumerate(slo.routes):
                if not any(selector_selects(selector, route) for route in self.routes):
                    problems.append(
                        _RefError(
                            ("slos", index, "routes", number),
                            f"{selector!r} selects no route (a route name, `group:NAME` of a "
                            "canary group, or a glob such as `projects.*`)",
                        )
                    )
        return problems

    def _check_reachable(self) -> list[_RefError]:
        """A route an earlier one takes every request of can never match: it is a mistake in
        the order (Rails' own router is first-match too), never something to accept quietly."""
        patterns = [parse_match(route.match) for route in self.routes]
        problems: list[_RefError] = []
        for later, earlier in unreachable(patterns):
            first = self.routes[earlier]
            problems.append(
                _RefError(
                    ("routes", later, "match"),
                    f"can never match: routes[{earlier}] ({first.name}, {first.match!r}) comes "
                    f"first and takes every request of route {self.routes[later].name!r}; "
                    "move this route above it, or narrow that one",
                )
            )
        return problems

    def _check_canaries(self) -> list[_RefError]:
        """Canary routes: `identity` needs `rails:`, and a group has one value per setting."""
        problems: list[_RefError] = []
        owners: dict[tuple[str, str], int] = {}
        for index, route in enumerate(self.routes):
            if route.stage is not Stage.CANARY:
                continue
            canary = route.canary
            if self.rails is None:
                if "identity" in (canary.stickiness or ()):
                    problems.append(
                        _RefError(
                            ("routes", index, "canary", "stickiness"),
                            "identity needs `rails:` (the user id comes from the Rails session)",
                        )
                    )
                for number, segment in enumerate(canary.segments):
                    if segment.user_ids is not None:
                        problems.append(
                            _RefError(
                                ("routes", index, "canary", "segments", number, "user_ids"),
                                "user_ids need `rails:` (the user id comes from the Rails session)",
                            )
                        )
            group = route.canary_group
            for name in CANARY_GROUP_FIELDS:
                if name not in canary.model_fields_set:
                    continue
                first = owners.setdefault((group, name), index)
                theirs = getattr(self.routes[first].canary, name)
                if theirs != getattr(canary, name):
                    shown = f" {theirs:g}" if name == "weight" else ""
                    problems.append(
                        _RefError(
                            ("routes", index, "canary", name),
                            f"rollout group {group!r} already has {name}{shown} from "
                            f"routes[{first}] ({self.routes[first].name}); the routes of a group "
                            "move together, so set it on one route, or the same on each",
                        )
                    )
        return problems

    def canary_groups(self) -> dict[str, RouteCanaryConfig]:
        """Each rollout group's settings, from its canary routes: a group-wide setting takes the
        value of the first route that sets it (they agree, see _check_canaries), else the
        default."""
        given: dict[str, dict[str, Any]] = {}
        for route in self.routes:
            if route.stage is not Stage.CANARY:
                continue
            settings = given.setdefault(route.canary_group, {})
            for name in CANARY_GROUP_FIELDS:
                if name in route.canary.model_fields_set:
                    settings.setdefault(name, getattr(route.canary, name))
        return {
            group: RouteCanaryConfig().model_copy(update=settings)
            for group, settings in given.items()
        }

    @property
    def new_side_backend(self) -> str:
        """The backend whose answers count as "answered by new": "" when there is none, or when
        it is the legacy backend itself (then nothing it answers is new)."""
        if self.new_backend is None or self.new_backend == self.legacy_backend:
            return ""
        return self.new_backend

    def canary_backend_for(self, route: RouteConfig) -> str | None:
        if route.stage is not Stage.CANARY:
            return None
        return route.canary.backend or self.new_backend

    def shadow_backend_for(self, route: RouteConfig) -> str | None:
        if route.stage is Stage.CANARY and route.canary.shadow:
            return route.shadow.backend or self.canary_backend_for(route)
        if route.stage is not Stage.SHADOW:
            return None
        return route.shadow.backend or self.new_backend

    def is_shadowed(self, route: RouteConfig) -> bool:
        """Stage shadow, or a canary that keeps shadowing its legacy side."""
        return route.stage is Stage.SHADOW or (route.stage is Stage.CANARY and route.canary.shadow)

    def backend_for(self, route: RouteConfig) -> str:
        if route.backend is not None:
            return route.backend
        if route.stage in (Stage.NEW, Stage.RETIRED) and self.new_backend is not None:
            return self.new_backend
        # Stage new with no new backend never validates; the control plane refuses to promote
        # into it, so this is legacy's route.
        return self.legacy_backend


class _RefError(ValueError):
    """A cross-reference error that knows which field it belongs to."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class _FieldError(ValueError):
    """An error of a model's own field, `loc` relative to the model (which may sit anywhere)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class _RefErrors(ValueError):
    """Every cross-reference error of the file, so they are all reported at once."""

    def __init__(self, errors: list[_RefError]) -> None:
        super().__init__(str(errors[0]))
        self.errors = errors


def check_listen(value: object) -> None:
    """A `listen:` value as written in YAML; a bare port gets the address to write instead."""
    port = value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(value, str) and value.lstrip(":").isdigit():
        port = int(value.lstrip(":"))
    if port is not None:
        raise ValueError(
            f"expected host:port, not a port alone: `127.0.0.1:{port}` (this machine only) "
            f"or `0.0.0.0:{port}` (every interface)"
        )
    if not isinstance(value, str):
        raise ValueError(f"expected host:port as a string, e.g. 127.0.0.1:8000 (got {value!r})")
    split_listen(value)


def split_listen(value: str) -> tuple[str, int]:
    """`"127.0.0.1:8000"` / `"[::1]:8000"` -> (host, port); raises ValueError if malformed."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected host:port, e.g. 127.0.0.1:8000, got {value!r}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port {port} is out of range")
    return host.strip("[]"), port


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raises ConfigError(path, line, field) when unusable."""
    path_text = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path_text, None, "", f"cannot read the file: {exc.strerror}") from exc
    return parse_config(text, path_text)


def parse_config(text: str, path: str) -> Config:
    """Validate config text; `path` is only used to name the file in errors.

    Every problem pydantic finds is reported at once, sorted by line; cross-references
    (backend names, canary groups) are checked once the fields themselves are valid.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(path, line, "", f"not valid YAML: {problem}") from exc
    if not isinstance(data, dict):
        raise ConfigError(path, 1, "", "expected a mapping with `backends:` and `routes:`")
    problems = _duplicate_keys(root)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            problems.extend(_problems_of(error, root))
        raise ConfigError.of(path, problems) from exc
    if problems:
        raise ConfigError.of(path, problems)
    return config


def _problems_of(error: Any, root: yaml.Node | None) -> list[ConfigProblem]:
    """One pydantic error as the problems it stands for (a cross-reference error holds many)."""
    loc = tuple(error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    context = error.get("ctx", {}).get("error")
    if isinstance(context, _RefErrors):
        return [
            ConfigProblem(line_of(root, ref.loc), format_loc(ref.loc), str(ref))
            for ref in context.errors
        ]
    if isinstance(context, _RefError):
        loc, message = context.loc, str(context)
    elif isinstance(context, _FieldError):
        loc, message = (*loc, *context.loc), str(context)
    elif error["type"] == "extra_forbidden":
        message = _unknown_key_message(loc)
    elif error["type"] == "missing":
        message = "this field is required"
    elif (
        "input" in error
        and error["type"] != "model_type"
        and "got " not in message
        and str(error["input"]) not in message
    ):
        message = f"{message} (got {_short(error['input'])})"
    return [ConfigProblem(line_of(root, loc), format_loc(loc), message)]


def _duplicate_keys(node: yaml.Node | None) -> list[ConfigProblem]:
    """Keys given twice in one mapping, anywhere: YAML loaders keep the last silently, so the
    first one the user reads is not the one that counts."""
    problems: list[ConfigProblem] = []
    stack: list[tuple[yaml.Node, str]] = [] if node is None else [(node, "")]
    while stack:
        current, where = stack.pop()
        if isinstance(current, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in current.value:
                name = str(key.value)
                line = key.start_mark.line + 1
                if name in first:
                    problems.append(
                        ConfigProblem(
                            line,
                            f"{where}.{name}" if where else name,
                            f"duplicate key: already given on line {first[name]}, and YAML "
                            "would silently keep only this one",
                        )
                    )
                first.setdefault(name, line)
                stack.append((value, f"{where}.{name}" if where else name))
        elif isinstance(current, yaml.SequenceNode):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(current.value))
    return problems


def _unknown_key_message(loc: Sequence[str | int]) -> str:
    """An unknown key, with the closest known key of the same mapping when one is close."""
    known = _known_keys(loc[:-1])
    key = str(loc[-1]) if loc else ""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean `{close[0]}`?"
    if known:
        return f"unknown key; the keys here are: {', '.join(known)}"
    return "unknown key (check the spelling against the config reference)"


def _known_keys(loc: Sequence[str | int]) -> list[str]:
    """The field names of the model found at `loc` in the Config schema ([] if none is)."""
    target: Any = Config
    for part in loc:
        target = _model_or_container(target)
        if isinstance(target, type) and issubclass(target, BaseModel):
            field = target.model_fields.get(str(part))
            if field is None:
                return []
            target = field.annotation
        elif typing.get_origin(target) in (list, tuple, dict):
            # A list item or a dict value: the last type argument is the element's.
            target = typing.get_args(target)[-1]
        else:
            return []
    target = _model_or_container(target)
    if isinstance(target, type) and issubclass(target, BaseModel):
        return list(target.model_fields)
    return []


def _model_or_container(annotation: Any) -> Any:
    """`X | None`, `Annotated[X, ...]` -> X (the first member that is a model or container)."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            annotation = next(
                (
                    arg
                    for arg in members
                    if typing.get_origin(arg) in (list, tuple, dict)
                    or (isinstance(arg, type) and issubclass(arg, BaseModel))
                ),
                members[0],
            )
        else:
            return annotation


def config_error(path: str, loc: Sequence[str | int], message: str) -> ConfigError:
    """A ConfigError, with its line, for a value that validated but can't be used (an
    environment variable it names is unset, a file it names is missing)."""
    try:
        root = yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        root = None
    return ConfigError(path, line_of(root, loc), format_loc(loc), message)


def format_loc(loc: Sequence[str | int]) -> str:
    """('routes', 3, 'stage') -> 'routes[3].stage'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def line_of(root: yaml.Node | None, loc: Sequence[str | int]) -> int | None:
    """The 1-based line of the deepest node of `loc` that exists in the YAML tree."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        found = _child(node, part)
        if found is None:
            break
        node, line = found
    return line


def _child(node: yaml.Node | None, part: str | int) -> tuple[yaml.Node, int] | None:
    if isinstance(node, yaml.MappingNode) and isinstance(part, str):
        for key, value in node.value:
            if key.value == part:
                # The key's line: a nested block value starts on the line after it.
                return value, key.start_mark.line + 1
        return None
    if (
        isinstance(node, yaml.SequenceNode)
        and isinstance(part, int)
        and 0 <= part < len(node.value)
    ):
        item = node.value[part]
        return item, item.start_mark.line + 1
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
