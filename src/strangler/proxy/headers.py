"""Header-section helpers shared by the request and response paths.

Header sections are built as a list: one leading line (request or status line) followed by runs
of four pieces, (name, b": ", value, CRLF), so nothing is concatenated until the final join.
"""

from __future__ import annotations

# Never dropped, whatever a Connection header names: they carry the message's own semantics.
_PROTECTED = frozenset({b"content-length", b"host"})


def drop_connection_listed(parts: list[bytes], tokens: bytes) -> list[bytes]:
    """Remove the headers a Connection header names (RFC 9110 §7.6.1)."""
    named = {token.strip().lower() for token in tokens.split(b",")} - _PROTECTED
    named -= {b"close", b"keep-alive", b"upgrade"}
    if not named:
        return parts
    kept = [parts[0]]
    for index in range(1, len(parts), 4):
        if parts[index].lower() not in named:
            kept += parts[index : index + 4]
    return kept
