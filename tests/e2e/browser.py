"""What the browser tests share: whether they can run (Debian's Chromium, the built dashboard,
axe-core), one Chromium per module, and the steps every screen check takes.

`require_browser()` runs at a module's top, before Playwright is imported: it skips the module
when something is missing, unless STRANGLER_REQUIRE_BROWSER=1 (CI), where it fails instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest

from strangler.admin.dashboard import STATIC_DIR
from tests.integration.gateway_process import run_cli

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
AXE = REPO / "dashboard" / "node_modules" / "axe-core" / "axe.min.js"


def _missing() -> str | None:
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} is missing (Debian package chromium; `make test` installs it)"
    if not (STATIC_DIR / "index.html").is_file() or not AXE.is_file():
        return "the dashboard is not built or its npm packages are missing: run `make setup`"
    if shutil.which("node") is None:
        return "node is missing: run `make setup`"
    return None


def require_browser() -> None:
    if (why := _missing()) is not None:
        if os.environ.get("STRANGLER_REQUIRE_BROWSER") == "1":
            raise RuntimeError(f"STRANGLER_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(f"browser tests skipped: {why}", allow_module_level=True)


def launch_chromium() -> Iterator[Browser]:
    """One Chromium for a module (a start costs a second or two)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


def create_token(config_path: Path, scope: str) -> str:
    """An admin token, made as a user makes one: `strangler token create`."""
    created = run_cli(
        "token", "create", "--config", str(config_path), "--json", "--name", scope,
        "--scope", scope,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    token: str = orjson.loads(created.stdout)["token"]
    return token


def open_page(browser: Browser, admin_url: str, width: int, height: int) -> Page:
    """A new page on the dashboard that records script errors and CSP violations."""
    page = browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    # A CSP violation or a script error shows on the console: none is expected. Failed loads
    # are not errors here: the first session check is a 401 before logging in, and a refused
    # action is a 409 the page shows.
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
    page.goto(admin_url + "/")
    return page


def log_in(page: Page, token: str) -> None:
    from playwright.sync_api import expect

    page.get_by_label("Token", exact=True).fill(token)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("caller")).to_be_visible()


def check(page: Page, shots: Path, name: str) -> None:
    """Screenshot the screen, then axe-core: no serious or critical violation."""
    from playwright.sync_api import expect

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
