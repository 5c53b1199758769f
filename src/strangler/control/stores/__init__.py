"""Adapters for the control-plane store ports (`strangler.control.store`).

Importing this package opens nothing; each adapter connects when constructed.
"""

from strangler.control.stores.sqlite import SqliteShadowStore

__all__ = ["SqliteShadowStore"]
