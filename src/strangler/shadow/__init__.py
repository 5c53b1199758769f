"""Stage `shadow`: mirror requests to the new backend and compare the answers, off the hot path."""

from strangler.shadow.drop import DropReason
from strangler.shadow.mirror import Mirror, ShadowRunner
from strangler.shadow.results import RouteShadowStats, ShadowResults

__all__ = ["DropReason", "Mirror", "RouteShadowStats", "ShadowResults", "ShadowRunner"]
