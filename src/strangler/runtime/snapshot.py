"""The control state as one frozen value, swapped atomically when the config changes.

Rules: a Snapshot never changes after it is built. The data plane holds a reference per request,
so in-flight requests finish on the snapshot they started with while new ones use the new one.
Values only: building one (which reads the config's secrets) is runtime/snapshot_build.py.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from strangler.config import (
    Config,
    HealthCheckConfig,
    IdentityConfig,
    LimitsConfig,
    OutlierConfig,
    RailsConfig,
    ShadowConfig,
)
from strangler.diff import DiffRules
from strangler.identity.rails_session import (
    RailsSessionDecoder,
)
from strangler.observe.slo.counter import SloTarget
from strangler.proxy.headers import RESPONSE_SPECIAL
from strangler.routing import RouteTable
from strangler.shadow.picker import HeaderPicker
from strangler.shadow.redact import Redactor


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """One configured server of a balanced backend (a host name may stand for several)."""

    host: str
    port: int
    weight: int


@dataclass(frozen=True, slots=True)
class BalancePlan:
    """How a backend with several servers, health checks or outlier detection is balanced."""

    servers: tuple[ServerSpec, ...]
    policy: str
    health: HealthCheckConfig | None
    outlier: OutlierConfig | None
    # None: names are resolved by each connect; else their addresses are kept this long.
    dns_ttl_s: float | None


@dataclass(frozen=True, slots=True)
class BackendTarget:
    """Where and how to reach one backend."""

    name: str
    host: str
    port: int
    authority: bytes
    connect_timeout_s: float
    read_timeout_s: float
    pool_size: int
    pool_idle_s: float
    is_host_preserved: bool
    shadow_pipeline_depth: int = 1
    # https backends: the context every connection is made with (built once per snapshot: one
    # per connection would re-read the CA store each time), and the name sent in SNI.
    ssl_context: ssl.SSLContext | None = None
    server_name: str | None = None
    # Goes before every forwarded path (`/v2`); empty for none.
    path_prefix: bytes = b""
    # Set when the backend goes through the balancer (proxy/balance.py); None: one plain pool.
    balance: BalancePlan | None = None

    @property
    def address(self) -> tuple[str, int, str | None, BalancePlan | None]:
        """Where connections go: a pool keeps its idle sockets across a reload only while this
        stays the same (a backend moved to https, or to another SNI name, or given other
        servers or balancing, starts afresh)."""
        return (self.host, self.port, self.server_name if self.ssl_context else None, self.balance)


@dataclass(frozen=True, slots=True)
class ShadowRoute:
    """What the shadow runner needs for one shadowed route."""

    settings: ShadowConfig
    rules: DiffRules
    redactor: Redactor
    # Lowercase names of the answer headers the comparison reads: the compared ones, and the two
    # that decide how a body is compared.
    kept_headers: frozenset[bytes] = frozenset()
    # Picks those headers out of an answer (it caches per sequence of names: the loop's only).
    picker: HeaderPicker = field(default_factory=lambda: HeaderPicker(frozenset()), compare=False)
    # The kept names an upstream connection holds aside for framing (rarely compared).
    kept_special: frozenset[bytes] = frozenset()

    @classmethod
    def build(cls, settings: ShadowConfig, rules: DiffRules, redactor: Redactor) -> ShadowRoute:
        names = {*rules.header_names, "content-type", "content-encoding"}
        kept = frozenset(n.lower().encode("latin-1") for n in names)
        special = kept & frozenset(RESPONSE_SPECIAL)
        return cls(settings, rules, redactor, kept, HeaderPicker(kept), special)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one request needs to be routed and forwarded."""

    version: int
    source: str
    config: Config
    table: RouteTable
    backends: Mapping[str, BackendTarget]
    limits: LimitsConfig
    trusted_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    via: bytes
    # Stage `shadow` settings and compiled diff rules, by route name (shadowed routes only).
    shadow_routes: Mapping[str, ShadowRoute]
    # The Rails bridge, when `rails:` is configured.
    bridge: BridgeSetup | None = None
    # Per route name, the SLOs that count its answers (routes in no SLO are absent).
    slo_targets: Mapping[str, tuple[SloTarget, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    # The HTTPS listener's certificate, when `tls:` is configured (the worker loads it into the
    # context its listener serves with).
    server_tls: ServerTls | None = None


@dataclass(frozen=True, slots=True)
class ServerTls:
    """The HTTPS listener's certificate files, checked loadable when the snapshot was built."""

    cert_path: Path
    key_path: Path
    min_version: ssl.TLSVersion


@dataclass(frozen=True, slots=True)
class BridgeSetup:
    """What a worker needs to build its IdentityBridge; the secrets stay inside `decoder`."""

    decoder: RailsSessionDecoder
    rails: RailsConfig
    identity: IdentityConfig
    keys_path: Path
    # The backend whose requests are bridged (the config's new_backend).
    new_backend: str
    # Routes with `csrf: false`, and routes with `pass_session_cookie: true`.
    csrf_exempt: frozenset[str]
    passes_session_cookie: frozenset[str]
