"""Day one: a config with no new backend keeps every route on legacy; promoting one is refused
saying what to add, and a route with a shadow backend of its own may still move to shadow."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from strangler.config import parse_config
from strangler.control.service import ChangeRefused, ControlService
from strangler.control.stores import SqliteShadowStore

CONFIG = """\
backends:
  legacy: {url: "http://127.0.0.1:3000"}
  sandbox: {url: "http://127.0.0.1:3001"}
routes:
  - {name: projects, match: "GET /projects"}
  - {name: reports, match: "GET /reports", shadow: {backend: sandbox}}
"""


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ControlService]:
    store = SqliteShadowStore(tmp_path / "s.db")
    try:
        yield ControlService(store, parse_config(CONFIG, "strangler.yaml"))
    finally:
        store.close()


def test_promoting_a_route_with_nowhere_new_to_go_is_refused(service: ControlService) -> None:
    with pytest.raises(ChangeRefused, match="projects stays in legacy: the config has no new"):
        service.promote("projects", actor="ana", reason="ready")
    assert service.unit("projects").stage.value == "legacy"
    assert service.audit("projects") == []


def test_a_route_with_its_own_shadow_backend_can_still_be_shadowed(
    service: ControlService,
) -> None:
    change = service.promote("reports", actor="ana", reason="try the sandbox")
    assert change.after["stage"] == "shadow"
    # Out of shadow it would go to the (missing) new backend.
    with pytest.raises(ChangeRefused, match="reports stays in shadow: the config has no new"):
        service.promote("reports", actor="ana", reason="ready", force=True)
