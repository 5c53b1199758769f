"""The dashboard's API types (dashboard/src/api/schema.ts) are generated from the admin API's
OpenAPI document with openapi-typescript: this fails when the committed file no longer matches
the document a real gateway serves, so frontend and backend can't drift apart unnoticed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.integration.gateway_process import GatewayProcess

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "dashboard"
SCHEMA = DASHBOARD / "src" / "api" / "schema.ts"
GENERATOR = DASHBOARD / "node_modules" / ".bin" / "openapi-typescript"
REGENERATE = (
    "cd dashboard && npx openapi-typescript http://ADMIN/openapi.json -o src/api/schema.ts "
    "(ADMIN: a running gateway's admin listener)"
)


@pytest.mark.skipif(
    not GENERATOR.is_file() or shutil.which("node") is None,
    reason="the dashboard's npm packages are not installed: `make setup` installs them",
)
def test_the_committed_api_types_match_the_served_openapi_document(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    assert gateway.admin_url is not None
    document = httpx.get(gateway.admin_url + "/openapi.json", timeout=10, trust_env=False)
    assert document.status_code == 200
    (tmp_path / "openapi.json").write_bytes(document.content)
    subprocess.run(
        [str(GENERATOR), str(tmp_path / "openapi.json"), "-o", str(tmp_path / "schema.ts")],
        cwd=DASHBOARD,
        capture_output=True,
        timeout=120,
        check=True,
    )
    generated = (tmp_path / "schema.ts").read_text()
    assert generated == SCHEMA.read_text(), f"schema.ts is stale; regenerate it: {REGENERATE}"
