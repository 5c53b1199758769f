"""The dashboard in a real browser (Debian's Chromium, driven by Playwright) against a real
gateway: log in, the routes table, promote and roll back from the route page, a CLI change
showing on the open page within a second (the event stream), a reload keeping the session, a
read token that cannot act, a route's traffic charts and the share on new (uPlot, from the
store's route series), the identity screen, and axe-core's accessibility check on every screen
at 1280x800 and 390 px wide. Screenshots of every screen go to the test's tmp folder.

One gateway and one browser for the module: a browser start costs a second or two.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from strangler.admin.dashboard import STATIC_DIR
from strangler.control.store import TrafficDelta
from strangler.control.stores import SqliteShadowStore
from strangler.rollout import LatencyHistogram
from tests.integration.gateway_process import GatewayProcess, run_cli, write_config
from tests.integration.upstreams import EchoUpstream

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
AXE = REPO / "dashboard" / "node_modules" / "axe-core" / "axe.min.js"
ROUTES = """\
  - name: projects.index
    match: "GET /api/projects"
    stage: legacy
  - name: projects.show
    match: "GET /api/projects/:id"
    stage: shadow
  - name: tasks
    match: "GET /api/tasks"
    stage: canary
    canary: {weight: 10}
"""
SECRET_ENV = {"STRANGLER_TEST_SECRET_KEY_BASE": "ab" * 64}
RAILS = (
    "rails:\n"
    "  cookie: _app_session\n"
    "  secret_key_base_env: STRANGLER_TEST_SECRET_KEY_BASE\n"
    "identity:\n"
    "  keys_path: keys.json\n"
)
# The event stream polls every 0.25 s; the page then refetches the route.
LIVE_DEADLINE_MS = 1000


def _missing() -> str | None:
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} is missing (Debian package chromium; `make test` installs it)"
    if not (STATIC_DIR / "index.html").is_file() or not AXE.is_file():
        return "the dashboard is not built or its npm packages are missing: run `make setup`"
    if shutil.which("node") is None:
        return "node is missing: run `make setup`"
    return None


if (why := _missing()) is not None:
    if os.environ.get("STRANGLER_REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"STRANGLER_REQUIRE_BROWSER=1 but {why}")
    pytest.skip(f"browser tests skipped: {why}", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402


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
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def _token(gw: GatewayProcess, scope: str) -> str:
    created = run_cli(
        "token", "create", "--config", str(gw.config_path), "--json", "--name", scope,
        "--scope", scope,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    token: str = orjson.loads(created.stdout)["token"]
    return token


def _page(browser: Browser, gw: GatewayProcess, width: int, height: int) -> Page:
    page = browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    # A CSP violation or a script error shows on the console: none is expected. Failed loads
    # are not errors here: the first session check is a 401 before logging in.
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    assert gw.admin_url is not None
    page.goto(gw.admin_url + "/")
    return page


def _log_in(page: Page, token: str) -> None:
    page.get_by_label("Token", exact=True).fill(token)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("caller")).to_be_visible()


def _check(page: Page, shots: Path, name: str) -> None:
    """Screenshot the screen, then axe-core: no serious or critical violation."""
    page.wait_for_load_state("networkidle")
    expect(page.get_by_text("Loading")).to_have_count(0)
    page.screenshot(path=shots / f"{name}.png", full_page=True)
    # Evaluated through the DevTools protocol, which the page's CSP does not govern: the page
    # itself keeps its policy (no inline script) while it is checked.
    page.evaluate(AXE.read_text())
    violations = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
            .filter((v) => v.impact === "serious" || v.impact === "critical")
            .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`)"""
    )
    assert violations == [], f"{name}: {violations}"
    assert page.errors == [], f"{name}: {page.errors}"  # type: ignore[attr-defined]


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
    _check(page, shots, "login-wide")
    _log_in(page, _token(gateway, "write"))
    expect(page.get_by_role("heading", name="Migration overview")).to_be_visible()
    _check(page, shots, "overview-wide")

    page.get_by_role("link", name="Routes", exact=True).click()
    rows = page.locator("tbody tr[data-route]")
    expect(rows).to_have_count(3)
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.route)")) == [
        "projects.index", "projects.show", "tasks",
    ]  # fmt: skip
    _check(page, shots, "routes-wide")

    page.get_by_role("link", name="projects.index", exact=True).click()
    stage = page.locator(".figures dd .stage").first
    expect(stage).to_have_text("legacy")
    assert _act(page, "Promote", "shadow it from the dashboard") is None
    expect(stage).to_have_text("shadow")
    _check(page, shots, "route-detail-wide")

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
    _check(page, shots, "audit-wide")

    # A route's traffic, legacy and new, drawn from the store's series; then over a week.
    page.goto(gateway.admin_url + "/#/routes/tasks")  # type: ignore[operator]
    charts = page.locator("[data-testid=chart] canvas")
    expect(charts).to_have_count(4)
    # 90 answers a minute on legacy: 1.5 a second.
    expect(
        page.get_by_role(
            "img", name=re.compile(r"^Requests per second\. legacy: .*highest 1\.50 req.s")
        )
    ).to_be_visible()
    _check(page, shots, "route-charts-wide")
    page.get_by_label("Window").select_option("7d")
    expect(charts).to_have_count(4)
    page.get_by_role("link", name="Overview", exact=True).click()
    expect(
        page.get_by_role("img", name=re.compile(r"^Last week\. answered by new"))
    ).to_be_visible()

    page.get_by_role("link", name="Identity", exact=True).click()
    keys = page.locator("section[aria-labelledby=keys-title] tbody tr")
    expect(keys).to_have_count(2)  # the active key and the next one
    expect(page.get_by_text("0 minted for requests to new.")).to_be_visible()
    _check(page, shots, "identity-wide")

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    page.close()


def test_a_read_token_sees_every_screen_on_a_phone_but_cannot_act(
    browser: Browser, gateway: GatewayProcess, shots: Path
) -> None:
    page = _page(browser, gateway, 390, 844)
    _log_in(page, _token(gateway, "read"))
    _check(page, shots, "overview-narrow")
    page.goto(gateway.admin_url + "/#/routes")  # type: ignore[operator]
    expect(page.locator("tbody tr[data-route]")).to_have_count(3)
    _check(page, shots, "routes-narrow")
    page.goto(gateway.admin_url + "/#/routes/tasks")  # type: ignore[operator]
    for name in ("Promote", "Roll back", "Pause", "Resume", "Set weight"):
        expect(page.get_by_role("button", name=name, exact=True)).to_be_disabled()
    expect(page.get_by_text("token:read has scope read")).to_be_visible()
    expect(page.locator("[data-testid=chart] canvas")).to_have_count(4)
    _check(page, shots, "route-detail-narrow")
    page.goto(gateway.admin_url + "/#/identity")  # type: ignore[operator]
    expect(page.get_by_role("heading", name="Signing keys")).to_be_visible()
    _check(page, shots, "identity-narrow")
    page.goto(gateway.admin_url + "/#/audit")  # type: ignore[operator]
    _check(page, shots, "audit-narrow")
    print(f"screenshots in {shots}")
    page.close()
