"""The YAML config: pydantic models and `load_config(path)`.

Rules: a file that cannot be used raises `ConfigError` naming the file, the line and the field,
and what was expected; nothing is half-applied. Loading reads the file and nothing else.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from strangler.diff import DiffRules
from strangler.errors import ConfigError
from strangler.routing.model import SUPPORTED_STAGES, Stage
from strangler.routing.pattern import PatternError, parse_match

PositiveSeconds = Annotated[float, Field(gt=0, le=86_400)]


class _Model(BaseModel):
    # A misspelt key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackendConfig(_Model):
    """One upstream the gateway can send requests to."""

    url: str
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

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "http":
            raise ValueError("expected an http:// URL (https upstreams are not supported yet)")
        if not parts.hostname:
            raise ValueError("expected a host, e.g. http://127.0.0.1:3000")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("expected scheme, host and port only; path prefixes are not supported")
        try:
            _ = parts.port
        except ValueError as exc:
            raise ValueError(f"bad port: {exc}") from exc
        return value

    @property
    def host(self) -> str:
        hostname = urlsplit(self.url).hostname
        assert hostname is not None  # guaranteed by _check_url
        return hostname

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80

    @property
    def authority(self) -> str:
        return urlsplit(self.url).netloc


# Rails 7's generated config/initializers/filter_parameter_logging.rb, as the default.
DEFAULT_REDACT = ("passw", "secret", "token", "_key", "crypt", "salt", "certificate", "otp", "ssn")


class ShadowConfig(_Model):
    """How a route in stage `shadow` copies its traffic to the new backend."""

    # `sandbox` means "the shadow target writes to a sandbox database": only then are
    # non-idempotent requests copied. Dual writes are how migrations corrupt data.
    writes: Literal["none", "sandbox"] = "none"
    max_body_bytes: Annotated[int, Field(ge=0, le=64 << 20)] = 1 << 20
    timeout_s: PositiveSeconds = 5.0
    backend: str | None = None
    # Noise learning (Diffy's idea): this share of safe requests is also sent to the legacy
    # backend a second time; paths where legacy differs from itself are noise, not regressions.
    noise_sample_rate: Annotated[float, Field(ge=0.0, le=1.0)] = 0.05
    # Keys whose values never reach the store (substring match, like Rails filter_parameters).
    redact: list[str] = Field(default_factory=lambda: list(DEFAULT_REDACT))


class RouteConfig(_Model):
    """One route: a Rails-style `match`, its stage, and optionally its own backend."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    match: Annotated[str, Field(min_length=1)]
    stage: Stage = Stage.LEGACY
    backend: str | None = None
    shadow: ShadowConfig = Field(default_factory=ShadowConfig)
    diff: dict[str, Any] | None = None
    # With `rails:` set, requests to the new backend that carry the Rails session are checked
    # for a valid authenticity token when they change state. `false` for routes that are
    # authenticated by bearer tokens rather than the session (an API).
    csrf: bool = True
    # The Rails session cookie is removed from requests to the new backend unless this is set.
    pass_session_cookie: bool = False

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

    @field_validator("stage")
    @classmethod
    def _check_stage(cls, value: Stage) -> Stage:
        if value not in SUPPORTED_STAGES:
            supported = ", ".join(sorted(s.value for s in SUPPORTED_STAGES))
            raise ValueError(
                f"stage {value.value!r} is reserved for a later release; use one of: {supported}"
            )
        return value


class LimitsConfig(_Model):
    """Bounds on what one client may cost a worker."""

    max_header_bytes: Annotated[int, Field(ge=1024, le=1 << 20)] = 32 * 1024
    max_body_bytes: Annotated[int, Field(ge=0)] = 1 << 30
    header_timeout_s: PositiveSeconds = 10.0
    body_timeout_s: PositiveSeconds = 60.0
    idle_timeout_s: PositiveSeconds = 75.0
    max_connections: Annotated[int, Field(ge=1)] = 10_000
    # Shadow copies in flight per worker; more are dropped and counted (queue_full).
    max_shadow_in_flight: Annotated[int, Field(ge=0, le=100_000)] = 256
    drain_timeout_s: PositiveSeconds = 30.0


class StoreConfig(_Model):
    """Where shadow results are kept (SQLite, shared by every worker on this machine)."""

    # Relative paths are taken from the config file's folder.
    path: Annotated[str, Field(min_length=1)] = "strangler.db"
    flush_interval_s: PositiveSeconds = 2.0
    retention_days: Annotated[float, Field(gt=0, le=3650)] = 7.0
    max_paths_per_route: Annotated[int, Field(ge=1, le=100_000)] = 200


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


class AdminConfig(_Model):
    """The admin listener: health and the identity JWKS (more comes with the control plane)."""

    # host:port like the top-level `listen`; null turns the admin listener off.
    listen: str | None = "127.0.0.1:9900"

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str | None) -> str | None:
        if value is not None:
            split_listen(value)
        return value


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ForwardingConfig(_Model):
    """How X-Forwarded-* and Via are written."""

    # Incoming X-Forwarded-* are believed only from these networks (e.g. your load balancer).
    trusted_proxies: list[str] = Field(default_factory=list)
    via: Annotated[str, Field(pattern=r"^[!-~]{1,64}$")] = "strangler"

    @field_validator("trusted_proxies")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"{item!r} is not an IP address or CIDR network") from exc
        return value

    def networks(self) -> tuple[IPNetwork, ...]:
        return tuple(ipaddress.ip_network(item, strict=False) for item in self.trusted_proxies)


class Config(_Model):
    """The whole file."""

    listen: str = "127.0.0.1:8000"
    backends: dict[str, BackendConfig]
    default: str = "legacy"
    # Which backend a route in stage `legacy` / `new` is sent to.
    legacy_backend: str = "legacy"
    new_backend: str = "new"
    routes: list[RouteConfig] = Field(default_factory=list)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    forwarding: ForwardingConfig = Field(default_factory=ForwardingConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    rails: RailsConfig | None = None
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        split_listen(value)
        return value

    @model_validator(mode="after")
    def _check_references(self) -> Config:
        names = set(self.backends)
        if not names:
            raise ValueError("backends: at least one backend is required")
        for key in ("default", "legacy_backend", "new_backend"):
            target = getattr(self, key)
            if target not in names:
                raise _RefError((key,), f"names backend {target!r}, which is not in backends")
        seen: dict[str, int] = {}
        for index, route in enumerate(self.routes):
            for loc, target in (
                (("routes", index, "backend"), route.backend),
                (("routes", index, "shadow", "backend"), route.shadow.backend),
            ):
                if target is not None and target not in names:
                    raise _RefError(
                        loc,
                        f"names backend {target!r}, which is not in backends "
                        f"({', '.join(sorted(names))})",
                    )
            if route.name in seen:
                raise _RefError(
                    ("routes", index, "name"),
                    f"route name {route.name!r} is already used by routes[{seen[route.name]}]",
                )
            seen[route.name] = index
        if self.admin.listen is not None:
            admin_host, admin_port = split_listen(self.admin.listen)
            if admin_port and (admin_host, admin_port) == split_listen(self.listen):
                raise _RefError(
                    ("admin", "listen"),
                    f"is the same address as `listen` ({self.listen}); "
                    "the admin listener needs a port of its own",
                )
        return self

    def shadow_backend_for(self, route: RouteConfig) -> str | None:
        if route.stage is not Stage.SHADOW:
            return None
        return route.shadow.backend or self.new_backend

    def backend_for(self, route: RouteConfig) -> str:
        if route.backend is not None:
            return route.backend
        return self.new_backend if route.stage is Stage.NEW else self.legacy_backend


class _RefError(ValueError):
    """A cross-reference error that knows which field it belongs to."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


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
    """Validate config text; `path` is only used to name the file in errors."""
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
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        context = error.get("ctx", {}).get("error")
        if isinstance(context, _RefError):
            loc, message = context.loc, str(context)
        elif error["type"] == "extra_forbidden":
            message = "unknown key (check the spelling against the config reference)"
        elif error["type"] == "missing":
            message = "this field is required"
        elif "input" in error and error["type"] != "model_type" and "got " not in message:
            message = f"{message} (got {_short(error['input'])})"
        raise ConfigError(path, line_of(root, loc), format_loc(loc), message) from exc


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
