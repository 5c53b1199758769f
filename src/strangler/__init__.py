"""strangler: a strangler-fig migration gateway.

Put it in front of a legacy web app and the new backend that replaces it, then move traffic
route by route.
"""

from strangler import native

__version__ = "0.1.0"
__all__ = ["__version__"]

# A compiled hot path older than its sources would run yesterday's code: run the sources instead.
if native.stale_sources():
    native.prefer_sources()
