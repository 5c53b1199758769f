"""The demo, live in the browser: the dashboard open on the demo's canary route while the demo's
traffic flows shows the analyzer step the canary up on its own, then, once the chaos switch
breaks the new app, roll it back to legacy, without a reload (the page follows the event
stream); the overview then shows the SLO's page alert firing.

The stack is tests/integration/demo_stack.py's (demo.yaml, the real gateway, legacy and new
apps, the traffic generator, a plan shortened to 1 s intervals); the login is a write token
made the way `make demo` makes the one its banner prints.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from strangler.cli.tokens import create_token
from strangler.demo.new_app import CHAOS_PATH
from strangler.demo.traffic import CANARY_ROUTE
from tests.e2e.browser import check, launch_chromium, log_in, open_page, require_browser
from tests.integration.demo_stack import PLAN, CanaryStack, demo_stack, demo_traffic

require_browser()

from playwright.sync_api import Browser, expect  # noqa: E402

# A step is judged 2 s after its 1 s interval ends; the page hears of it within a second.
STEP_DEADLINE_MS = 15_000


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CanaryStack]:
    with demo_stack(tmp_path_factory.mktemp("demo")) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


def test_the_demo_canary_promotes_itself_and_rolls_back_on_the_chaos_switch_live(
    browser: Browser, stack: CanaryStack, tmp_path: Path
) -> None:
    admin_url = stack.gateway.admin_url
    assert admin_url is not None and stack.gateway.url is not None
    # The way in that `make demo`'s banner prints: a write token of the demo's own.
    _, token = create_token(stack.config_path, "demo", "write", "demo")
    page = open_page(browser, admin_url, 1280, 800)
    log_in(page, token)
    page.goto(f"{admin_url}/#/routes/{CANARY_ROUTE}")
    figures = page.locator(".figures")
    stage = figures.locator("dd .stage").first
    weight = figures.locator("dt", has_text="Canary weight").locator(
        "xpath=following-sibling::dd[1]"
    )
    status = figures.locator("dt", has_text="Status").locator("xpath=following-sibling::dd[1]")
    steps = ", ".join(str(step) for step in PLAN["steps"])
    expect(stage).to_have_text("canary")
    expect(weight).to_have_text(f"25 % of users (steps {steps})")
    # Gone if the page reloads: what follows must reach this very page.
    page.evaluate("window.sameDocument = true")

    started = time.monotonic()
    with demo_traffic(stack.gateway.url) as stats:
        # Healthy new app: the analyzer promotes the canary by itself.
        expect(weight).to_have_text(re.compile(r"^(50|100) % of users"), timeout=STEP_DEADLINE_MS)
        stepped_s = time.monotonic() - started
        expect(page.locator(".timeline li").last).to_contain_text("promote")
        expect(page.locator(".timeline li").last).to_contain_text("by analyzer")

        # The banner's chaos switch: the new app answers 503 from now on.
        flipped = httpx.post(stack.new_url + CHAOS_PATH, json={"mode": "fail"}, trust_env=False)
        assert flipped.json()["mode"] == "fail"
        flipped_at = time.monotonic()
        expect(stage).to_have_text("legacy", timeout=STEP_DEADLINE_MS)
        rolled_back_s = time.monotonic() - flipped_at
        expect(status).to_have_text("rolled_back")
        expect(page.locator(".timeline li").last).to_contain_text("rollback: canary → legacy")
        expect(page.locator(".timeline li").last).to_contain_text("by analyzer")
        first_verdict = page.locator("section[aria-labelledby=verdicts-title] tbody tr").first
        expect(first_verdict.locator("td").nth(2)).to_have_text("fail")
        expect(first_verdict.locator("td").nth(3)).to_have_text("rollback")
        assert page.evaluate("window.sameDocument") is True
        check(page, tmp_path, "demo-rolled-back-wide")

        # The demo's SLO saw new's 503s: its page alert fires, on the overview.
        page.get_by_role("link", name="Overview", exact=True).click()
        alert = page.locator("li.alert", has_text="page projects-show-new")
        expect(alert).to_contain_text("page projects-show-new: burning", timeout=STEP_DEADLINE_MS)
        check(page, tmp_path, "demo-overview-alert-wide")
    print(
        f"stepped up {stepped_s:.1f} s after the traffic began, rolled back {rolled_back_s:.1f} s "
        f"after the chaos switch; canary answers {dict(stats.canary)}; screenshots in {tmp_path}"
    )
    assert stats.canary_5xx.get("new", 0) > 0 and stats.errors == {}
    page.close()
