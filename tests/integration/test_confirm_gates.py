"""Confirm gates against a real receiver on 127.0.0.1: the analyzer asks before every step that
sends more users to new, holds while a gate says no (and asks again at the next interval), moves
once every gate says yes, and never asks before a rollback. A real SQLite store and an injected
clock; the windows are what workers would flush."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from strangler.config import parse_config
from strangler.control.analyzer import FLUSH_GRACE_S, Analyzer
from strangler.control.state import Store, VerdictRecord, WindowDelta
from strangler.control.stores import SqliteShadowStore
from strangler.observe.webhooks import where
from strangler.rollout import LatencyHistogram

SECRET = "gate-secret-0123456789"
SECRET_ENV = "STRANGLER_TEST_GATE_SECRET"
START = 1000.0
INTERVAL_S = 10


class Gate:
    """An HTTP server that answers each POST with the next of `statuses` (then 200), and
    records what it was sent."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[dict[str, str], bytes]] = []
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                gate.received.append((dict(self.headers.items()), body))
                status = gate.statuses.pop(0) if gate.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        # Listening once constructed: a POST that comes before serve_forever runs waits in the
        # backlog, so no readiness wait is needed.
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/confirm"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def bodies(self) -> list[dict[str, object]]:
        return [orjson.loads(body) for _, body in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


@pytest.fixture
def gate() -> Iterator[Gate]:
    made = Gate([403])
    yield made
    made.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = SqliteShadowStore(tmp_path / "s.db")
    yield opened
    opened.close()


def _config(gate_url: str, secret_env: str = SECRET_ENV) -> str:
    return f"""\
listen: 127.0.0.1:0
backends:
  legacy: {{url: "http://127.0.0.1:3000"}}
  new: {{url: "http://127.0.0.1:8080"}}
routes:
  - name: api
    match: "GET /api/*rest"
    stage: canary
    canary:
      weight: 5
      plan:
        steps: [5, 25, 100]
        interval_s: {INTERVAL_S}
        min_requests: 10
        gates: [{{url: "{gate_url}", timeout_s: 5, secret_env: {secret_env}}}]
"""


class Rollout:
    """The analyzer of one config on `store`, its clock moved one interval at a time."""

    def __init__(self, store: Store, config: str) -> None:
        base = parse_config(config, "strangler.yaml")
        self.store = store
        self.now = START
        self.analyzer = Analyzer(store, lambda: base, holder="test", clock=lambda: self.now)
        self.analyzer.run_once()  # starts the rollout the YAML describes, at 5 %
        self.origin = 0
        self.intervals = 0

    def judge(self, *, new_errors: int = 0) -> VerdictRecord:
        """One interval's answers (20 a side, `new_errors` of new's 5xx), then its verdict.
        Intervals are aligned on the step's start, which a move resets."""
        origin = math.ceil(self.store.overrides()["api"].step_started_at)
        if origin != self.origin:
            self.origin, self.intervals = origin, 0
        latency = LatencyHistogram()
        for _ in range(20):
            latency.record(0.010)
        slot = origin + self.intervals * INTERVAL_S + 1
        for side, errors in (("legacy", 0), ("new", new_errors)):
            statuses = {"2": 20 - errors, "5": errors} if errors else {"2": 20}
            self.store.add_windows(
                [WindowDelta("api", side, slot, 20, errors, statuses, latency.to_json())]
            )
        self.intervals += 1
        self.now = origin + self.intervals * INTERVAL_S + FLUSH_GRACE_S + 1
        [record] = self.analyzer.run_once()
        return record

    def weight_bp(self) -> int | None:
        return self.store.overrides()["api"].weight_bp


def test_a_gate_that_says_no_holds_the_step_and_the_next_interval_asks_again(
    store: Store,
    gate: Gate,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    rollout = Rollout(store, _config(gate.url))
    with caplog.at_level(logging.INFO, logger="strangler.analyzer"):
        held = rollout.judge()
    # A passing interval, but the gate answered 403: nothing moved, and the verdict says why.
    assert (held.outcome, held.action) == ("pass", "none")
    [answer] = held.verdict["gates"]  # type: ignore[misc]
    assert isinstance(answer, dict) and isinstance(answer["ms"], float)
    assert {k: v for k, v in answer.items() if k != "ms"} == {
        "url": where(gate.url),
        "status": 403,
        "ok": False,
        "error": None,
    }
    assert held.verdict["reason"] == (
        f"1 passing interval at 5 %: promote to 25 %; held by gate {where(gate.url)}: 403"
    )
    assert rollout.weight_bp() == 500
    assert [c.action for c in store.audit("api")] == ["start"]
    holds = [r for r in caplog.records if r.getMessage().startswith("canary held")]
    assert [r.levelname for r in holds] == ["INFO"]
    assert (
        holds[0]
        .getMessage()
        .startswith(
            f"canary held: route api stays at 5 %: gate {where(gate.url)} answered 403; "
            "1 passing interval at 5 %: promote to 25 % (pass: "
        )
    )

    # The next passing interval asks again, for the same step; the gate says yes this time.
    moved = rollout.judge()
    assert (moved.outcome, moved.action) == ("pass", "promote")
    [answer] = moved.verdict["gates"]  # type: ignore[misc]
    assert isinstance(answer, dict) and (answer["status"], answer["ok"]) == (200, True)
    assert moved.verdict["reason"] == "1 passing interval at 5 %: promote to 25 %"
    assert rollout.weight_bp() == 2500
    promoted = store.audit("api")[0]
    assert (promoted.action, promoted.actor, promoted.after["weight_bp"]) == (
        "promote",
        "analyzer",
        2500,
    )
    assert promoted.evidence is not None
    assert promoted.evidence["gates"] == moved.verdict["gates"]

    # The step to 100 % is the move to stage new: it is asked about too.
    done = rollout.judge()
    assert done.action == "complete"
    assert store.overrides()["api"].stage == "new"

    first, second, third = gate.bodies()
    assert {k: v for k, v in first.items() if k != "verdict"} == {
        "event": "confirm_step",
        "unit": "api",
        "routes": ["api"],
        "from_weight": 5.0,
        "to_weight": 25.0,
        "to_stage": "canary",
        "at": START + INTERVAL_S + FLUSH_GRACE_S + 1,
    }
    # The interval's verdict as judged, without what the analyzer added after asking.
    assert first["verdict"] == {
        k: v for k, v in held.verdict.items() if k not in ("reason", "gates")
    }
    assert (second["from_weight"], second["to_weight"], second["to_stage"]) == (5.0, 25.0, "canary")
    assert (third["from_weight"], third["to_weight"], third["to_stage"]) == (25.0, 100.0, "new")


def test_a_gates_request_is_signed_like_a_webhook(
    store: Store, gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    Rollout(store, _config(gate.url)).judge()
    [(headers, body)] = gate.received
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Strangler-Signature"] == f"sha256={expected}"
    assert headers["X-Strangler-Timestamp"] == str(int(START + INTERVAL_S + FLUSH_GRACE_S + 1))
    assert headers["Content-Type"] == "application/json"


def test_a_rollback_never_waits_on_a_gate(store: Store, gate: Gate) -> None:
    rollout = Rollout(store, _config(gate.url))
    failed = rollout.judge(new_errors=10)
    assert (failed.outcome, failed.action) == ("fail", "rollback")
    assert "gates" not in failed.verdict
    assert gate.received == []
    assert store.overrides()["api"].stage == "legacy"


def test_a_gate_whose_secret_is_not_set_holds_without_sending_unsigned(
    store: Store,
    gate: Gate,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    rollout = Rollout(store, _config(gate.url))
    with caplog.at_level(logging.INFO, logger="strangler.analyzer"):
        held = rollout.judge()
    assert held.action == "none"
    error = f"environment variable {SECRET_ENV} (secret_env) is not set"
    assert held.verdict["gates"] == [
        {"url": where(gate.url), "status": None, "ok": False, "error": error, "ms": 0.0}
    ]
    assert str(held.verdict["reason"]).endswith(f"; held by gate {where(gate.url)}: {error}")
    assert gate.received == []
    assert rollout.weight_bp() == 500
    # Nobody decided: that is a WARNING, once for the interval.
    assert [r.levelname for r in caplog.records if "canary held" in r.getMessage()] == ["WARNING"]


def test_an_unreachable_gate_holds_with_the_error(store: Store) -> None:
    closed = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    url = f"http://127.0.0.1:{closed.server_address[1]}/confirm"
    closed.server_close()  # nothing listens there any more: the connection is refused
    rollout = Rollout(store, _config(url).replace(f", secret_env: {SECRET_ENV}", ""))
    held = rollout.judge()
    assert held.action == "none"
    [answer] = held.verdict["gates"]  # type: ignore[misc]
    assert isinstance(answer, dict)
    assert (answer["status"], answer["ok"]) == (None, False)
    assert "ConnectionRefusedError" in str(answer["error"]) or "URLError" in str(answer["error"])
    assert rollout.weight_bp() == 500


def test_a_gate_url_s_secrets_stay_out_of_verdicts_and_logs(
    store: Store, gate: Gate, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Hook-style URLs carry their credential in the path or the query; a read-scope token
    # reads verdicts, and logs go to many places: only scheme, host and port are kept.
    monkeypatch.setenv(SECRET_ENV, SECRET)
    secret_url = gate.url + "/T0-s3cret?token=s3cret"
    with caplog.at_level(logging.INFO, logger="strangler.analyzer"):
        held = Rollout(store, _config(secret_url)).judge()
    assert held.action == "none" and len(gate.received) == 1
    assert "s3cret" not in orjson.dumps(held.verdict).decode()
    assert "s3cret" not in caplog.text
    assert (
        where("https://user:pw@hooks.example:8443/x/s3cret?k=v") == "https://hooks.example:8443/..."
    )
