"""SLOs end to end: a real gateway counts its canary's answers into the SLO's series, the
monitor's page alert pauses the canary (audited as `slo:<name>`) and tells a real webhook
receiver, the alert resolves once the errors stop, and the budget gate refuses a promote."""

from __future__ import annotations

from strangler.control.state import Store
from strangler.control.stores import SqliteShadowStore
from tests.integration.conftest import GatewayFactory
from tests.integration.gateway_process import GatewayProcess
from tests.integration.probes import steady_traffic, wait_until
from tests.integration.receivers import Receiver
from tests.integration.upstreams import EchoUpstream

ROUTES = """\
  - name: chaos
    match: "GET /chaos/*rest"
    stage: canary
    canary: {weight: 50, stickiness: ["header:X-User-Id"]}
  - name: other
    match: "GET /other"
"""

# Windows of seconds (tests and demos): the page alert needs a burn of 10 over 6 s and 2 s.
SLOS = """\
slos:
  - name: chaos-api
    routes: [chaos]
    objective: 99
    window_days: 1
    alerts: [{severity: page, burn: 10, long: 6s, short: 2s}]
    min_requests: 20
    on_page: pause
    budget_gate: 50
"""


def _store(gateway: GatewayProcess) -> Store:
    return SqliteShadowStore(gateway.config_path.parent / "strangler.db")


def test_a_page_alert_pauses_the_canary_and_resolves_when_errors_stop(
    upstreams: tuple[EchoUpstream, EchoUpstream],
    start_gateway: GatewayFactory,
) -> None:
    legacy, new = upstreams
    receiver = Receiver()
    try:
        new.app.state.chaos = {"status": 500, "delay_ms": 0}
        hooks = (
            f"webhooks:\n  - {{url: {receiver.url!r}, events: [alert_firing, alert_resolved]}}\n"
        )
        gateway = start_gateway(legacy=legacy.url, new=new.url, routes=ROUTES, extra=SLOS + hooks)
        store = _store(gateway)
        try:
            with steady_traffic(f"{gateway.url}/chaos/x", per_second=60):
                try:
                    wait_until(
                        lambda: any(c.action == "pause" for c in store.audit("chaos")),
                        "the SLO monitor to pause the canary",
                        timeout_s=30,
                    )
                except AssertionError as exc:
                    raise AssertionError(f"{exc}; gateway log:\n{gateway.stderr_text()}") from None
                paused = store.audit("chaos")[0]
                assert (paused.action, paused.actor) == ("pause", "slo:chaos-api")
                assert "chaos-api page alert" in paused.reason and "firing" in paused.reason
                assert store.overrides()["chaos"].status == "paused"
                # The weight stays where it was: a pause stops the rollout, not the canary.
                assert store.overrides()["chaos"].weight_bp == 5000
                state = store.slo_states()["chaos-api"]
                (alert,) = state["alerts"]  # type: ignore[misc]
                assert alert["state"] == "firing"
                assert alert["fired_with"]["long"]["burn_rate"] >= 10
                assert state["budget_left_pct"] < 50  # type: ignore[operator]
                wait_until(
                    lambda: [e["event"] for e in receiver.bodies()] == ["alert_firing"],
                    "the alert_firing webhook",
                )
                firing = receiver.bodies()[0]["data"]
                assert isinstance(firing, dict)
                assert (firing["slo"], firing["severity"]) == ("chaos-api", "page")
                assert firing["windows"]["short"]["burn_rate"] >= 10
                # The errors stop: the short window clears within seconds and the alert
                # resolves, with the numbers of that moment.
                new.app.state.chaos = {"status": 200, "delay_ms": 0}
                wait_until(
                    lambda: (
                        [e["event"] for e in receiver.bodies()]
                        == ["alert_firing", "alert_resolved"]
                    ),
                    "the alert_resolved webhook",
                    timeout_s=20,
                )
            resolved = store.slo_states()["chaos-api"]["alerts"][0]  # type: ignore[index]
            assert resolved["state"] == "resolved"
            assert resolved["resolved_with"]["short"]["burn_rate"] < 10
            # One pause, however many evaluations saw the alert firing.
            assert [c.action for c in store.audit("chaos")] == ["pause"]
        finally:
            store.close()
    finally:
        receiver.close()
