"""`GET /api/v1/events`: what changed in the control store, as Server-Sent Events, so an open
dashboard shows a change made anywhere (the CLI in another terminal, the analyzer, an SLO
alert, another replica) within a second.

Rules:
- One poller per admin app, running only while someone listens: every POLL_INTERVAL_S it reads
  the store's state version (cheap; workers read it as often), and the audit entries past the
  last one seen; every VERDICT_EVERY polls also each unit's newest verdict, the reviews and the
  SLO alert states. Store reads run in a thread (`asyncio.to_thread`), never on the admin's loop,
  which with one worker is the loop that proxies traffic.
- Event kinds: `change` (an audit entry: a stage, weight or status change, as
  GET /api/v1/audit shows it), `verdict` (a unit's newest analyzer verdict), `review` (a route
  whose reviewed paths changed) and `alert` (an SLO alert started or stopped firing). Each
  `data` is one JSON object. The first poll only records where the store stands.
- Each subscriber has a bounded queue (QUEUE_SIZE events). A subscriber too slow to keep up is
  disconnected rather than buffered without bound; EventSource reconnects (`retry`) and the
  page refetches what it shows.
- A stream ends after MAX_STREAM_S, and at once when the gateway drains: the client reconnects
  and is authenticated again, so a revoked token or an ended session stops receiving events
  within that time.
- Scope read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import StreamingResponse

from strangler.admin.auth import AUTH_RESPONSES, require_read
from strangler.admin.store_access import StoreAccess
from strangler.admin.view import GatewayView
from strangler.control.effective import unit_of
from strangler.control.state import Store
from strangler.control.store import StoreUnavailable

log = logging.getLogger("strangler.admin")

POLL_INTERVAL_S = 0.25
# Verdicts, reviews and alerts cost a query per unit: read once a second, not every poll.
VERDICT_EVERY = 4
QUEUE_SIZE = 256
HEARTBEAT_S = 15.0
MAX_STREAM_S = 300.0
RETRY_MS = 1000
_AUDIT_BATCH = 100


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    data: dict[str, Any]

    def encode(self) -> bytes:
        return b"event: " + self.kind.encode() + b"\ndata: " + orjson.dumps(self.data) + b"\n\n"


@dataclass(slots=True)
class _Seen:
    """Where the store stood at the last poll."""

    version: int
    verdicts: dict[str, tuple[float, str]]
    reviewed: dict[str, frozenset[str]]
    firing: frozenset[tuple[str, str]]


class EventHub:
    """Fans store changes out to subscribers' bounded queues; polls only while any listen."""

    def __init__(self, gateway: GatewayView, store_access: StoreAccess) -> None:
        self._gateway = gateway
        self._store_access = store_access
        self._subscribers: set[asyncio.Queue[Event | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self.dropped_subscribers = 0

    def __repr__(self) -> str:
        polling = "polling" if self._task is not None and not self._task.done() else "idle"
        return f"<EventHub {len(self._subscribers)} subscribers, {polling}>"

    def subscribe(self) -> asyncio.Queue[Event | None]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._poll(), name="admin-events")
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event | None]) -> None:
        self._subscribers.discard(queue)

    def _publish(self, event: Event) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                # Too slow: cut it off (None ends its stream) instead of buffering more.
                self._subscribers.discard(queue)
                self.dropped_subscribers += 1
                with contextlib.suppress(asyncio.QueueFull):
                    queue.get_nowait()
                    queue.put_nowait(None)

    async def _poll(self) -> None:
        seen: _Seen | None = None
        tick = 0
        while self._subscribers:
            try:
                seen, events = await asyncio.to_thread(self._read, seen, tick % VERDICT_EVERY == 0)
            except StoreUnavailable:
                events = []  # StoreAccess logged it; the next poll tries again
            except Exception:
                log.exception("admin events: polling the store failed")
                events = []
            for event in events:
                self._publish(event)
            tick += 1
            await asyncio.sleep(POLL_INTERVAL_S)

    def _read(self, seen: _Seen | None, is_full: bool) -> tuple[_Seen, list[Event]]:
        """Blocking: runs in a worker thread. The events since `seen`, and the new `seen`."""
        store = self._store_access.get()
        version = store.state_version()
        events: list[Event] = []
        if seen is None:
            return self._snapshot(store, version), events
        if version > seen.version:
            fresh = [c for c in store.audit(limit=_AUDIT_BATCH) if c.version > seen.version]
            events.extend(Event("change", change.to_json()) for change in reversed(fresh))
            seen.version = version
        if is_full:
            now = self._snapshot(store, version)
            for unit, mark in now.verdicts.items():
                if seen.verdicts.get(unit) != mark:
                    events.append(Event("verdict", {"unit": unit, "outcome": mark[1]}))
            for route in now.reviewed.keys() | seen.reviewed.keys():
                if now.reviewed.get(route) != seen.reviewed.get(route):
                    events.append(Event("review", {"route": route}))
            for slo, severity in now.firing ^ seen.firing:
                state = "firing" if (slo, severity) in now.firing else "resolved"
                events.append(Event("alert", {"slo": slo, "severity": severity, "state": state}))
            return now, events
        return seen, events

    def _snapshot(self, store: Store, version: int) -> _Seen:
        units = sorted({unit_of(route) for route in self._gateway.snapshot.config.routes})
        verdicts = {}
        for unit in units:
            newest = store.verdicts(unit, limit=1)
            if newest:
                verdicts[unit] = (newest[0].ended_at, newest[0].outcome)
        return _Seen(version, verdicts, store.reviewed(), _firing(store.slo_states()))


def _firing(states: dict[str, dict[str, object]]) -> frozenset[tuple[str, str]]:
    """(SLO, alert severity) of every alert the SLO monitor last saw firing."""
    firing: set[tuple[str, str]] = set()
    for slo, state in states.items():
        alerts = state.get("alerts")
        for alert in alerts if isinstance(alerts, list) else []:
            if isinstance(alert, dict) and alert.get("state") == "firing":
                firing.add((slo, str(alert.get("severity"))))
    return frozenset(firing)


def events_router(gateway: GatewayView, hub: EventHub) -> APIRouter:
    router = APIRouter(prefix="/api/v1/events", tags=["events"], responses=AUTH_RESPONSES)

    @router.get(
        "",
        dependencies=[Depends(require_read)],
        summary="Changes as Server-Sent Events: change, verdict, review, alert",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
    )
    async def events(request: Request) -> StreamingResponse:
        return StreamingResponse(
            _stream(gateway, hub),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return router


async def _stream(gateway: GatewayView, hub: EventHub) -> AsyncIterator[bytes]:
    queue = hub.subscribe()
    started = sent = time.monotonic()
    try:
        yield f"retry: {RETRY_MS}\n: connected\n\n".encode()
        while not gateway.is_draining and time.monotonic() - started < MAX_STREAM_S:
            try:
                event = await asyncio.wait_for(queue.get(), timeout=1.0)
            except TimeoutError:
                # A comment now and then keeps idle proxies from closing the stream.
                if time.monotonic() - sent >= HEARTBEAT_S:
                    sent = time.monotonic()
                    yield b": keepalive\n\n"
                continue
            if event is None:
                return
            sent = time.monotonic()
            yield event.encode()
    finally:
        hub.unsubscribe(queue)
