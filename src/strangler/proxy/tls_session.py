"""TLS session resumption towards https backends.

asyncio's and uvloop's create_connection take no `session`, so a backend's client context
offers the last session one of its connections received (RFC 8446 §2.2 tickets, RFC 5077 for
TLS 1.2) to every new handshake it wraps. A server that does not know the session (another
server of the backend, rotated ticket keys) answers with a full handshake: nothing fails.
"""

from __future__ import annotations

import ssl
from typing import Any


class ResumingContext(ssl.SSLContext):
    """A client context that offers `session` to each new connection."""

    session: ssl.SSLSession | None = None

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        if session is None and not server_side:
            session = self.session
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)


def keep_session(context: ssl.SSLContext | None, transport: Any) -> bool | None:
    """Store the session of `transport`'s TLS connection in `context` for the next handshakes;
    returns whether this connection's own handshake resumed one (None: not TLS)."""
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    session = ssl_object.session
    # A TLS 1.3 session is resumable only once its ticket came; until then the one kept stays.
    if (
        session is not None
        and isinstance(context, ResumingContext)
        and (session.has_ticket or ssl_object.version() != "TLSv1.3")
    ):
        context.session = session
    return bool(ssl_object.session_reused)
