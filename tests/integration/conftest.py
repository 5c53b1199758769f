"""Fixtures: real upstreams and a real gateway process, all on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.gateway_process import GatewayProcess, write_config
from tests.integration.upstreams import EchoUpstream


@pytest.fixture(scope="module")
def legacy_upstream() -> Iterator[EchoUpstream]:
    upstream = EchoUpstream("legacy").start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def new_upstream() -> Iterator[EchoUpstream]:
    upstream = EchoUpstream("new").start()
    yield upstream
    upstream.stop()


ROUTES = """\
  - name: projects.show
    match: "GET|HEAD /api/projects/:id(.:format)"
    stage: new
  - name: projects.index
    match: "GET /api/projects(.:format)"
    stage: legacy
  - name: ws
    match: "GET /ws"
    stage: new
"""


@pytest.fixture(scope="module")
def gateway(
    legacy_upstream: EchoUpstream,
    new_upstream: EchoUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    """One gateway for a module: legacy by default, /api/projects/:id and /ws on new."""
    path = write_config(
        tmp_path_factory.mktemp("gw") / "strangler.yaml",
        legacy=legacy_upstream.url,
        new=new_upstream.url,
        routes=ROUTES,
    )
    gw = GatewayProcess(path).start()
    yield gw
    gw.stop()


GatewayFactory = Callable[..., GatewayProcess]


@pytest.fixture
def upstreams() -> Iterator[tuple[EchoUpstream, EchoUpstream]]:
    """A legacy and a new echo server of this test's own (their answers name them)."""
    legacy, new = EchoUpstream("legacy").start(), EchoUpstream("new").start()
    yield legacy, new
    legacy.stop()
    new.stop()


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[GatewayFactory]:
    """Start gateways with their own config for one test; all are stopped afterwards."""
    started: list[GatewayProcess] = []

    def start(
        *,
        workers: int = 1,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        **config: str,
    ) -> GatewayProcess:
        path = write_config(tmp_path / f"strangler-{len(started)}.yaml", **config)
        gw = GatewayProcess(path, workers=workers, extra_args=extra_args, env=env).start()
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()
