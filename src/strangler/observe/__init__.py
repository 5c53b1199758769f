"""Observability: counters now; Prometheus exposition and tracing in later issues."""

from strangler.observe.counters import Counters

__all__ = ["Counters"]
