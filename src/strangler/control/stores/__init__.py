"""Adapters for the control-plane store ports (`strangler.control.store`), and `open_store`.

Importing this package opens nothing; each adapter connects when constructed.
"""

from __future__ import annotations

from strangler.config import StoreConfig
from strangler.control.state import Store
from strangler.control.stores.postgres import PostgresShadowStore
from strangler.control.stores.sqlite import SqliteShadowStore

__all__ = ["PostgresShadowStore", "SqliteShadowStore", "open_store"]


def open_store(config: StoreConfig, source: str) -> Store:
    """The store the config names: the PostgreSQL database at `store.url`, or else the SQLite
    file at `store.path` (relative to the folder of the config file `source`).

    Connects and migrates the schema now: raises StoreUnavailable when it can't.
    """
    if config.url is not None:
        return PostgresShadowStore(config.url)
    return SqliteShadowStore(config.sqlite_path(source))
