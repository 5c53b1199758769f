"""Building the Snapshot (runtime/snapshot.py) from a config file: the routes compiled, the
backends resolved, and the secrets it names read from the environment or from files.

Rule: the only code of the snapshot that reads files or the environment; it runs at start and
at each reload, off the hot path, and is not compiled.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit

from strangler.config import (
    BackendConfig,
    CanarySegmentConfig,
    Config,
    FaultsConfig,
    RouteCanaryConfig,
    RouteConfig,
    config_error,
    load_config,
)
from strangler.control.effective import unit_of
from strangler.control.state import Drill
from strangler.diff import DiffRules
from strangler.identity.rails_session import (
    KeyDigest,
    RailsSessionDecoder,
    RailsSessionSettings,
    Serializer,
    SessionSecret,
)
from strangler.observe.slo.counter import slo_targets
from strangler.routing import RouteTable
from strangler.routing.canary import (
    CanaryPlan,
    OverridePolicy,
    RolloutPlan,
    Segment,
    StickyCookie,
    weight_to_bp,
)
from strangler.routing.faults import FaultPlan, FaultSide
from strangler.routing.model import DecisionReason, RouteSpec, Stage
from strangler.runtime.snapshot import (
    BackendTarget,
    BalancePlan,
    BridgeSetup,
    ServerSpec,
    ShadowRoute,
    Snapshot,
)
from strangler.runtime.tls_contexts import client_context, load_server_tls
from strangler.shadow.redact import Redactor

log = logging.getLogger("strangler.snapshot")


def build_snapshot(
    config: Config,
    *,
    source: str,
    version: int = 1,
    drills: Mapping[str, Drill] | None = None,
    now: float | None = None,
    tls_from: Snapshot | None = None,
) -> Snapshot:
    """Compile a validated Config into a Snapshot (route patterns were checked by the config);
    ConfigError names the field when a secret it names is unset. `drills` (by rollout unit)
    replace the YAML's `faults:` of their units' routes until they expire (`now`: the wall
    clock, read when None).

    `tls_from`: a snapshot whose certificates and backend TLS contexts are reused where the
    config says the same. A state change (a rollback) passes the one in force, so it reads no
    certificate file and can't be refused for one in the middle of a rotation; a reload
    passes none, so it reads them all again."""
    canaries = build_canary_plans(config, source)
    faults = build_fault_plans(config, source, drills or {}, time.time() if now is None else now)
    rails_cookie = config.rails.cookie if config.rails is not None else None
    specs = [
        RouteSpec(
            name=route.name,
            match=route.match,
            stage=route.stage,
            backend=config.backend_for(route),
            reason=_reason(route.stage, route.backend),
            shadow_backend=config.shadow_backend_for(route),
            mirrors_unsafe=route.shadow.writes == "sandbox",
            canary_backend=config.canary_backend_for(route),
            canary=canaries.get(route.canary_group) if route.stage is Stage.CANARY else None,
            retries_on_legacy=route.stage is Stage.CANARY and route.canary.retry_on_legacy,
            faults=faults.get(route.name),
        )
        for route in config.routes
    ]
    backends = {
        name: _reused_target(tls_from, name, backend) or _target(name, backend, source)
        for name, backend in config.backends.items()
    }
    if tls_from is not None and tls_from.config.tls == config.tls:
        server_tls = tls_from.server_tls
    else:
        server_tls = load_server_tls(config, source)
    return Snapshot(
        version=version,
        source=source,
        config=config,
        table=RouteTable.build(specs, config.default),
        backends=MappingProxyType(backends),
        limits=config.limits,
        trusted_networks=config.forwarding.networks(),
        via=b"1.1 " + config.forwarding.via.encode("ascii"),
        bridge=build_bridge(config, source),
        server_tls=server_tls,
        slo_targets=MappingProxyType(slo_targets(config)),
        shadow_routes=MappingProxyType(
            {
                route.name: ShadowRoute.build(
                    route.shadow,
                    DiffRules.from_config(route.diff),
                    Redactor(route.shadow.redact, cookie=rails_cookie),
                )
                for route in config.routes
                if config.is_shadowed(route)
            }
        ),
    )


def _reused_target(
    previous: Snapshot | None, name: str, backend: BackendConfig
) -> BackendTarget | None:
    if previous is None or previous.config.backends.get(name) != backend:
        return None
    return previous.backends.get(name)


def _target(name: str, backend: BackendConfig, source: str) -> BackendTarget:
    ssl_context, server_name = None, None
    if backend.is_https:
        ssl_context, server_name = client_context(backend, name, source)
    return BackendTarget(
        name=name,
        host=backend.host,
        port=backend.port,
        authority=backend.authority.encode("ascii"),
        connect_timeout_s=backend.connect_timeout_s,
        read_timeout_s=backend.read_timeout_s,
        pool_size=backend.pool_size,
        pool_idle_s=backend.pool_idle_s,
        is_host_preserved=backend.host_header == "preserve",
        shadow_pipeline_depth=backend.shadow_pipeline_depth,
        ssl_context=ssl_context,
        server_name=server_name,
        path_prefix=backend.path_prefix.encode("ascii"),
        balance=_balance_plan(backend) if backend.is_balanced else None,
    )


def _balance_plan(backend: BackendConfig) -> BalancePlan:
    servers = []
    for url, weight in backend.servers:
        parts = urlsplit(url)
        assert parts.hostname is not None  # checked by the config
        port = parts.port or (443 if parts.scheme == "https" else 80)
        servers.append(ServerSpec(parts.hostname, port, weight))
    return BalancePlan(
        servers=tuple(servers),
        policy=backend.balance,
        health=backend.health,
        outlier=backend.outlier,
        dns_ttl_s=backend.dns_ttl_s,
    )


# An override secret shorter than this is refused: it would be guessable offline from one
# signed request.
MIN_OVERRIDE_SECRET_BYTES = 16


def build_fault_plans(
    config: Config, source: str, drills: Mapping[str, Drill], now: float
) -> dict[str, FaultPlan]:
    """Each faulted route's FaultPlan, by route name: its unit's unexpired drill, else the
    YAML's `faults:`. A drill whose fault this version can't read is skipped, never fatal."""
    plans: dict[str, FaultPlan] = {}
    trust: OverridePolicy | None = None
    for route in config.routes:
        drill = drills.get(unit_of(route))
        fault, expires_at, origin = route.faults, 0.0, "yaml"
        if drill is not None and drill.expires_at > now:
            try:
                fault = FaultsConfig.model_validate(dict(drill.fault))
            except ValueError:
                log.warning("drill of %s unreadable, skipped: %r", drill.unit, drill.fault)
            else:
                expires_at, origin = drill.expires_at, "drill"
        if fault is None:
            continue
        if fault.only_when_header is not None and trust is None:
            trust = override_policy(config, source)
        plans[route.name] = _fault_plan(route, fault, trust, expires_at, origin)
    return plans


def _fault_plan(
    route: RouteConfig,
    fault: FaultsConfig,
    trust: OverridePolicy | None,
    expires_at: float,
    origin: str,
) -> FaultPlan:
    abort, delay = fault.abort, fault.delay
    header = fault.only_when_header
    return FaultPlan(
        abort_bp=0 if abort is None else weight_to_bp(abort.percent),
        abort_status=503 if abort is None else abort.status,
        delay_bp=0 if delay is None else weight_to_bp(delay.percent),
        delay_s=0.0 if delay is None else delay.ms / 1000,
        side=FaultSide(fault.side),
        only_when_header=b"" if header is None else header.lower().encode("ascii"),
        trust=trust if header is not None else None,
        expires_at=expires_at,
        source=origin,
    )


def override_policy(config: Config, source: str) -> OverridePolicy:
    """Who the canary override trusts (its networks, its signing secret): the canary routes'
    `X-Strangler-Backend` and the faults' `only_when_header` alike. Reads the secret from its
    environment variable, never from the YAML."""
    settings = config.canary
    secret = b""
    if settings.override.secret_env is not None:
        name = settings.override.secret_env
        secret = os.environ.get(name, "").strip().encode("utf-8")
        if len(secret) < MIN_OVERRIDE_SECRET_BYTES:
            problem = "is not set or empty" if not secret else "is shorter than 16 bytes"
            raise config_error(
                source,
                ("canary", "override", "secret_env"),
                f"environment variable {name} {problem} (the override signing secret; "
                "make one with `openssl rand -hex 32`)",
            )
    return OverridePolicy(
        networks=tuple(
            ipaddress.ip_network(item, strict=False) for item in settings.override.networks
        ),
        secret=secret,
        max_ttl_s=settings.override.max_ttl_s,
    )


def build_canary_plans(config: Config, source: str) -> dict[str, CanaryPlan]:
    """One compiled CanaryPlan per rollout group (shared by the group's routes); reads the
    override secret from its environment variable, never from the YAML."""
    groups = config.canary_groups()
    if not groups:
        return {}
    settings = config.canary
    override = override_policy(config, source)
    cookie = StickyCookie(settings.sticky_cookie.name, settings.sticky_cookie.max_age_s)
    has_identity = config.rails is not None
    return {
        group: _canary_plan(group, canary, override, cookie, has_identity=has_identity)
        for group, canary in groups.items()
    }


def _canary_plan(
    group: str,
    canary: RouteCanaryConfig,
    override: OverridePolicy,
    cookie: StickyCookie,
    *,
    has_identity: bool,
) -> CanaryPlan:
    return CanaryPlan(
        group=group,
        weight_bp=weight_to_bp(canary.weight),
        stickiness=canary.sources(has_identity=has_identity),
        segments=tuple(_segment(segment) for segment in canary.segments),
        override=override,
        sticky_cookie=cookie,
        rollout=RolloutPlan(
            steps_bp=tuple(weight_to_bp(step) for step in canary.plan.steps),
            interval_s=canary.plan.interval_s,
            min_requests=canary.plan.min_requests,
        ),
    )


def _segment(segment: CanarySegmentConfig) -> Segment:
    def pairs(
        values: Mapping[str, list[str]], *, lower: bool = False
    ) -> tuple[tuple[str, frozenset[str]], ...]:
        return tuple(
            (name.lower() if lower else name, frozenset(listed)) for name, listed in values.items()
        )

    return Segment(
        name=segment.name,
        weight_bp=weight_to_bp(segment.weight),
        headers=pairs(segment.header, lower=True),
        cookies=pairs(segment.cookie),
        query=pairs(segment.query),
        user_ids=(
            None if segment.user_ids is None else frozenset(str(uid) for uid in segment.user_ids)
        ),
        networks=tuple(
            ipaddress.ip_network(item, strict=False) for item in segment.client_cidrs or ()
        ),
    )


def build_bridge(config: Config, source: str) -> BridgeSetup | None:
    """Read the Rails secrets (environment or files, never the YAML) and derive the keys once;
    ConfigError names the field when a secret is missing, or in a file others can read."""
    rails = config.rails
    if rails is None:
        return None
    folder = Path(source).parent
    sources: list[tuple[tuple[str | int, ...], str, str | None, str]] = [
        (("rails", "secret_key_base_env"), "env", rails.secret_key_base_env, rails.key_digest),
        (("rails", "secret_key_base_file"), "file", rails.secret_key_base_file, rails.key_digest),
    ]
    for index, previous in enumerate(rails.previous_secrets):
        sources.append(
            (("rails", "previous_secrets", index, "env"), "env", previous.env, previous.key_digest)
        )
        sources.append(
            (
                ("rails", "previous_secrets", index, "file"),
                "file",
                previous.file,
                previous.key_digest,
            )
        )
    secrets: list[SessionSecret] = []
    for loc, kind, name, digest in sources:
        if name is None:
            continue
        secret, mode = _read_secret(kind, name, folder)
        # Like ssh with its private keys (and the identity key ring): a secret that other users
        # can read is refused, not silently used.
        if mode & 0o077:
            raise config_error(
                source,
                loc,
                f"file {name} is readable by other users (mode {mode:o}); it holds the Rails "
                f"secret_key_base: run chmod 600 {_secret_path(name, folder)}",
            )
        if not secret:
            what = f"environment variable {name}" if kind == "env" else f"file {name}"
            raise config_error(
                source, loc, f"{what} is not set or empty (the Rails secret_key_base)"
            )
        secrets.append(SessionSecret(secret, KeyDigest(digest)))
    decoder = RailsSessionDecoder(
        RailsSessionSettings(rails.cookie, tuple(secrets), Serializer(rails.serializer)),
        clock=time.time,
    )
    return BridgeSetup(
        decoder=decoder,
        rails=rails,
        identity=config.identity,
        keys_path=identity_keys_path(config, source),
        new_backend=config.new_side_backend,
        csrf_exempt=frozenset(r.name for r in config.routes if not r.csrf),
        passes_session_cookie=frozenset(r.name for r in config.routes if r.pass_session_cookie),
    )


def identity_keys_path(config: Config, source: str) -> Path:
    """The identity key ring file: `identity.keys_path`, relative to the config file's folder.

    Needs no secret, so `strangler keys` can use it without the Rails secret_key_base."""
    path = Path(config.identity.keys_path)
    return path if path.is_absolute() else Path(source).parent / path


def _secret_path(name: str, folder: Path) -> Path:
    return Path(name) if Path(name).is_absolute() else folder / name


def _read_secret(kind: str, name: str, folder: Path) -> tuple[bytes, int]:
    """The secret, and the permission bits of the file it was read from (0 for a variable)."""
    if kind == "env":
        return os.environ.get(name, "").strip().encode("utf-8"), 0
    try:
        with _secret_path(name, folder).open("rb") as handle:
            mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
            return handle.read().strip(), mode
    except OSError:
        return b"", 0


def load_snapshot(path: str | Path, *, version: int = 1) -> Snapshot:
    """Read, validate and compile a config file; raises ConfigError naming file:line:field."""
    return build_snapshot(load_config(path), source=str(path), version=version)


def store_path(snapshot: Snapshot) -> Path:
    """The SQLite shadow results database: `store.path`, relative to the config file's folder
    (unused when `store.url` names a PostgreSQL database)."""
    return snapshot.config.store.sqlite_path(snapshot.source)


def source_mtime(path: str) -> float:
    """The config file's modification time, 0.0 if it can't be read (watchers compare it)."""
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return 0.0


def _reason(stage: Stage, backend: str | None) -> DecisionReason:
    if stage is Stage.CANARY:
        # Each side's own reason is on its Decision (canary_legacy, canary_new).
        return DecisionReason.STAGE_CANARY
    if backend is not None:
        return DecisionReason.ROUTE_BACKEND
    if stage is Stage.SHADOW:
        return DecisionReason.STAGE_SHADOW
    if stage in (Stage.NEW, Stage.RETIRED):
        return DecisionReason.STAGE_NEW
    return DecisionReason.STAGE_LEGACY
