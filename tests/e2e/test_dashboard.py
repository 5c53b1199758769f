"""The dashboard in a real browser (Debian's Chromium, driven by Playwright) against a real
gateway: log in, the routes table, promote and roll back from the route page, a CLI change
showing on the open page within a second (the event stream), a reload keeping the session, a
read token that cannot act, a route's traffic charts and the share on new (uPlot, from the
store's route series), a weight set from the keyboard moving that share under real traffic, a
promote forced past a closed evidence gate and audited as forced, shadow difference paths
reviewed (Noise, Accept) until the parity changes, the identity screen, and axe-core's
accessibility check on every screen and open dialog at 1280x800 and 390 px wide. Screenshots of
every screen go to the test's tmp folder.

One gateway and one browser for the module: a browser start costs a second or two. Each test
moves routes of its own, so none depends on another having run (xdist may split them). The
gateway's store flushes shadow results every 0.5 s and traffic every second (instead of 2 s and
15 s), so what the page shows follows the traffic within a few seconds.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from strangler.control.store import TrafficDelta
from strangler.control.stores import SqliteShadowStore
from strangler.rollout import LatencyHistogram
from tests.e2e.browser import (
    check,
    create_token,
    launch_chromium,
    log_in,
    open_page,
    require_browser,
)
from tests.integration.gateway_process import GatewayProcess, run_cli, write_config
from tests.integration.probes import wait_until
from tests.integration.upstreams import EchoUpstream

ROUTES = """\
  - name: projects.index
    match: "GET /api/projects"
    stage: legacy
  - name: projects.show
    match: "GET /api/projects/:id"
    stage: shadow
    # Legacy and new differ at $.name (each says its name) and $.headers[*] (new gets headers
    # legacy doesn't): two difference paths. The header values themselves are not compared.
    diff: {ignore: ["$.headers[*][*]"]}
  - name: tasks
    match: "GET /api/tasks"
    stage: canary
    canary: {weight: 10}
  - name: reports
    match: "GET /api/reports"
    stage: shadow
"""
ROUTE_NAMES = ["projects.index", "projects.show", "reports", "tasks"]
SECRET_ENV = {"STRANGLER_TEST_SECRET_KEY_BASE": "ab" * 64}
RAILS = (
    "rails:\n"
    "  cookie: _app_session\n"
    "  secret_key_base_env: STRANGLER_TEST_SECRET_KEY_BASE\n"
    "identity:\n"
    "  keys_path: keys.json\n"
    "store: {flush_interval_s: 0.5, traffic_flush_interval_s: 1}\n"
)
# The event stream polls every 0.25 s; the page then refetches the route.
LIVE_DEADLINE_MS = 1000
# A canary route's charts: share on new, requests per second, errors, p50, p99.
CHARTS = 5


require_browser()

from playwright.sync_api import Browser, Page, expect  # noqa: E402

# The series are read again every 5 s while a chart is open, and traffic is flushed every
# second: the current minute's share moves within ~6 s; twice that on a loaded machine.
SERIES_DEADLINE_MS = 20_000


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    legacy, new = EchoUpstream("legacy").start(), EchoUpstream("new").start()
    path = write_config(
        tmp_path_factory.mktemp("e2e") / "strangler.yaml",
        legacy=legacy.url,
        new=new.url,
        routes=ROUTES,
        extra=RAILS,
    )
    _seed_traffic(path.parent / "strangler.db")
    gw = GatewayProcess(path, env=SECRET_ENV).start()
    yield gw
    gw.stop()
    legacy.stop()
    new.stop()


def _seed_traffic(store_path: Path) -> None:
    """The last hour of the canary route `tasks`, as a replica's workers flush it: 90 % on
    legacy at ~20 ms, 10 % on new at ~12 ms with a 1 % error rate (minutes of traffic through
    the gateway would make the test wait for them; tests/integration/test_series.py does that)."""
    store = SqliteShadowStore(store_path)
    now = time.time()
    deltas = []
    for ago in range(60, 0, -1):
        legacy, new = LatencyHistogram(), LatencyHistogram()
        for i in range(90):
            legacy.record(0.018 + (ago % 7) * 0.001 + i * 0.0001)
        for i in range(10):
            new.record(0.011 + i * 0.0002)
        deltas.append(
            TrafficDelta(
                "tasks",
                int(now // 60) - ago,
                legacy=90,
                new=10,
                new_errors=1 if ago % 10 == 0 else 0,
                legacy_latency=legacy.to_json(),
                new_latency=new.to_json(),
            )
        )
    store.apply([], now, deltas)
    store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def _token(gw: GatewayProcess, scope: str) -> str:
    return create_token(gw.config_path, scope)


def _page(browser: Browser, gw: GatewayProcess, width: int, height: int) -> Page:
    assert gw.admin_url is not None
    return open_page(browser, gw.admin_url, width, height)


def _act(page: Page, button: str, reason: str) -> str | None:
    """Click an action, give the reason, confirm: None when done, else the refusal shown."""
    page.get_by_role("button", name=button, exact=True).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Reason").fill(reason)
    dialog.get_by_role("button", name="Confirm").click()
    refusal = dialog.get_by_role("alert")
    # Done (the dialog closes) or refused (it shows the service's detail).
    page.wait_for_function(
        "() => !document.querySelector('dialog') || document.querySelector('dialog [role=alert]')"
    )
    if refusal.count() == 0:
        return None
    text = refusal.inner_text()
    dialog.get_by_role("button", name="Cancel").click()
    return text


def test_a_write_user_moves_a_route_and_sees_cli_changes_live(
    browser: Browser, gateway: GatewayProcess, shots: Path
) -> None:
    page = _page(browser, gateway, 1280, 800)
    check(page, shots, "login-wide")
    log_in(page, _token(gateway, "write"))
    expect(page.get_by_role("heading", name="Migration overview")).to_be_visible()
    check(page, shots, "overview-wide")

    page.get_by_role("link", name="Routes", exact=True).click()
    rows = page.locator("tbody tr[data-route]")
    expect(rows).to_have_count(len(ROUTE_NAMES))
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.route)")) == ROUTE_NAMES
    check(page, shots, "routes-wide")

    page.get_by_role("link", name="projects.index", exact=True).click()
    stage = page.locator(".figures dd .stage").first
    expect(stage).to_have_text("legacy")
    assert _act(page, "Promote", "shadow it from the dashboard") is None
    expect(stage).to_have_text("shadow")
    check(page, shots, "route-detail-wide")

    # Another terminal moves it on; the open page follows through the event stream.
    done = run_cli(
        "promote",
        "projects.index",
        "--force",
        "-r",
        "from the CLI",
        "--config",
        str(gateway.config_path),
    )
    assert done.returncode == 0, done.stderr
    changed_at = time.monotonic()
    expect(stage).to_have_text("canary", timeout=LIVE_DEADLINE_MS)
    print(f"CLI change on the page after {time.monotonic() - changed_at:.2f} s")

    assert _act(page, "Roll back", "back to legacy") is None
    expect(stage).to_have_text("legacy")

    page.reload()  # the session survives: its CSRF token is read again
    expect(page.get_by_test_id("caller")).to_have_text("token:write (write)")
    # A refusal is shown in the service's own words.
    refusal = _act(page, "Pause", "hold it")
    assert refusal is not None and "only a canary rollout can pause" in refusal, refusal
    # An unsafe call after the reload: the CSRF token read again works.
    assert _act(page, "Promote", "shadow it again") is None
    expect(stage).to_have_text("shadow")
    page.get_by_role("link", name="Audit", exact=True).click()
    expect(page.get_by_role("cell", name="shadow it again", exact=True)).to_be_visible()
    check(page, shots, "audit-wide")

    # A route's traffic, legacy and new, drawn from the store's series; then over a week.
    page.goto(gateway.admin_url + "/#/routes/tasks")  # type: ignore[operator]
    charts = page.locator("[data-testid=chart] canvas")
    expect(charts).to_have_count(CHARTS)
    # 90 answers a minute on legacy: 1.5 a second.
    expect(
        page.get_by_role(
            "img", name=re.compile(r"^Requests per second\. legacy: .*highest 1\.50 req.s")
        )
    ).to_be_visible()
    check(page, shots, "route-charts-wide")
    page.get_by_label("Window").select_option("7d")
    expect(charts).to_have_count(CHARTS)
    page.get_by_role("link", name="Overview", exact=True).click()
    expect(
        page.get_by_role("img", name=re.compile(r"^Last week\. answered by new"))
    ).to_be_visible()

    page.get_by_role("link", name="Identity", exact=True).click()
    keys = page.locator("section[aria-labelledby=keys-title] tbody tr")
    expect(keys).to_have_count(2)  # the active key and the next one
    expect(page.get_by_text("0 minted for requests to new.")).to_be_visible()
    check(page, shots, "identity-wide")

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    page.close()


@contextlib.contextmanager
def _users(url: str) -> Iterator[Counter[str]]:
    """Requests to `url` on a thread until the block ends, each from a new user: no cookie is
    kept, so the gateway draws every one a sticky cookie anew and the split follows the weight.
    The tally counts answers by the upstream that gave them."""
    answered: Counter[str] = Counter()
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(trust_env=False, timeout=5.0) as client:
            while not stop.is_set():
                answered[client.get(url).headers.get("x-upstream", "?")] += 1
                client.cookies.clear()
                # About 50 users a second: a few hundred answers before the chart is read.
                stop.wait(0.02)

    thread = threading.Thread(target=send, name="users")
    thread.start()
    try:
        yield answered
    finally:
        stop.set()
        thread.join(timeout=10)


def test_a_weight_set_from_the_keyboard_moves_the_share_on_new_under_real_traffic(
    browser: Browser, gateway: GatewayProcess, shots: Path
) -> None:
    page = _page(browser, gateway, 1280, 800)
    log_in(page, _token(gateway, "write"))
    page.goto(gateway.admin_url + "/#/routes/tasks")  # type: ignore[operator]
    share = page.get_by_role("img", name=re.compile(r"^Share answered by new\."))
    # The seeded hour: 10 % of every minute's answers came from new.
    expect(share).to_have_attribute("aria-label", re.compile(r"latest 10\.0 %"))

    # Every action is reachable with Tab, in order, from the section's heading.
    page.get_by_role("heading", name="Where it stands").click()
    reached = []
    for _ in range(5):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.textContent"))
    assert reached == ["Promote", "Roll back", "Pause", "Resume", "Set weight"]
    set_weight = page.get_by_role("button", name="Set weight", exact=True)
    expect(set_weight).to_be_focused()

    # Enter opens the dialog on the weight field; the effect follows what is typed.
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Set the canary weight of tasks")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("New weight (%)")).to_be_focused()
    page.keyboard.press("Control+A")
    page.keyboard.type("50")
    expect(dialog.locator(".effect")).to_have_text("10 % → 50 % of users of group tasks.")
    page.keyboard.press("Tab")
    expect(dialog.get_by_label(re.compile("^Reason"))).to_be_focused()
    page.keyboard.type("half of the users, from the keyboard")
    check(page, shots, "set-weight-dialog-wide")
    page.set_viewport_size({"width": 390, "height": 844})
    check(page, shots, "set-weight-dialog-narrow")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.keyboard.press("Tab")  # Cancel
    page.keyboard.press("Tab")  # Confirm
    expect(dialog.get_by_role("button", name="Confirm")).to_be_focused()
    page.keyboard.press("Enter")
    expect(dialog).to_have_count(0)
    expect(page.get_by_text("50 % of users (steps")).to_be_visible()
    # Focus is back where the keyboard user was.
    expect(set_weight).to_be_focused()
    expect(page.locator(".timeline li").last).to_contain_text(
        "weight: canary → canary at 50 % by token:write: “half of the users, from the keyboard”"
    )

    # New users arrive through the gateway; the open page's chart shows about half of the
    # current minute's answers coming from new, without a reload.
    assert gateway.url is not None
    started = time.monotonic()
    with _users(gateway.url + "/api/tasks") as answered:
        expect(share).to_have_attribute(
            "aria-label", re.compile(r"latest [3-6]\d\.\d %"), timeout=SERIES_DEADLINE_MS
        )
    print(f"share on new moved on the page {time.monotonic() - started:.1f} s after traffic began")
    print(f"answers by upstream: {dict(answered)}")
    assert answered["new"] > 0 and answered["legacy"] > 0
    check(page, shots, "route-share-moved-wide")

    # Pause and resume: the status says so, and what blocks the next stage names the pause.
    figures = page.locator(".figures")
    status = figures.locator("dt", has_text="Status").locator("xpath=following-sibling::dd[1]")
    assert _act(page, "Pause", "hold it while we look") is None
    expect(status).to_have_text("paused")
    expect(figures).to_contain_text("paused: hold it while we look")
    assert _act(page, "Resume", "carry on") is None
    expect(status).to_have_text("running")
    page.close()


def test_a_write_user_forces_a_promote_past_a_closed_gate_and_the_audit_says_so(
    browser: Browser, gateway: GatewayProcess, shots: Path
) -> None:
    page = _page(browser, gateway, 1280, 800)
    log_in(page, _token(gateway, "write"))
    page.goto(gateway.admin_url + "/#/routes/reports")  # type: ignore[operator]
    stage = page.locator(".figures dd .stage").first
    expect(stage).to_have_text("shadow")
    expect(page.get_by_text("What blocks the next stage")).to_be_visible()

    page.get_by_role("button", name="Promote", exact=True).click()
    dialog = page.get_by_role("dialog", name="Promote reports")
    dialog.get_by_label(re.compile("^Reason")).fill("the report job needs new")
    dialog.get_by_role("button", name="Confirm").click()
    # The service refuses: no shadow comparison yet, so its evidence gate is closed.
    refusal = dialog.get_by_role("alert")
    expect(refusal).to_contain_text("Refused: ")
    expect(refusal).to_contain_text("comparisons")
    check(page, shots, "promote-refused-wide")

    force = dialog.get_by_label(re.compile("^Force it past a closed evidence"))
    force.check()
    expect(dialog.locator(".effect")).to_contain_text("Forced: the audit entry records it")
    dialog.get_by_role("button", name="Confirm").click()
    expect(dialog).to_have_count(0)
    expect(stage).to_have_text("canary")
    expect(page.locator(".timeline li").last).to_contain_text("promote (forced): shadow → canary")

    page.get_by_role("link", name="Audit", exact=True).click()
    entry = page.get_by_role("row").filter(has_text="the report job needs new")
    expect(entry).to_have_count(1)
    expect(entry.get_by_role("cell").nth(2)).to_have_text("promote (forced)")
    check(page, shots, "audit-forced-wide")
    page.close()


def _diffs(gw: GatewayProcess, token: str, route: str) -> dict[str, object]:
    answer = httpx.get(
        f"{gw.admin_url}/api/v1/diffs/{route}",
        headers={"Authorization": f"Bearer {token}"},
        trust_env=False,
    )
    return answer.json() if answer.status_code == 200 else {}  # type: ignore[no-any-return]


def test_reviewing_the_difference_paths_changes_the_parity_on_the_page(
    browser: Browser, gateway: GatewayProcess, shots: Path
) -> None:
    token = _token(gateway, "write")
    # Real shadow differences: each request answered by legacy, its copy by new, compared.
    with httpx.Client(base_url=gateway.url or "", trust_env=False) as client:
        for project in range(1, 7):
            assert client.get(f"/api/projects/{project}").headers["x-upstream"] == "legacy"
    wait_until(
        lambda: _diffs(gateway, token, "projects.show").get("compared") == 6,
        "the 6 comparisons in the store",
    )

    page = _page(browser, gateway, 1280, 800)
    log_in(page, token)
    page.goto(gateway.admin_url + "/#/routes/projects.show")  # type: ignore[operator]
    parity = page.get_by_test_id("parity")
    expect(parity).to_contain_text("Parity 0.0 % over 6 comparisons")
    paths = page.locator("section[aria-labelledby=diffs-title] tbody tr")
    expect(paths).to_have_count(2)

    # Noise needs a reason too: the browser won't submit the dialog without one.
    page.get_by_role("button", name="Noise $.headers[*]").click()
    dialog = page.get_by_role("dialog", name="Mark $.headers[*] as noise")
    dialog.get_by_role("button", name="Confirm").click()
    reason = dialog.get_by_label(re.compile("^Reason"))
    assert reason.evaluate("field => field.validity.valueMissing") is True
    expect(dialog).to_be_visible()
    reason.fill("the new app's own headers, never shown to users")
    dialog.get_by_role("button", name="Confirm").click()
    expect(dialog).to_have_count(0)
    expect(paths.filter(has_text="$.headers[*]")).to_contain_text("noise by token:write")
    # Each comparison also differs at $.name: none of them is equal yet.
    expect(parity).to_contain_text("Parity 0.0 % over 6 comparisons")

    page.get_by_role("button", name="Accept $.name").click()
    dialog = page.get_by_role("dialog", name="Accept $.name")
    expect(dialog.locator(".effect")).to_have_text(
        "An intended change: the 6 differences at $.name no longer count against the parity."
    )
    dialog.get_by_label(re.compile("^Reason")).fill("new says its own name: intended")
    check(page, shots, "accept-dialog-wide")
    dialog.get_by_role("button", name="Confirm").click()
    expect(dialog).to_have_count(0)
    expect(parity).to_contain_text("Parity 100.0 % over 6 comparisons")
    expect(paths.filter(has_text="$.name")).to_contain_text("accepted by token:write")
    check(page, shots, "route-diffs-reviewed-wide")
    page.get_by_role("link", name="Routes", exact=True).click()
    expect(page.locator("tr[data-route='projects.show'] td[data-column=parity]")).to_contain_text(
        "100.0 %"
    )
    page.close()


def test_a_read_token_sees_every_screen_on_a_phone_but_cannot_act(
    browser: Browser, gateway: GatewayProcess, shots: Path
) -> None:
    token = _token(gateway, "read")
    # A difference path to review (xdist may run this test on a gateway of its own, without
    # the review test's traffic).
    assert httpx.get(f"{gateway.url}/api/projects/99", trust_env=False).status_code == 200
    wait_until(
        lambda: bool(_diffs(gateway, token, "projects.show").get("paths")), "a difference path"
    )
    page = _page(browser, gateway, 390, 844)
    log_in(page, token)
    check(page, shots, "overview-narrow")
    page.goto(gateway.admin_url + "/#/routes")  # type: ignore[operator]
    expect(page.locator("tbody tr[data-route]")).to_have_count(len(ROUTE_NAMES))
    check(page, shots, "routes-narrow")
    page.goto(gateway.admin_url + "/#/routes/tasks")  # type: ignore[operator]
    for name in ("Promote", "Roll back", "Pause", "Resume", "Set weight"):
        expect(page.get_by_role("button", name=name, exact=True)).to_be_disabled()
    expect(page.get_by_text("token:read has scope read")).to_be_visible()
    expect(page.locator("[data-testid=chart] canvas")).to_have_count(CHARTS)
    check(page, shots, "route-detail-narrow")
    # No review either, and no way to force anything: no dialog opens, so no force box shows.
    page.goto(gateway.admin_url + "/#/routes/projects.show")  # type: ignore[operator]
    for name in ("Promote", "Accept $.name", "Noise $.name"):
        expect(page.get_by_role("button", name=name, exact=True)).to_be_disabled()
    page.get_by_role("button", name="Promote", exact=True).click(force=True)
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(page.get_by_label(re.compile("^Force"))).to_have_count(0)
    check(page, shots, "route-diffs-narrow")
    page.goto(gateway.admin_url + "/#/identity")  # type: ignore[operator]
    expect(page.get_by_role("heading", name="Signing keys")).to_be_visible()
    check(page, shots, "identity-narrow")
    page.goto(gateway.admin_url + "/#/audit")  # type: ignore[operator]
    check(page, shots, "audit-narrow")
    print(f"screenshots in {shots}")
    page.close()
