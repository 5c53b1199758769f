"""`StoreAccess`: the admin app's one control store, opened on first use and shared by requests.

Rules:
- Opening connects and migrates the schema, so it happens at the first request that needs the
  store, in the thread pool (every endpoint that touches the store is a sync `def`): never at
  import, never at start-up, never on a worker's event loop.
- One store per process, opened once under a lock: SQLAlchemy's pool is thread-safe, so every
  request shares it. A `store:` changed by a reload takes effect at the next restart, as it
  does for the workers' results publisher.
- A store that can't be opened answers 503 ("store unavailable") and is tried again at the
  next request, at most once a second, so a database that is down is not hammered by retries.
- The reason goes to the log, never to the client: it may name a file or a host.
- In the supervisor (--workers N), workers forked after the store opened carry a copy of its
  pool. They never touch it and leave with os._exit, so no copy ever closes a connection the
  supervisor still uses.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import Response

from strangler.admin.problems import problem_openapi, problem_response
from strangler.admin.view import GatewayView
from strangler.control.state import Store
from strangler.control.store import StoreUnavailable

log = logging.getLogger("strangler.admin")

RETRY_INTERVAL_S = 1.0
STORE_UNAVAILABLE = "store unavailable"
STORE_UNAVAILABLE_RESPONSE: dict[str, Any] = problem_openapi(
    "The control store can't be reached (the reason is in the gateway's log)"
)


class StoreAccess:
    """The store named by the gateway's config, opened lazily once. Thread-safe."""

    def __init__(
        self,
        gateway: GatewayView,
        *,
        retry_interval_s: float = RETRY_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._gateway = gateway
        self._retry_interval_s = retry_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._failure: StoreUnavailable | None = None
        self._failed_at = 0.0

    def __repr__(self) -> str:
        if self._store is not None:
            state = repr(self._store)
        elif self._failure is not None:
            state = "unavailable"
        else:
            state = "not opened"
        return f"<StoreAccess {state}>"

    def get(self) -> Store:
        """The open store; raises StoreUnavailable when it can't be opened (now or < 1 s ago)."""
        with self._lock:
            if self._store is not None:
                return self._store
            now = self._clock()
            if self._failure is not None and now - self._failed_at < self._retry_interval_s:
                raise StoreUnavailable(str(self._failure))
            # Imported here, not at the top: SQLAlchemy costs ~25 MiB, and a gateway whose
            # admin API nobody calls should not pay for it.
            from strangler.control.stores import open_store

            snapshot = self._gateway.snapshot
            try:
                self._store = open_store(snapshot.config.store, snapshot.source)
            except StoreUnavailable as exc:
                self._failure, self._failed_at = exc, now
                log.error("admin API: the control store can't be opened: %s", exc)
                raise
            self._failure = None
            return self._store

    def close(self) -> None:
        """Release the store's connections; the next `get` opens it again."""
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()


def store_dependency(request: Request) -> Store:
    """FastAPI dependency: the app's store (`app.state.store_access`), or a 503 problem.

    A sync `def` on purpose: FastAPI runs it in the thread pool, where opening may block.
    """
    access: StoreAccess = request.app.state.store_access
    try:
        return access.get()
    except StoreUnavailable as exc:
        raise HTTPException(503, STORE_UNAVAILABLE) from exc


async def _store_problem(request: Request, exc: Exception) -> Response:
    # A store that was open but failed mid-request (database gone, file locked past the busy
    # timeout): the same 503 as when it can't be opened, the reason in the log once.
    log.error("admin API: %s %s: control store failed: %s", request.method, request.url.path, exc)
    return problem_response(503, STORE_UNAVAILABLE)


def install_store_access(app: FastAPI, gateway: GatewayView) -> StoreAccess:
    """Create the app's StoreAccess (`app.state.store_access`) and answer StoreUnavailable 503."""
    access = StoreAccess(gateway)
    app.state.store_access = access
    app.add_exception_handler(StoreUnavailable, _store_problem)
    return access
