"""Header-section helpers shared by the request and response paths.

Header sections are built as a list: one leading line (request or status line) followed by runs
of four pieces, (name, b": ", value, CRLF), so nothing is concatenated until the final join.
"""

from __future__ import annotations

from typing import Final

# Response headers the proxy does not copy through as they are (RFC 9110 §7.6.1 hop-by-hop,
# plus the framing and the request id, which it writes itself).
# Final: compiled code reads them as C constants, not from the module's globals dict.
R_SKIP: Final = 0
R_LENGTH: Final = 1
R_TE: Final = 2
R_CONNECTION: Final = 3
R_UPGRADE: Final = 4
RESPONSE_SPECIAL: Final[dict[bytes, int]] = {
    b"connection": R_CONNECTION,
    b"keep-alive": R_SKIP,
    b"proxy-connection": R_SKIP,
    b"te": R_SKIP,
    b"trailer": R_SKIP,
    b"transfer-encoding": R_TE,
    b"upgrade": R_UPGRADE,
    b"content-length": R_LENGTH,
    b"x-request-id": R_SKIP,
}
CRLF: Final = b"\r\n"

# Never dropped, whatever a Connection header names: they carry the message's own semantics.
_PROTECTED: Final = frozenset({b"content-length", b"host"})
# The usual Connection values name connection options, not headers: nothing to drop.
_ONLY_OPTIONS: Final = frozenset({b"keep-alive", b"close", b"upgrade"})


def add_header(parts: list[bytes], name: bytes, value: bytes) -> None:
    """Append one header's four pieces: four appends build no tuple (compiled, half the cost of
    `parts += (name, b": ", value, CRLF)`, bench/instructions_per_request.py)."""
    parts.append(name)
    parts.append(b": ")
    parts.append(value)
    parts.append(CRLF)


def drop_connection_listed(parts: list[bytes], tokens: bytes) -> list[bytes]:
    """Remove the headers a Connection header names (RFC 9110 §7.6.1)."""
    if tokens.lower() in _ONLY_OPTIONS:
        return parts
    named = {token.strip().lower() for token in tokens.split(b",")} - _PROTECTED
    named -= {b"close", b"keep-alive", b"upgrade"}
    if not named:
        return parts
    kept = [parts[0]]
    for index in range(1, len(parts), 4):
        if parts[index].lower() not in named:
            kept += parts[index : index + 4]
    return kept


def with_path_prefix(head: bytes, prefix: bytes) -> bytes:
    """A request head with a backend's path prefix (`/v2`) before its target's path; an
    asterisk-form target (`OPTIONS *`, RFC 9112 §3.2.4) names no path and stays as it is."""
    start = head.find(b" ") + 1
    if head[start : start + 1] != b"/":
        return head
    return head[:start] + prefix + head[start:]
