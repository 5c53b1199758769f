"""The exception tree. Small on purpose: callers catch by meaning, not by library.

StranglerError
├── ConfigError(path, line, field)   a config file that cannot be used, pointing at the spot
└── ClientProtocolError(status)      a client request we refuse (400/413/431)

Upstream failures are values (`proxy.failures.FailureKind`), not exceptions, because they
become responses, not stack traces.
"""

from __future__ import annotations


class StranglerError(Exception):
    """Root of every error strangler raises on purpose."""


class ConfigError(StranglerError):
    """A config file that cannot be used; names the file, line and field and what was expected."""

    def __init__(self, path: str, line: int | None, field: str, message: str) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.message = message
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


class ClientProtocolError(StranglerError):
    """A request we refuse before it reaches any upstream; `status` is the answer (4xx)."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{status}: {reason}")
