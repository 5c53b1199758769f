"""Control plane: the immutable state snapshot the data plane reads without locks."""

from strangler.control.snapshot import BackendTarget, Snapshot, build_snapshot, load_snapshot

__all__ = ["BackendTarget", "Snapshot", "build_snapshot", "load_snapshot"]
