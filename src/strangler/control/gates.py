"""Confirm gates: before the analyzer raises new's share of a rollout (a promotion, or the move
to stage new), it POSTs the proposed step to each gate of the plan and moves only if every one
answers 2xx, as Flagger's confirm-traffic-increase webhooks do.

Rules:
- Only steps that send more users to new are asked. A rollback or a pause never waits on an
  outside system: a gate that is down must not keep a failing canary in front of users.
- Every gate is asked, in order, even after one refuses, so the verdict records what each said.
- An answer is a 2xx or it is a refusal: another status, a timeout, a connection error, or a
  `secret_env` that is not set (an unsigned body is never sent where a signed one is expected).
- Bodies are signed like webhooks (observe.webhooks.sign): `X-Strangler-Signature:
  sha256=<hex>` over the raw body, `X-Strangler-Timestamp` the body's `at`.
- Blocking: each POST waits up to the gate's `timeout_s`. The analyzer's thread calls it.
"""

from __future__ import annotations

import http.client
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import orjson

from strangler.config import GateConfig
from strangler.observe.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, where

CONFIRM_EVENT = "confirm_step"
# No proxies from the environment: a gate is reached directly, like the backends and webhooks.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True, slots=True)
class GateAnswer:
    """What one gate said about one proposed step."""

    url: str  # scheme, host and port only (webhooks.where): gate URLs may carry a secret
    status: int | None  # None when no HTTP answer came (error says why)
    error: str | None
    ms: float  # how long asking took

    @property
    def is_ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300

    def why(self) -> str:
        """The answer as a hold's reason reads it: the status, or the error."""
        return str(self.status) if self.error is None else str(self.error)

    def to_json(self) -> dict[str, object]:
        return {
            "url": self.url,
            "status": self.status,
            "ok": self.is_ok,
            "error": self.error,
            "ms": round(self.ms, 1),
        }


def ask_gates(
    gates: Sequence[GateConfig], step: Mapping[str, object], *, at: float
) -> list[GateAnswer]:
    """Each gate's answer to `step` (the body's fields besides `event` and `at`)."""
    body = orjson.dumps({"event": CONFIRM_EVENT, **step, "at": at})
    return [_ask(gate, body, at) for gate in gates]


def _ask(gate: GateConfig, body: bytes, at: float) -> GateAnswer:
    started = time.monotonic()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "strangler-gates",
        TIMESTAMP_HEADER: str(int(at)),
    }
    if gate.secret_env is not None:
        secret = os.environ.get(gate.secret_env, "")
        if not secret:
            unset = f"environment variable {gate.secret_env} (secret_env) is not set"
            return GateAnswer(where(gate.url), None, unset, 0.0)
        headers[SIGNATURE_HEADER] = sign(secret.encode(), body)
    # The standard library's client, as webhooks use: the compiled hot path's build type-checks
    # the worker's imports, and must not need another package for them.
    request = urllib.request.Request(gate.url, data=body, headers=headers, method="POST")
    status: int | None = None
    error: str | None = None
    try:
        # A gate says yes or no with its status; its body is not read.
        with _OPENER.open(request, timeout=gate.timeout_s) as answer:
            status = int(answer.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.close()
    except (OSError, ValueError, http.client.HTTPException) as exc:
        error = f"{type(exc).__name__}: {exc}"
    return GateAnswer(where(gate.url), status, error, (time.monotonic() - started) * 1000)
