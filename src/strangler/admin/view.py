"""What the admin app reads from the running gateway: the snapshot in force, and whether it is
draining.

Rule: the admin app never keeps a snapshot of its own; it asks the view on every request, so a
reload (SIGHUP, --watch) is visible at once. Reads are plain attribute reads, safe from the
supervisor's admin thread as well as on a worker's own loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from strangler.config import Config
from strangler.runtime.snapshot import Snapshot

if TYPE_CHECKING:
    from strangler.observe.exposition import MetricsHub


class GatewayView(Protocol):
    """A worker (single-process mode) or the supervisor's state (with --workers N)."""

    @property
    def snapshot(self) -> Snapshot: ...

    @property
    def is_draining(self) -> bool: ...

    @property
    def base(self) -> Config:
        """The YAML config as loaded, without the store's overrides (the snapshot's config has
        them applied)."""
        ...

    @property
    def degraded(self) -> str | None:
        """Why the state in force may be stale (the control store is unreachable), or None."""
        ...

    @property
    def metrics_hub(self) -> MetricsHub | None:
        """What /metrics renders (None: metrics are off)."""
        ...

    def backend_health(self) -> dict[str, dict[str, Any]]:
        """Each balanced backend's servers and their health, by backend name (backends with
        one plain `url` are absent): {"balance", "healthy", "servers": [{"server", "state",
        "weight", "ejected_until", "active_requests"}]}."""
        ...

    def refresh_metrics(self) -> None:
        """Bring the hub up to date before a scrape (a lone worker hands over its counts; the
        supervisor's workers send theirs on their own)."""
        ...
