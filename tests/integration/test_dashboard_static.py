"""The dashboard as a browser first meets it: `/` and its hashed assets from a real gateway's
admin listener, with the headers that keep the page safe (CSP without inline script, nosniff,
no framing) and cacheable (assets for a year, the page revalidated)."""

from __future__ import annotations

import re

import httpx
import pytest

from strangler.admin.dashboard import ASSET_CACHE, CONTENT_SECURITY_POLICY, STATIC_DIR
from tests.integration.gateway_process import GatewayProcess

pytestmark = pytest.mark.skipif(
    not (STATIC_DIR / "index.html").is_file(),
    reason="the dashboard is not built: `make setup` builds it (needs Node.js)",
)


def _get(gw: GatewayProcess, path: str) -> httpx.Response:
    assert gw.admin_url is not None
    return httpx.get(gw.admin_url + path, timeout=10, trust_env=False)


def test_the_page_and_its_assets_come_with_a_strict_policy_and_long_cache(
    gateway: GatewayProcess,
) -> None:
    page = _get(gateway, "/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-cache"
    # No inline script: every <script> names its source, which the policy allows.
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page.text) == []
    assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', page.text)
    assert {name.rsplit(".", 1)[-1] for name in assets} == {"js", "css"}

    for path in assets:
        asset = _get(gateway, path)
        assert asset.status_code == 200
        assert asset.headers["cache-control"] == ASSET_CACHE
        assert asset.headers["x-content-type-options"] == "nosniff"
    script = _get(gateway, next(path for path in assets if path.endswith(".js")))
    assert script.headers["content-type"].startswith("text/javascript")

    missing = _get(gateway, "/assets/index-00000000.js")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


def test_api_answers_carry_nosniff_too(gateway: GatewayProcess) -> None:
    answer = _get(gateway, "/api/v1/routes")
    assert answer.status_code == 401
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "/" not in _get(gateway, "/openapi.json").json()["paths"]
