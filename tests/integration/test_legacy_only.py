"""Day one of a migration: a façade in front of legacy only, before any new backend exists.
The gateway serves it, and `progress` never counts a legacy answer as answered by new, also
when a file names legacy as its new backend (the old workaround)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.integration.gateway_process import GatewayProcess, run_cli, run_gateway
from tests.integration.upstreams import EchoUpstream


def _legacy_only(path: Path, legacy: EchoUpstream, extra: str = "") -> Path:
    path.write_text(
        "listen: 127.0.0.1:0\n"
        f'backends:\n  legacy: {{url: "{legacy.url}"}}\n'
        "routes:\n"
        '  - {name: projects, match: "GET /projects(/:id)"}\n'
        'admin: {listen: "127.0.0.1:0"}\n' + extra
    )
    return path


@pytest.fixture(params=["no-new-backend", "new_backend: legacy"])
def gateway(
    request: pytest.FixtureRequest, tmp_path: Path, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> Iterator[tuple[GatewayProcess, EchoUpstream]]:
    legacy, _ = upstreams
    extra = "new_backend: legacy\n" if request.param != "no-new-backend" else ""
    path = _legacy_only(tmp_path / "strangler.yaml", legacy, extra)
    yield from ((gw, legacy) for gw in run_gateway(path))


def test_a_legacy_only_facade_serves_and_counts_nothing_as_new(
    gateway: tuple[GatewayProcess, EchoUpstream],
) -> None:
    gw, legacy = gateway
    with httpx.Client(base_url=gw.url, trust_env=False) as client:
        for i in range(3):
            assert client.get(f"/projects/{i}").status_code == 200
        assert client.get("/elsewhere").status_code == 200
    assert len(legacy.requests) == 4
    assert gw.stop() == 0
    result = run_cli("progress", "--config", str(gw.config_path), "--json")
    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout)
    assert report["share_on_new"]["hour"]["new"] == 0
    assert report["share_on_new"]["hour"]["total"] == 4
    (route,) = report["routes"]
    assert (route["last_hour"]["legacy"], route["last_hour"]["new"]) == (3, 0)


def test_check_config_accepts_a_legacy_only_file(
    tmp_path: Path, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    path = _legacy_only(tmp_path / "strangler.yaml", upstreams[0])
    result = run_cli("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert "1 backends, 1 routes" in result.stdout
