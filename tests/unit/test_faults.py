"""Fault plans without sockets: which side a plan hits, which roll gets which fault, who may ask
for a header-gated fault, and that a compiled table puts a plan only on the Decision of the
side it hits."""

from __future__ import annotations

import ipaddress

import pytest

from strangler.routing import RouteTable
from strangler.routing.canary import CanaryPlan, OverridePolicy
from strangler.routing.faults import (
    FaultKind,
    FaultPlan,
    FaultSide,
    is_fault_requested,
    pick_fault,
    sign_fault,
)
from strangler.routing.model import DecisionReason, RouteSpec, Stage

SECRET = b"0123456789abcdef0123456789abcdef"
NOW = 1_000_000.0
TRUST = OverridePolicy(networks=(ipaddress.ip_network("10.0.0.0/8"),), secret=SECRET)
ASKED = FaultPlan(abort_bp=10_000, only_when_header=b"x-strangler-fault", trust=TRUST)


@pytest.mark.parametrize(
    ("side", "is_new", "hits"),
    [
        (FaultSide.NEW, True, True),
        (FaultSide.NEW, False, False),
        (FaultSide.LEGACY, False, True),
        (FaultSide.LEGACY, True, False),
        (FaultSide.BOTH, True, True),
        (FaultSide.BOTH, False, True),
    ],
)
def test_a_fault_hits_the_side_it_names(side: FaultSide, is_new: bool, hits: bool) -> None:
    assert side.hits(is_new=is_new) is hits


@pytest.mark.parametrize(
    ("abort_roll", "delay_roll", "kind"),
    [
        (0, 9_999, FaultKind.ABORT),
        (499, 0, FaultKind.ABORT),  # aborted requests are not delayed too
        (500, 999, FaultKind.DELAY),
        (500, 1_000, None),
        (9_999, 9_999, None),
    ],
)
def test_abort_and_delay_are_rolled_independently(
    abort_roll: int, delay_roll: int, kind: FaultKind | None
) -> None:
    plan = FaultPlan(abort_bp=500, delay_bp=1_000, delay_s=0.3)
    assert pick_fault(plan, abort_roll, delay_roll) is kind


@pytest.mark.parametrize(
    ("client_ip", "value", "requested"),
    [
        ("10.1.2.3", "1", True),  # a trusted network needs no signature
        ("10.1.2.3", None, False),  # without the header, never
        ("192.0.2.7", "1", False),  # untrusted and unsigned
        ("192.0.2.7", sign_fault(SECRET, "/projects/1", int(NOW) + 60), True),
        ("192.0.2.7", sign_fault(SECRET, "/projects/2", int(NOW) + 60), False),  # other path
        ("192.0.2.7", sign_fault(SECRET, "/projects/1", int(NOW) - 1), False),  # expired
        ("192.0.2.7", sign_fault(b"x" * 32, "/projects/1", int(NOW) + 60), False),  # bad key
        ("192.0.2.7", sign_fault(SECRET, "/projects/1", int(NOW) + 90_000), False),  # too long
    ],
)
def test_a_header_gated_fault_needs_a_trusted_client_or_a_signature(
    client_ip: str, value: str | None, requested: bool
) -> None:
    assert is_fault_requested(ASKED, client_ip, "/projects/1", value, NOW) is requested


def test_a_drills_plan_expires_and_the_yamls_never_does() -> None:
    assert FaultPlan(expires_at=NOW).is_expired(NOW)
    assert not FaultPlan(expires_at=NOW + 1).is_expired(NOW)
    assert not FaultPlan().is_expired(NOW)


def _canary(faults: FaultPlan) -> RouteSpec:
    return RouteSpec(
        name="projects",
        match="GET /projects/:id",
        stage=Stage.CANARY,
        backend="legacy",
        reason=DecisionReason.STAGE_CANARY,
        canary_backend="new",
        canary=CanaryPlan(group="projects", weight_bp=500, stickiness=()),
        faults=faults,
    )


@pytest.mark.parametrize(
    ("side", "on_legacy", "on_new"),
    [(FaultSide.NEW, False, True), (FaultSide.LEGACY, True, False), (FaultSide.BOTH, True, True)],
)
def test_a_canary_route_carries_its_faults_on_the_side_they_hit(
    side: FaultSide, on_legacy: bool, on_new: bool
) -> None:
    plan = FaultPlan(abort_bp=5_000, side=side)
    decision = RouteTable.build([_canary(plan)], "legacy").decide("GET", "/projects/1")
    assert decision.canary is not None
    # The route's own Decision is replaced by a side's before anything is forwarded.
    assert decision.faults is None
    assert (decision.canary.legacy.faults is plan) is on_legacy
    assert (decision.canary.new.faults is plan) is on_new


@pytest.mark.parametrize(
    ("stage", "faulted"), [(Stage.NEW, True), (Stage.RETIRED, True), (Stage.LEGACY, False)]
)
def test_a_routes_decision_carries_faults_on_new_only_when_new_answers(
    stage: Stage, faulted: bool
) -> None:
    plan = FaultPlan(abort_bp=5_000, side=FaultSide.NEW)
    spec = RouteSpec("r", "GET /r", stage, "x", DecisionReason.STAGE_NEW, faults=plan)
    decision = RouteTable.build([spec], "legacy").decide("GET", "/r")
    assert (decision.faults is plan) is faulted
