"""TLS contexts: the HTTPS listener's and one per https backend, built from the files the
config names (relative to the config file's folder).

Rules: runs when a snapshot is built (start, reload), never per connection: a client context
reads the CA store once, not once per handshake. A file that is missing or unusable is a
ConfigError naming the key that named it, so a bad certificate is refused at load and a
reload with one keeps the certificate in force.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from strangler.config import BackendConfig, Config, config_error
from strangler.proxy.tls_session import ResumingContext
from strangler.runtime.snapshot import ServerTls

# RFC 7301: the only protocol either side of the gateway speaks. A client offering only h2
# gets no ALPN answer and may fall back; it is never told h2.
ALPN_PROTOCOLS = ["http/1.1"]

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def load_server_tls(config: Config, source: str) -> ServerTls | None:
    """The listener's certificate files, after checking that they load as a chain and its key."""
    tls = config.tls
    if tls is None:
        return None
    folder = Path(source).parent
    cert = _existing(source, ("tls", "cert"), tls.cert, folder)
    key = _existing(source, ("tls", "key"), tls.key, folder)
    server = ServerTls(cert, key, _VERSIONS[tls.min_version])
    try:
        server_context(server)
    except ssl.SSLError as exc:
        raise config_error(
            source, ("tls", "cert"), f"cannot use {cert} with key {key}: {_ssl_reason(exc)}"
        ) from exc
    return server


def server_context(server: ServerTls) -> ssl.SSLContext:
    """A context serving `server`'s certificate; raises ssl.SSLError if the files don't load."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = server.min_version
    context.set_alpn_protocols(ALPN_PROTOCOLS)
    context.load_cert_chain(server.cert_path, server.key_path)
    return context


def reload_server_context(context: ssl.SSLContext, server: ServerTls) -> None:
    """Serve `server`'s certificate on a live listener's context: handshakes that start later
    take it (OpenSSL copies the certificate into each connection when it starts), and
    connections already open keep theirs. The files were checked when `server` was built."""
    context.minimum_version = server.min_version
    context.load_cert_chain(server.cert_path, server.key_path)


def client_context(backend: BackendConfig, name: str, source: str) -> tuple[ssl.SSLContext, str]:
    """The context and SNI name for connections to https backend `name`: verified against the
    system store (or `tls.ca`) unless `tls.verify` is false, with a client certificate when
    `tls.client_cert` is given, resuming the backend's last session (proxy.tls_session)."""
    tls = backend.tls
    folder = Path(source).parent
    loc: tuple[str | int, ...] = ("backends", name, "tls")
    ca = None
    if tls is not None and tls.ca is not None:
        ca = _existing(source, (*loc, "ca"), tls.ca, folder)
    # ssl.create_default_context's settings, on a context that resumes sessions.
    context = ResumingContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        if ca is not None:
            context.load_verify_locations(cafile=ca)
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    except ssl.SSLError as exc:
        raise config_error(source, (*loc, "ca"), f"cannot load {ca}: {_ssl_reason(exc)}") from exc
    context.set_alpn_protocols(ALPN_PROTOCOLS)
    if tls is not None and not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls is not None and tls.client_cert is not None and tls.client_key is not None:
        cert = _existing(source, (*loc, "client_cert"), tls.client_cert, folder)
        key = _existing(source, (*loc, "client_key"), tls.client_key, folder)
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise config_error(
                source,
                (*loc, "client_cert"),
                f"cannot use {cert} with key {key}: {_ssl_reason(exc)}",
            ) from exc
    server_name = tls.server_name if tls is not None and tls.server_name else backend.host
    return context, server_name


def _existing(source: str, loc: tuple[str | int, ...], name: str, folder: Path) -> Path:
    path = Path(name) if Path(name).is_absolute() else folder / name
    if not path.is_file():
        raise config_error(source, loc, f"file {name} not found (looked for {path})")
    return path


def _ssl_reason(exc: ssl.SSLError) -> str:
    # OpenSSL's reason code (KEY_VALUES_MISMATCH, NO_START_LINE) says more than its prose.
    return exc.reason or str(exc)
