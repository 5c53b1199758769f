"""Balanced backends' health as each forked worker sees it, shared with the supervisor, whose
admin thread answers /readyz and `strangler status` with N workers.

Rules: one fixed slot per worker in an anonymous shared mapping made before the fork; a worker
writes only its own slot, a JSON document behind a sequence number that is odd while it
writes (a seqlock: the reader retries a torn read). A report larger than the slot is cut to
the backends' names and counts. Nothing here grows.
"""

from __future__ import annotations

import mmap
import struct
from typing import Any

import orjson

SLOT_BYTES = 64 * 1024
_HEADER = struct.Struct("<II")  # sequence, length


class HealthBoard:
    def __init__(self, workers: int) -> None:
        self.workers = max(workers, 1)
        self._map = mmap.mmap(-1, self.workers * SLOT_BYTES)

    def write(self, index: int, report: dict[str, Any]) -> None:
        """Worker `index` publishes its report (its own slot only)."""
        data = orjson.dumps(report)
        if len(data) > SLOT_BYTES - _HEADER.size:
            brief = {
                name: {"balance": b.get("balance"), "healthy": b.get("healthy"), "servers": []}
                for name, b in report.items()
            }
            data = orjson.dumps(brief)[: SLOT_BYTES - _HEADER.size]
        base = index * SLOT_BYTES
        sequence, _ = _HEADER.unpack_from(self._map, base)
        _HEADER.pack_into(self._map, base, sequence + 1, 0)
        self._map[base + _HEADER.size : base + _HEADER.size + len(data)] = data
        _HEADER.pack_into(self._map, base, sequence + 2, len(data))

    def read(self, index: int) -> dict[str, Any] | None:
        """Worker `index`'s last report (None before its first)."""
        base = index * SLOT_BYTES
        for _ in range(100):
            before, length = _HEADER.unpack_from(self._map, base)
            if before % 2:
                continue
            data = bytes(self._map[base + _HEADER.size : base + _HEADER.size + length])
            after, _ = _HEADER.unpack_from(self._map, base)
            if after == before:
                if not length:
                    return None
                try:
                    found: dict[str, Any] = orjson.loads(data)
                except orjson.JSONDecodeError:
                    return None
                return found
        return None

    def merged(self) -> dict[str, dict[str, Any]]:
        """Every worker's view in one: a server is in a state when all workers that report it
        agree, else `mixed`; `healthy` is the most any worker has; active requests add up."""
        reports = [r for r in (self.read(i) for i in range(self.workers)) if r is not None]
        return merge_reports(reports)


def merge_reports(reports: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for report in reports:
        for name, backend in report.items():
            into = merged.setdefault(
                name, {"balance": backend.get("balance"), "healthy": 0, "servers": []}
            )
            into["healthy"] = max(into["healthy"], int(backend.get("healthy", 0)))
            by_label = {s["server"]: s for s in into["servers"]}
            for server in backend.get("servers", []):
                seen = by_label.get(server["server"])
                if seen is None:
                    copy = dict(server)
                    copy["workers"] = {server["state"]: 1}
                    into["servers"].append(copy)
                    by_label[server["server"]] = copy
                    continue
                seen["workers"][server["state"]] = seen["workers"].get(server["state"], 0) + 1
                seen["active_requests"] += server.get("active_requests", 0)
                if seen["state"] != server["state"]:
                    seen["state"] = "mixed"
                until = server.get("ejected_until")
                if until is not None:
                    seen["ejected_until"] = max(seen.get("ejected_until") or 0, until)
    return merged


def backends_down(health: dict[str, dict[str, Any]]) -> list[str]:
    """The backends with no server that takes requests, sorted."""
    return sorted(name for name, backend in health.items() if not backend.get("healthy"))
