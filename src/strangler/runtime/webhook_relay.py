"""Turns control-plane changes into webhook events, in one process of a whole deployment.

Every change to a stage or weight, by a person, the analyzer or any other actor, is an audit
entry in the store, whichever process made it (the CLI writes the store directly). So the relay
reads the audit log, not the callers: one `stage_changed` event per new entry, in order. The
process holding the store lease `webhooks` is the only one that sends, so N replicas send each
event once; a new holder starts from the entries it finds, without replaying history.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable

from strangler.config import Config
from strangler.control.background import Background
from strangler.control.state import Store, VerdictRecord
from strangler.errors import StranglerError
from strangler.observe.webhooks import Hook, WebhookDispatcher, where

log = logging.getLogger("strangler.webhooks")

POLL_INTERVAL_S = 1.0
LEASE_TTL_S = 10.0
LEASE = "webhooks"


def hooks_of(config: Config) -> list[Hook]:
    """The config's webhooks, their secrets read from the environment now."""
    hooks: list[Hook] = []
    for item in config.webhooks:
        secret = os.environ.get(item.secret_env, "") if item.secret_env else ""
        if item.secret_env and not secret:
            log.warning(
                "webhook %s: environment variable %s is not set; its bodies go unsigned",
                where(item.url),
                item.secret_env,
            )
        hooks.append(
            Hook(
                url=item.url,
                events=frozenset(item.events),
                secret=secret.encode() if secret else None,
                kind=item.kind,
                timeout_s=item.timeout_s,
            )
        )
    return hooks


class WebhookRelay(Background):
    """A daemon thread that sends the audit log's new entries as `stage_changed` events."""

    def __init__(self, store: Callable[[], Store], dispatcher: WebhookDispatcher) -> None:
        super().__init__("strangler-relay")
        self._store = store
        self.dispatcher = dispatcher
        self._holder = f"{socket.gethostname()}:{os.getpid()}"
        self._last: int | None = None

    def start(self) -> None:
        self.dispatcher.start()
        super().start()

    def stop(self, timeout_s: float = 2.0) -> None:
        super().stop(timeout_s)
        self.dispatcher.stop()

    def on_verdict(self, record: VerdictRecord) -> None:
        """The analyzer's verdicts (it runs where the analyzer lease is: once per deployment)."""
        self.dispatcher.emit("rollout_verdict", record.to_json())

    def _run(self) -> None:
        while not self._stop.wait(POLL_INTERVAL_S):
            try:
                self.poll(time.time())
            except StranglerError as exc:
                log.warning("webhook relay waiting for the control store: %s", exc)

    def poll(self, now: float) -> int:
        """Send what is new since the last poll; returns how many events were handed over."""
        store = self._store()
        if not store.try_lease(LEASE, self._holder, LEASE_TTL_S, now):
            self._last = None  # another process sends; start afresh if the lease comes back
            return 0
        entries = sorted(store.audit(None, limit=100), key=lambda change: change.version)
        if self._last is None:
            self._last = entries[-1].version if entries else 0
            log.info("webhook relay: sending the changes after state version %d", self._last)
            return 0
        fresh = [change for change in entries if change.version > self._last]
        for change in fresh:
            self.dispatcher.emit("stage_changed", change.to_json())
        if fresh:
            self._last = fresh[-1].version
        return len(fresh)
