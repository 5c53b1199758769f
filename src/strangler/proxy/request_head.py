"""RequestHead: one parsed request head, frozen once the connection has checked it, and the
upstream head built from it.

Rules:
- Built once per request by ClientConnection.on_headers_complete, after the head passed every
  framing check; never changed afterwards. Steering (canary, faults, the Rails bridge) reads it,
  and so does everything that builds a head for an upstream, whatever backend it goes to.
- `parts` holds the headers copied through, as runs of four pieces (name, b": ", value, CRLF)
  after one leading slot for the request line (proxy.headers); its `cookie_at` slot holds the
  Cookie value. Builders copy it, never write into it: a canary request builds a head for legacy
  (its fallback) and one for new from the same parts.
- The connection's facts a policy reads (peer address, whether the peer is a trusted proxy,
  the listener's scheme) ride along, so steering needs nothing but the head.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from strangler.proxy.headers import drop_connection_listed

if TYPE_CHECKING:
    from strangler.runtime.snapshot import BackendTarget


# A plain class, not a frozen dataclass: one is made per request, and a compiled frozen
# dataclass is built by the interpreted __init__ dataclasses writes (object.__setattr__ per
# field). Final attributes: mypy refuses any write after __init__.
class RequestHead:
    """What a client's request head says, with where it came from."""

    def __init__(
        self,
        method: bytes,
        url: bytes,
        path: bytes,
        is_http10: bool,
        keep_alive: bool,
        is_upgrade: bool,
        is_chunked: bool,
        content_length: int,
        expects_continue: bool,
        parts: list[bytes],
        cookie_at: int,
        host: bytes | None,
        forwarded_for: bytes | None,
        forwarded_proto: bytes | None,
        forwarded_host: bytes | None,
        upgrade: bytes | None,
        connection_tokens: bytes | None,
        traceparent: bytes | None,
        request_id: bytes | None,
        has_authorization: bool,
        csrf_token: bytes | None,
        origin: bytes | None,
        content_type: bytes | None,
        override: bytes | None,
        signature: bytes | None,
        method_override: bytes | None,
        peer: bytes,
        is_trusted_peer: bool,
        is_tls: bool,
    ) -> None:
        self.method: Final = method
        # The target in origin-form with its canonical path, and that path.
        self.url: Final = url
        self.path: Final = path
        self.is_http10: Final = is_http10
        self.keep_alive: Final = keep_alive
        self.is_upgrade: Final = is_upgrade
        self.is_chunked: Final = is_chunked
        self.content_length: Final = content_length
        self.has_body: Final = is_chunked or content_length > 0
        self.expects_continue: Final = expects_continue
        self.parts: Final = parts
        self.cookie_at: Final = cookie_at
        self.cookie: Final = parts[cookie_at] if cookie_at >= 0 else None
        self.host: Final = host
        # X-Forwarded-For (several folded into one), -Proto and -Host as sent: only a trusted
        # peer's are believed.
        self.forwarded_for: Final = forwarded_for
        self.forwarded_proto: Final = forwarded_proto
        self.forwarded_host: Final = forwarded_host
        self.upgrade: Final = upgrade
        self.connection_tokens: Final = connection_tokens
        self.traceparent: Final = traceparent
        self.request_id: Final = request_id
        # The Rails bridge's inputs.
        self.has_authorization: Final = has_authorization
        self.csrf_token: Final = csrf_token
        self.origin: Final = origin
        self.content_type: Final = content_type
        # X-Strangler-Backend and X-Strangler-Signature: read on canary routes, never forwarded.
        self.override: Final = override
        self.signature: Final = signature
        self.method_override: Final = method_override
        self.peer: Final = peer
        self.is_trusted_peer: Final = is_trusted_peer
        self.is_tls: Final = is_tls

    def header_value(self, name: bytes) -> str | None:
        """The first value of copied header `name` (lowercase), stripped; None when absent."""
        parts = self.parts
        for at in range(1, len(parts) - 2, 4):
            if parts[at].lower() == name:
                return parts[at + 2].decode("latin-1").strip()
        return None

    def trusted_forwarded_for(self) -> str | None:
        """X-Forwarded-For when a trusted proxy sent it (else None: the peer is the client)."""
        forwarded = self.forwarded_for if self.is_trusted_peer else None
        return None if forwarded is None else forwarded.decode("latin-1")


def upstream_head(
    head: RequestHead,
    target: BackendTarget | None,
    via: bytes,
    request_id: bytes,
    traceparent: bytes,
    identity: bytes,
    cookie: bytes | None,
) -> bytes:
    """The head sent to `target` for `head`: the copied headers, Host, the forwarding headers,
    Via and the trace ids, framing, then `identity` (the Rails bridge's header line, or b"").
    `cookie` is the Cookie value to send: `head.cookie` itself keeps the header as it came,
    another value replaces it, None drops it (the Rails bridge decides)."""
    out = head.parts.copy()
    out[0] = head.method + b" " + head.url + b" HTTP/1.1\r\n"
    if cookie is not head.cookie:
        at = head.cookie_at
        if cookie is None:
            out[at - 2 : at + 2] = (b"", b"", b"", b"")
        else:
            out[at] = cookie
    if head.connection_tokens is not None:
        out = drop_connection_listed(out, head.connection_tokens)
    host = head.host
    if target is not None and (host is None or not target.is_host_preserved):
        host = target.authority
    if host is not None:
        out += (b"Host: ", host, b"\r\n")
    proto = b"https" if head.is_tls else b"http"
    if head.is_trusted_peer:
        xff = head.peer if head.forwarded_for is None else head.forwarded_for + b", " + head.peer
        proto = head.forwarded_proto or proto
        forwarded_host = head.forwarded_host or head.host
    else:
        xff, forwarded_host = head.peer, head.host
    out += (b"X-Forwarded-For: ", xff, b"\r\nX-Forwarded-Proto: ", proto, b"\r\n")
    if forwarded_host is not None:
        out += (b"X-Forwarded-Host: ", forwarded_host, b"\r\n")
    out += (
        b"Via: ",
        via,
        b"\r\ntraceparent: ",
        traceparent,
        b"\r\nX-Request-Id: ",
        request_id,
        b"\r\n",
    )
    if head.is_chunked:
        out.append(b"Transfer-Encoding: chunked\r\n")
    if head.is_upgrade and head.upgrade is not None:
        out += (b"Connection: upgrade\r\nUpgrade: ", head.upgrade, b"\r\n")
    if identity:
        out.append(identity)
    out.append(b"\r\n")
    return b"".join(out)
