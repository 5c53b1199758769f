"""strangler: a strangler-fig migration gateway.

Put it in front of a legacy web app and the new backend that replaces it, then move traffic
route by route.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
