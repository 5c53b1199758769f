"""ControlService: every stage change validated and audited once, on a real SQLite store."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

from strangler.config import Config, parse_config
from strangler.control.changes import CHANGES, ChangeRequest
from strangler.control.service import ChangeRefused, ControlService, UnknownRoute
from strangler.control.state import Store
from strangler.control.store import RouteDelta
from strangler.control.stores import SqliteShadowStore
from strangler.rollout import stages

CONFIG = """\
listen: 127.0.0.1:0
backends:
  legacy: {url: "http://127.0.0.1:3000"}
  new: {url: "http://127.0.0.1:8080"}
routes:
  - name: projects.index
    match: "GET /api/projects"
    stage: shadow
  - name: projects.show
    match: "GET /api/projects/:id"
    stage: canary
    canary: {group: projects, weight: 5, plan: {steps: [5, 25, 100]}}
  - name: projects.tasks
    match: "GET /api/projects/:id/tasks"
    stage: canary
    canary: {group: projects}
  - name: home
    match: "GET /"
"""


@pytest.fixture
def base() -> Config:
    return parse_config(CONFIG, "strangler.yaml")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = SqliteShadowStore(tmp_path / "s.db")
    yield opened
    opened.close()


@pytest.fixture
def service(store: Store, base: Config) -> ControlService:
    return ControlService(store, base, clock=lambda: 1000.0)


def _compared(store: Store, route: str, compared: int, equal: int) -> None:
    store.apply([RouteDelta(route, compared, compared, equal, compared - equal, {}, ())], now=1.0)


def test_a_group_moves_through_its_steps_to_new_and_every_step_is_audited(
    service: ControlService, store: Store
) -> None:
    first = service.promote("projects.tasks", actor="ana", reason="healthy")
    assert (first.unit, first.before, first.after["weight_bp"]) == (
        "projects",
        {"stage": "canary", "weight_bp": 500, "status": "running"},
        2500,
    )
    last = service.promote("projects", actor="ana", reason="healthy")
    assert (last.after["stage"], last.after["weight_bp"]) == ("canary", 10_000)
    done = service.promote("projects", actor="ana", reason="healthy")
    assert (done.after["stage"], done.after["status"]) == ("new", "complete")
    # Both routes of the group moved.
    assert [(s.routes, s.stage.value) for s in service.units() if s.unit == "projects"] == [
        (("projects.show", "projects.tasks"), "new")
    ]
    retired = service.promote("projects", actor="ana", reason="legacy's code is deleted")
    assert (retired.before["stage"], retired.after["stage"]) == ("new", "retired")
    with pytest.raises(ChangeRefused, match="is retired"):
        service.promote("projects", actor="ana", reason="again")
    with pytest.raises(ChangeRefused, match="pass --force"):
        service.rollback("projects", actor="ana", reason="oops")
    forced = service.rollback("projects", actor="ana", reason="legacy still has it", force=True)
    assert (forced.after["stage"], forced.evidence) == ("legacy", {"forced_from_retired": True})
    assert [c.version for c in store.audit()] == [5, 4, 3, 2, 1]


def test_leaving_shadow_needs_the_evidence_gate_or_force(
    service: ControlService, store: Store
) -> None:
    with pytest.raises(ChangeRefused, match="0 of 500 comparisons") as refused:
        service.promote("projects.index", actor="ana", reason="ready")
    assert refused.value.status == 409 and refused.value.gate is not None
    _compared(store, "projects.index", 800, 800)
    change = service.promote("projects.index", actor="ana", reason="ready")
    assert change.after == {
        "stage": "canary",
        "weight_bp": 100,  # the default plan's first step
        "status": "running",
        "step_started_at": 1000.0,
    }
    assert change.evidence is not None and change.evidence["forced"] is False


def test_a_forced_promotion_keeps_the_gate_it_forced(service: ControlService) -> None:
    change = service.promote("projects.index", actor="ana", reason="QA", force=True, weight=10)
    assert change.after["weight_bp"] == 1000
    assert change.evidence is not None and change.evidence["forced"] is True
    gate = change.evidence["gate"]
    assert isinstance(gate, dict) and gate["passed"] is False


def test_rollback_pause_resume_and_weight(service: ControlService) -> None:
    paused = service.pause("projects", actor="ana", reason="lunch")
    assert paused.after["status"] == "paused"
    with pytest.raises(ChangeRefused, match="already paused"):
        service.pause("projects", actor="ana", reason="again")
    assert service.resume("projects", actor="ana", reason="back").after["status"] == "running"
    assert service.set_weight("projects", 0, actor="ana", reason="hold").after["weight_bp"] == 0
    with pytest.raises(ChangeRefused, match=r"steps of 0\.01") as bad:
        service.set_weight("projects", 12.345, actor="ana", reason="x")
    assert bad.value.status == 400
    back = service.rollback("projects", actor="ana", reason="errors")
    assert (back.after["stage"], back.after["status"]) == ("legacy", "rolled_back")
    with pytest.raises(ChangeRefused, match="already on legacy"):
        service.rollback("projects", actor="ana", reason="again")
    with pytest.raises(ChangeRefused, match="not canary"):
        service.set_weight("projects", 5, actor="ana", reason="x")
    # From legacy the way back in starts at shadow.
    assert service.promote("projects", actor="ana", reason="fixed").after["stage"] == "shadow"


def test_a_change_needs_a_reason_and_a_known_route(service: ControlService) -> None:
    with pytest.raises(ChangeRefused, match="reason is required") as empty:
        service.rollback("projects", actor="ana", reason="  ")
    assert empty.value.status == 400
    with pytest.raises(UnknownRoute) as unknown:
        service.rollback("nope", actor="ana", reason="x")
    assert unknown.value.status == 404


def test_the_analyzer_acts_only_on_the_rollout_it_judged(
    service: ControlService, store: Store
) -> None:
    service.promote("projects", actor="ana", reason="go")  # 5 % -> 25 %
    step = functools.partial(stages.promote, weight_bp=5000)
    # Judged at 5 %: the unit has moved since, so nothing is written.
    assert service.apply("projects", 500, step, reason="verdict") is None
    service.pause("projects", actor="ana", reason="hold")
    assert service.apply("projects", 2500, step, reason="verdict") is None
    service.resume("projects", actor="ana", reason="go on")
    # A move the stage machine refuses (promote never lowers the weight) writes nothing either.
    lower = functools.partial(stages.promote, weight_bp=100)
    assert service.apply("projects", 2500, lower, reason="verdict") is None
    change = service.apply("projects", 2500, step, reason="verdict", evidence={"verdict": {}})
    assert change is not None and change.actor == "analyzer"
    assert (change.action, change.evidence) == ("promote", {"verdict": {}})
    assert store.overrides()["projects"].weight_bp == 5000
    done = service.apply("projects", 5000, stages.complete, reason="verdict")
    assert done is not None and done.action == "complete"
    assert (done.after["stage"], done.after["weight_bp"], done.after["status"]) == (
        "new",
        10_000,
        "complete",
    )


def test_reset_drops_the_override_so_the_yaml_stands_and_audits_what_it_dropped(
    service: ControlService, store: Store
) -> None:
    service.rollback("projects.show", actor="ana", reason="errors")
    assert service.unit("projects").stage.value == "legacy"
    change = service.reset("projects.show", actor="bo", reason="fixed in the file")
    assert (change.unit, change.action, change.actor) == ("projects", "reset", "bo")
    assert change.before["stage"] == "legacy"
    # The entry's "after" is the YAML's state, now in force again.
    assert change.after == {"stage": "canary", "weight_bp": 500, "status": "running"}
    assert change.evidence == {
        "dropped": {"version": 1, "actor": "ana", "reason": "errors", "updated_at": 1000.0}
    }
    assert store.overrides() == {}
    state = service.unit("projects")
    assert (state.stage.value, state.weight_bp, state.override) == ("canary", 500, None)
    # Workers converge on the version, so a reset must move it like any other change.
    assert store.state_version() == change.version == 2


def test_reset_without_an_override_is_refused_naming_the_yaml_stage(
    service: ControlService,
) -> None:
    with pytest.raises(ChangeRefused, match=r"no runtime override: the YAML \(stage shadow\)"):
        service.reset("projects.index", actor="ana", reason="x")
    with pytest.raises(UnknownRoute):
        service.reset("nope", actor="ana", reason="x")


def test_an_orphaned_override_can_be_reset(store: Store, base: Config) -> None:
    ControlService(store, base).promote("home", actor="ana", reason="x")
    without_home = base.model_copy(update={"routes": base.routes[:3]})
    change = ControlService(store, without_home).reset("home", actor="ana", reason="gone")
    assert change.after == {} and store.overrides() == {}


@pytest.mark.parametrize(
    ("setup", "change", "message"),
    [
        # Each refusal names the step that applies to the stage the unit is really in.
        ((), ("weight", "home"), r"stage legacy, not canary: `strangler promote home"),
        ((), ("weight", "projects.index"), r"promote projects.index --weight W -r why"),
        (
            (("promote", "projects"), ("promote", "projects"), ("promote", "projects")),
            ("weight", "projects"),
            r"stage new, not canary: new answers all of it; `strangler rollback projects",
        ),
        ((), ("pause", "home"), r"only a canary rollout can pause \(`strangler promote home"),
        (
            (("rollback", "projects"),),
            ("rollback", "projects"),
            r"already on legacy \(a runtime override by ana holds it there; the YAML says "
            r"canary: `strangler reset projects -r why`",
        ),
    ],
)
def test_a_refusal_names_the_next_step_for_the_stage_in_force(
    service: ControlService,
    setup: tuple[tuple[str, str], ...],
    change: tuple[str, str],
    message: str,
) -> None:
    for action, name in setup:
        CHANGES[action](service, name, ChangeRequest("setup"), actor="ana")
    action, name = change
    with pytest.raises(ChangeRefused, match=message):
        CHANGES[action](service, name, ChangeRequest("x", weight=10), actor="ana")


def test_the_audit_of_a_route_is_its_units_and_an_unknown_name_is_refused(
    service: ControlService,
) -> None:
    service.rollback("projects", actor="ana", reason="errors")
    assert [c.unit for c in service.audit("projects.tasks")] == ["projects"]
    with pytest.raises(UnknownRoute, match="nope"):
        service.audit("nope")
