"""In-process counters, one set per worker.

Rules: labels are bounded values (route and backend names, reasons from fixed enums), never a
raw path or header. Incrementing is a dict update; reading takes a copy.
"""

from __future__ import annotations

from collections import Counter


class Counters:
    """`strangler_<name>` counters keyed by (name, *labels)."""

    def __init__(self) -> None:
        self._values: Counter[tuple[str, ...]] = Counter()

    def inc(self, name: str, *labels: str, by: int = 1) -> None:
        self._values[(name, *labels)] += by

    def get(self, name: str, *labels: str) -> int:
        return self._values[(name, *labels)]

    def items(self) -> list[tuple[tuple[str, ...], int]]:
        """(name, *labels) and value of every counter, a copy."""
        return list(self._values.items())

    def snapshot(self) -> dict[str, int]:
        """A copy, keyed `name{label,label}` for logs and the stats endpoint."""
        return {
            (key[0] + ("{" + ",".join(key[1:]) + "}" if len(key) > 1 else "")): value
            for key, value in sorted(self._values.items())
        }
