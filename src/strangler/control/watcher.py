"""`StateWatcher`: follows the store's control state from a thread and hands every new version
of the overrides and drills to its owner, so each worker (and replica) converges on a change
within a second.

Rules:
- PostgreSQL: LISTEN on the channel each change NOTIFYs on commit, and read the version at
  least every second anyway (a notification lost with a dropped connection is caught by that
  poll). SQLite: read the version every POLL_S; it is one indexed lookup in a WAL file.
- When the store is unreachable the watcher says so once (`degraded` holds why), keeps the last
  overrides it had, and retries with backoff up to MAX_BACKOFF_S; it catches up on return.
- `on_change` runs on the watcher's thread; the owner moves the result to its event loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from strangler.control.background import Background
from strangler.control.state import Drill, Override, Store

log = logging.getLogger("strangler.watcher")

POLL_S = 0.25
LISTEN_POLL_S = 1.0
MAX_BACKOFF_S = 5.0
# Why a watcher is degraded before the store first answered (compared by identity).
NOT_READ_YET = "the control store has not answered yet"

OnChange = Callable[[dict[str, Override], dict[str, Drill], int], None]


class StateWatcher(Background):
    """One thread reading the control state's version, and the overrides when it moves."""

    def __init__(
        self,
        open_store: Callable[[], Store],
        on_change: OnChange,
        *,
        listen_url: str | None = None,
        name: str = "strangler-state",
        closes_store: bool = True,
    ) -> None:
        super().__init__(name)
        self._open_store = open_store
        self._on_change = on_change
        self._listen_url = listen_url
        # False when the store is shared (SharedStore): its owner closes it.
        self._closes_store = closes_store
        self.first_read = threading.Event()  # set after the first attempt, success or not
        self.version = -1
        # Reads of the state that failed (strangler_store_failures_total{what="watch"}).
        self.failures = 0
        # Degraded until the store first answers: until then the YAML alone is in force.
        self.degraded: str | None = NOT_READ_YET
        self._store: Store | None = None
        self._listener: Any = None

    def _run(self) -> None:
        backoff = 0.0
        try:
            while not self._stop.is_set():
                try:
                    self._check()
                except Exception as exc:
                    self.failures += 1
                    backoff = min(MAX_BACKOFF_S, backoff * 2 or 0.25)
                    self._fail(exc)
                    self.first_read.set()
                    self._stop.wait(backoff)
                    continue
                backoff = 0.0
                self.first_read.set()
                self._wait()
        finally:
            self._close()

    def _check(self) -> None:
        if self._store is None:
            self._store = self._open_store()
        version = self._store.state_version()
        if version != self.version:
            overrides = self._store.overrides()
            self._on_change(overrides, self._store.drills(), version)
            self.version = version
        if self.degraded is not None:
            if self.degraded is not NOT_READ_YET:
                log.warning("control store reachable again at version %d", version)
            self.degraded = None

    def _fail(self, exc: Exception) -> None:
        reason = f"control store unavailable: {exc}"
        if self.degraded is None or self.degraded is NOT_READ_YET:
            log.error("%s; serving the last-known state (version %d)", reason, self.version)
        self.degraded = reason
        self._drop_listener()

    def _wait(self) -> None:
        if self._listen_url is None:
            self._stop.wait(POLL_S)
            return
        try:
            if self._listener is None:
                self._listener = _listen(self._listen_url)
            # Wakes on the first notification, else after LISTEN_POLL_S to poll anyway.
            for _ in self._listener.notifies(timeout=LISTEN_POLL_S, stop_after=1):
                pass
        except Exception as exc:
            log.debug("LISTEN failed, polling instead: %s", exc)
            self._drop_listener()
            self._stop.wait(POLL_S)

    def _drop_listener(self) -> None:
        if self._listener is not None:
            try:
                self._listener.close()
            except Exception:
                log.debug("closing the LISTEN connection failed", exc_info=True)
            self._listener = None

    def _close(self) -> None:
        self._drop_listener()
        if self._store is not None and self._closes_store:
            try:
                self._store.close()
            except Exception:
                log.debug("closing the store failed", exc_info=True)


def _listen(url: str) -> Any:
    import psycopg

    from strangler.control.stores.postgres import CONNECT_TIMEOUT_S, NOTIFY_CHANNEL, engine_url

    plain = engine_url(url).set(drivername="postgresql")
    conn = psycopg.connect(
        plain.render_as_string(hide_password=False),
        autocommit=True,
        connect_timeout=CONNECT_TIMEOUT_S,
        application_name="strangler-listen",
    )
    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
    return conn
