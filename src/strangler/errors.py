"""The exception tree. Small on purpose: callers catch by meaning, not by library.

StranglerError
├── ConfigError(path, line, field)   a config file that cannot be used, pointing at the spot
└── ClientProtocolError(status)      a client request we refuse (400/413/431)

Upstream failures are values (`proxy.failures.FailureKind`), not exceptions, because they
become responses, not stack traces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class StranglerError(Exception):
    """Root of every error strangler raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong in a config file: where, which key path, and what was expected."""

    line: int | None
    field: str
    message: str


class ConfigError(StranglerError):
    """A config file that cannot be used; names the file, line and field and what was expected.

    It carries every problem found in the file (`problems`, sorted by line); `line`, `field`
    and `message` are the first one's. Printed, each problem is one line and every line after
    the first starts with "error: ", so `f"error: {exc}"` shows them all alike.
    """

    def __init__(
        self,
        path: str,
        line: int | None,
        field: str,
        message: str,
        *,
        more: Sequence[ConfigProblem] = (),
    ) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.message = message
        self.problems = (ConfigProblem(line, field, message), *more)
        super().__init__("\nerror: ".join(self.describe(problem) for problem in self.problems))

    @classmethod
    def of(cls, path: str, problems: Sequence[ConfigProblem]) -> ConfigError:
        """All of `problems` (at least one), sorted by line, the ones without a line last."""
        ordered = sorted(problems, key=lambda p: (p.line is None, p.line or 0))
        first = ordered[0]
        return cls(path, first.line, first.field, first.message, more=ordered[1:])

    def describe(self, problem: ConfigProblem) -> str:
        where = f"{self.path}:{problem.line}" if problem.line is not None else self.path
        if problem.field:
            return f"{where}: {problem.field}: {problem.message}"
        return f"{where}: {problem.message}"


class ClientProtocolError(StranglerError):
    """A request we refuse before it reaches any upstream; `status` is the answer (4xx)."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{status}: {reason}")
