"""Webhooks: the gateway tells other systems what happened (a stage changed, a verdict), the way
Flagger's event webhooks do, off the request path.

Rules:
- Delivery runs on its own thread; `emit` only appends to a bounded queue. What does not fit is
  dropped and counted, never buffered without bound.
- Each delivery is retried with exponential backoff (0.5 s, 1 s, 2 s, 4 s) until a 2xx, then
  given up and counted.
- Every body is signed: `X-Strangler-Signature: sha256=<hex>` is HMAC-SHA256 of the raw body
  with the hook's secret (from the environment variable `secret_env` names), and the body
  carries `timestamp` (also in `X-Strangler-Timestamp`), so a receiver that checks the signature
  and refuses old timestamps refuses replays. The same scheme as GitHub's
  `X-Hub-Signature-256`, with the timestamp inside what is signed.
- `kind: slack` posts Slack's incoming-webhook shape (`{"text": ...}`), unsigned fields aside.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson

log = logging.getLogger("strangler.webhooks")

EVENTS = ("stage_changed", "rollout_verdict", "alert_firing", "alert_resolved", "budget_exhausted")
MAX_QUEUE = 1000
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0)
SIGNATURE_HEADER = "X-Strangler-Signature"
# No proxies from the environment: a hook is reached directly, like the backends.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
TIMESTAMP_HEADER = "X-Strangler-Timestamp"


@dataclass(frozen=True, slots=True)
class Hook:
    """Where one webhook goes and what it hears."""

    url: str
    events: frozenset[str]
    secret: bytes | None
    kind: str = "json"
    timeout_s: float = 5.0


def where(url: str) -> str:
    """A hook's URL for logs and stored records: scheme, host and port only (Slack's URLs carry
    their secret in the path, others in the query or as user:password@)."""
    parts = urlsplit(url)
    # Not netloc: it would keep a user:password@ the URL may carry.
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}/..."


def sign(secret: bytes, body: bytes) -> str:
    """The `X-Strangler-Signature` value for `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def render(hook: Hook, event: str, data: Mapping[str, object], now: float) -> bytes:
    """The body `hook` gets for `event`."""
    if hook.kind == "slack":
        return orjson.dumps({"text": _slack_text(event, data)})
    return orjson.dumps({"event": event, "timestamp": int(now), "data": dict(data)})


def _slack_text(event: str, data: Mapping[str, object]) -> str:
    if event == "stage_changed":
        before = data.get("before") or {}
        after = data.get("after") or {}
        was = before.get("stage") if isinstance(before, dict) else None
        now = after.get("stage") if isinstance(after, dict) else None
        return (
            f"strangler: {data.get('unit')} {was} → {now} by {data.get('actor')}: "
            f"{data.get('reason')}"
        )
    return f"strangler: {event} {orjson.dumps(dict(data)).decode()}"


@dataclass
class _Delivery:
    hook: Hook
    event: str
    body: bytes
    timestamp: int
    attempt: int = 0
    due: float = 0.0


@dataclass
class WebhookStats:
    """What happened to the events handed to the dispatcher (for logs and tests)."""

    delivered: int = 0
    retried: int = 0
    failed: int = 0
    dropped: int = 0


class WebhookDispatcher:
    """Delivers events to hooks on a daemon thread; `emit` never blocks."""

    def __init__(
        self,
        hooks: list[Hook],
        *,
        clock: Callable[[], float] = time.time,
        max_queue: int = MAX_QUEUE,
        on_outcome: Callable[[str, str], None] | None = None,
    ) -> None:
        self.hooks = hooks
        # (event, "delivered" | "failed" | "dropped"): the worker's counters, for /metrics.
        self._on_outcome = on_outcome
        self.stats = WebhookStats()
        self._clock = clock
        self._max_queue = max_queue
        self._queue: collections.deque[_Delivery] = collections.deque()
        self._lock = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="strangler-webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        self._thread.join(timeout_s)

    def emit(self, event: str, data: Mapping[str, object]) -> None:
        now = self._clock()
        with self._lock:
            for hook in self.hooks:
                if event not in hook.events:
                    continue
                if len(self._queue) >= self._max_queue:
                    self.stats.dropped += 1
                    self._count(event, "dropped")
                    continue
                body = render(hook, event, data, now)
                self._queue.append(_Delivery(hook, event, body, int(now), due=0.0))
            self._lock.notify_all()

    def _count(self, event: str, result: str) -> None:
        if self._on_outcome is not None:
            self._on_outcome(event, result)

    def _next(self) -> _Delivery | None:
        with self._lock:
            while not self._stop:
                now = time.monotonic()
                ready = next((d for d in self._queue if d.due <= now), None)
                if ready is not None:
                    self._queue.remove(ready)
                    return ready
                wait = min((d.due for d in self._queue), default=now + 1.0) - now
                self._lock.wait(max(0.01, min(wait, 1.0)))
            return None

    def _run(self) -> None:
        while (delivery := self._next()) is not None:
            self._deliver(delivery)

    def _deliver(self, delivery: _Delivery) -> None:
        hook = delivery.hook
        headers = {"Content-Type": "application/json", "User-Agent": "strangler-webhooks"}
        headers[TIMESTAMP_HEADER] = str(delivery.timestamp)
        if hook.secret is not None:
            headers[SIGNATURE_HEADER] = sign(hook.secret, delivery.body)
        # The standard library's client: this module is type-checked with the compiled hot
        # path's build, which must not need another package for it.
        request = urllib.request.Request(
            hook.url, data=delivery.body, headers=headers, method="POST"
        )
        try:
            with _OPENER.open(request, timeout=hook.timeout_s) as answer:
                status = int(answer.status)
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (OSError, ValueError) as exc:
            status = 0
            problem = f"{type(exc).__name__}: {exc}"
        if 200 <= status < 300:
            with self._lock:
                self.stats.delivered += 1
            self._count(delivery.event, "delivered")
            return
        if status:
            problem = f"answered {status}"
        with self._lock:
            if delivery.attempt < len(RETRY_DELAYS_S):
                delivery.due = time.monotonic() + RETRY_DELAYS_S[delivery.attempt]
                delivery.attempt += 1
                self.stats.retried += 1
                self._queue.append(delivery)
                self._lock.notify_all()
                return
            self.stats.failed += 1
        self._count(delivery.event, "failed")
        log.warning(
            "webhook %s: %s not delivered after %d attempts (%s)",
            where(hook.url),
            delivery.event,
            delivery.attempt + 1,
            problem,
        )
