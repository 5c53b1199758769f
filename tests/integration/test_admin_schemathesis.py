"""Schemathesis against the admin API: every operation of /openapi.json, fuzzed from the
document itself, must never answer 5xx and must answer only what the document says (status,
content type, headers, body schema); an authenticated operation must refuse the same request
once its credentials are removed or wrong.

The app is the real one (`create_admin_app`) over a real SQLite store, driven over ASGI with a
write token made the way `strangler token create` makes it, so the authenticated operations
are exercised past their 401. Deterministic (derandomized Hypothesis) and small: seconds.

The schema is loaded at import (Schemathesis parametrizes the test from it), from an app whose
view starts on a placeholder snapshot: the OpenAPI document does not depend on it, and nothing
is opened until a request needs the store. The module fixture then points the view at the
config in tmp, as a reload would. (`schemathesis.pytest.from_fixture` would avoid the
placeholder, but 4.32 reads `request.node._nodeid`, which pytest 9 no longer has.)
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from strangler.admin import create_admin_app
from strangler.admin.auth import SESSION_COOKIE
from strangler.cli.tokens import create_token
from strangler.config import Config, parse_config
from strangler.control.state import SloSample
from strangler.control.stores import open_store
from strangler.observe.exposition import MetricsHub
from strangler.observe.metrics import SIDE_LEGACY, WorkerMetrics
from strangler.observe.slo.evaluator import evaluate
from strangler.runtime.snapshot import Snapshot
from strangler.runtime.snapshot_build import build_snapshot

SECRET_VAR = "STRANGLER_SCHEMATHESIS_SECRET_KEY_BASE"
BACKENDS = """\
backends:
  legacy: {url: "http://127.0.0.1:3000"}
  new: {url: "http://127.0.0.1:8080"}
"""
# With `rails:`, so the JWKS answers 200 with keys (without it, a 404 problem); with SLOs, so
# the SLO and alert operations answer real states (see `_store_a_firing_evaluation`).
CONFIG = f"""{BACKENDS}\
store: {{path: admin.db}}
rails:
  cookie: _app_session
  secret_key_base_env: {SECRET_VAR}
identity:
  keys_path: keys.json
routes:
  - name: projects
    match: "GET /projects"
    stage: shadow
slos:
  - name: projects-api
    routes: [projects]
    objective: 99.9
  - name: projects-latency
    routes: [projects]
    objective: 99
    latency_ms: 300
    side: new
"""
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
]


class View:
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.is_draining = False
        self.degraded: str | None = None
        # A hub with one worker's traffic in it, so /metrics renders a real document.
        self.metrics_hub = MetricsHub(version="test", compiled=False)
        metrics = WorkerMetrics()
        metrics.request("projects", "shadow", SIDE_LEGACY, 200, 0.002)
        requests, _, _ = metrics.take_delta()
        self.metrics_hub.add("0", {"pid": os.getpid(), "worker": "0", "requests": requests})

    def refresh_metrics(self) -> None:
        pass

    def backend_health(self) -> dict[str, dict[str, Any]]:
        # A balanced backend with one server down, so /readyz and the route reports carry it.
        servers = [
            {"server": "http://127.0.0.1:9", "state": "down", "weight": 1,
             "ejected_until": None, "active_requests": 0},
            {"server": "http://127.0.0.1:10", "state": "up", "weight": 1,
             "ejected_until": None, "active_requests": 0},
        ]  # fmt: skip
        return {"legacy": {"balance": "round_robin", "healthy": 1, "servers": servers}}

    @property
    def base(self) -> Config:
        return self.snapshot.config


def _snapshot(text: str, source: Path) -> Snapshot:
    return build_snapshot(parse_config(text, str(source)), source=str(source))


VIEW = View(_snapshot(BACKENDS, Path("placeholder/strangler.yaml")))
APP = create_admin_app(VIEW)
# The event stream never ends on its own (test_admin_events.py covers it over a real socket).
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).exclude(path="/api/v1/events")


@pytest.fixture(scope="module")
def write_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config_path = tmp_path_factory.mktemp("admin-schemathesis") / "strangler.yaml"
    config_path.write_text(CONFIG)
    with pytest.MonkeyPatch.context() as env:
        env.setenv(SECRET_VAR, "ab" * 64)
        VIEW.snapshot = _snapshot(CONFIG, config_path)
    _, token = create_token(config_path, "schemathesis", "write", "tester")
    _store_a_firing_evaluation(VIEW.snapshot)
    yield token
    APP.state.store_access.close()


def _store_a_firing_evaluation(snapshot: Snapshot) -> None:
    """A monitor's evaluation of the first SLO with its page alerts firing (nested windows set,
    not null) and its budget exhausted; the second SLO stays computed from an empty series."""
    slo = snapshot.config.slos[0]
    now = time.time()
    state = evaluate(slo, [SloSample(now - 120, 900, 100)], now, None)
    store = open_store(snapshot.config.store, snapshot.source)
    try:
        store.put_slo_state(slo.name, state.to_json(), now)
    finally:
        store.close()


@schema.parametrize()
@hypothesis.settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)
def test_every_admin_operation_conforms_to_its_document(
    case: schemathesis.Case, write_token: str
) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {write_token}"}, checks=CHECKS)


def test_a_browser_following_the_login_links_gets_documented_answers(write_token: str) -> None:
    """Stateful: log in, then follow the document's links (who am I; log out with the CSRF
    token the login answered), the way the dashboard will, with the cookie and nothing else."""

    class Browser(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            # Holds the session cookie between steps, as a browser's cookie jar does.
            self.jar = requests.Session()

        def before_call(self, case: schemathesis.Case) -> None:
            # A browser sends no Authorization header and only the cookie its jar holds, while
            # Schemathesis fills in both declared schemes with values of its own.
            if case.headers is not None:
                case.headers.pop("Authorization", None)
            if case.cookies is not None:
                case.cookies.pop(SESSION_COOKIE, None)
            meta = case.meta
            is_positive = meta is None or meta.generation.mode is GenerationMode.POSITIVE
            if case.operation.label == "POST /api/v1/session" and is_positive:
                case.body = {"token": write_token}  # a login that works, so links are followed

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, object]:
            return {"session": self.jar}

        def after_call(self, response: schemathesis.Response, case: schemathesis.Case) -> None:
            for line in response.headers.get("set-cookie", []):
                name, _, rest = line.partition("=")
                value = rest.split(";", 1)[0]
                if name == SESSION_COOKIE and "Max-Age=0" in line:
                    self.jar.cookies.clear()
                elif name == SESSION_COOKIE:
                    self.jar.cookies.set(name, value)

        def validate_response(
            self,
            response: schemathesis.Response,
            case: schemathesis.Case,
            additional_checks: object = None,
            **kwargs: object,
        ) -> None:
            # Not ignored_auth: the cookie comes from the jar, not from the case, so that check
            # can't tell which credentials were sent (the per-operation test above runs it).
            checks = [check for check in CHECKS if check is not ignored_auth]
            case.validate_response(response, checks=checks, transport_kwargs=kwargs)

    Browser.run(
        settings=hypothesis.settings(
            max_examples=25,
            derandomize=True,
            deadline=None,
            stateful_step_count=4,
            suppress_health_check=[hypothesis.HealthCheck.too_slow],
        )
    )
