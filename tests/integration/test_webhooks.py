"""Webhooks against a real receiver: a stage change made with the CLI reaches it once, signed,
and a receiver that fails is retried until it answers 2xx."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator

import httpx
import orjson
import pytest

from strangler.config import WebhookConfig
from strangler.observe.webhooks import Hook, WebhookDispatcher, render
from tests.integration.conftest import GatewayFactory
from tests.integration.gateway_process import run_cli
from tests.integration.probes import wait_until
from tests.integration.receivers import Receiver
from tests.integration.upstreams import EchoUpstream

SECRET = "whsec-test-0123456789"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


ROUTES = '  - {name: projects, match: "GET /projects(/:id)"}\n'


def test_a_cli_change_reaches_the_receiver_signed_after_retries(
    start_gateway: GatewayFactory,
    upstreams: tuple[EchoUpstream, EchoUpstream],
    receiver: Receiver,
) -> None:
    legacy, new = upstreams
    receiver.statuses = [500, 500]
    gw = start_gateway(
        legacy=legacy.url,
        new=new.url,
        routes=ROUTES,
        extra=(
            f"webhooks:\n  - {{url: {receiver.url!r}, events: [stage_changed], "
            "secret_env: STRANGLER_TEST_HOOK_SECRET}\n"
        ),
        env={"STRANGLER_TEST_HOOK_SECRET": SECRET},
    )
    gw.wait_for_log("webhook relay: sending the changes after state version")
    promoted = run_cli("promote", "projects", "-r", "shadow it", "--config", str(gw.config_path))
    assert promoted.returncode == 0, promoted.stderr
    # Two 500s, then 2xx: three attempts of one delivery, 0.5 s and 1 s apart.
    wait_until(lambda: len(receiver.received) >= 3, "the third attempt", timeout_s=15)
    statuses = [status for _, _, status in receiver.received]
    assert statuses[:3] == [500, 500, 204]
    bodies = {body for _, body, _ in receiver.received}
    assert len(bodies) == 1, "every attempt carries the same body"
    headers, body, _ = receiver.received[-1]
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Strangler-Signature"] == f"sha256={expected}"
    event = orjson.loads(body)
    assert event["event"] == "stage_changed"
    assert headers["X-Strangler-Timestamp"] == str(event["timestamp"])
    data = event["data"]
    assert (data["unit"], data["action"], data["reason"]) == ("projects", "promote", "shadow it")
    assert (data["before"]["stage"], data["after"]["stage"]) == ("legacy", "shadow")
    assert data["actor"].startswith("cli:")
    # Sent once: the relay moved past it.
    assert len(receiver.received) == 3
    assert gw.admin_url is not None
    delivered = 'strangler_webhook_deliveries_total{event="stage_changed",result="delivered"} 1'
    wait_until(
        lambda: (
            delivered in httpx.get(gw.admin_url + "/metrics", trust_env=False).text.splitlines()
        ),
        "the delivery counted in /metrics",
    )


def test_a_full_queue_drops_and_counts_and_slack_gets_text(receiver: Receiver) -> None:
    hook = Hook(url=receiver.url, events=frozenset({"stage_changed"}), secret=None)
    dispatcher = WebhookDispatcher([hook], max_queue=2)
    # Not started: nothing leaves the queue, so the third event does not fit.
    for unit in ("a", "b", "c"):
        dispatcher.emit("stage_changed", {"unit": unit})
    dispatcher.emit("rollout_verdict", {"unit": "a"})  # not an event this hook hears
    assert dispatcher.stats.dropped == 1
    dispatcher.start()
    wait_until(lambda: dispatcher.stats.delivered == 2, "two deliveries")
    dispatcher.stop()
    assert [orjson.loads(body)["data"]["unit"] for _, body, _ in receiver.received] == ["a", "b"]
    assert all("X-Strangler-Signature" not in headers for headers, _, _ in receiver.received)
    slack = Hook(url=receiver.url, events=frozenset({"stage_changed"}), secret=None, kind="slack")
    text = orjson.loads(
        render(
            slack,
            "stage_changed",
            {
                "unit": "projects",
                "actor": "analyzer",
                "reason": "5xx on new",
                "before": {"stage": "canary"},
                "after": {"stage": "legacy"},
            },
            0,
        )
    )
    assert text == {"text": "strangler: projects canary → legacy by analyzer: 5xx on new"}


def test_a_webhook_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="expected an http:// or https:// URL"):
        WebhookConfig(url="ftp://example.com/x")
