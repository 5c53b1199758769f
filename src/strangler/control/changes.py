"""The changes every door (CLI, admin API) offers, by the name the door gives them: one table
of typed handlers over ControlService, so no door dispatches by attribute name.

Rules:
- A name is what a user types or calls: the CLI's subcommand and the admin API's path segment
  (`strangler rollout weight`, `PUT /api/v1/routes/{name}/weight`).
- Every handler takes the same ChangeRequest; a value the change needs and did not get is
  refused (400) like a value out of range.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from strangler.config import FaultsConfig
from strangler.control.service import ChangeRefused, ControlService
from strangler.control.state import Change


@dataclass(frozen=True, slots=True)
class ChangeRequest:
    """What a door hands over besides the unit's name and the actor."""

    reason: str
    weight: float | None = None  # % ; promote: where to move to (default: the next step)
    # promote: past a closed evidence gate or SLO budget gate; rollback: of a retired unit
    force: bool = False
    # drill: the fault to inject and for how long (seconds), or `clear` the one in force.
    fault: FaultsConfig | None = None
    for_s: float | None = None
    clear: bool = False


class ChangeHandler(Protocol):
    def __call__(
        self, service: ControlService, name: str, request: ChangeRequest, /, *, actor: str
    ) -> Change: ...


def _promote(
    service: ControlService, name: str, request: ChangeRequest, /, *, actor: str
) -> Change:
    return service.promote(
        name, actor=actor, reason=request.reason, weight=request.weight, force=request.force
    )


def _set_weight(
    service: ControlService, name: str, request: ChangeRequest, /, *, actor: str
) -> Change:
    if request.weight is None:
        raise ChangeRefused("a weight is required (0 to 100)", status=400)
    return service.set_weight(name, request.weight, actor=actor, reason=request.reason)


def _rollback(
    service: ControlService, name: str, request: ChangeRequest, /, *, actor: str
) -> Change:
    return service.rollback(name, actor=actor, reason=request.reason, force=request.force)


def _pause(service: ControlService, name: str, request: ChangeRequest, /, *, actor: str) -> Change:
    return service.pause(name, actor=actor, reason=request.reason)


def _resume(service: ControlService, name: str, request: ChangeRequest, /, *, actor: str) -> Change:
    return service.resume(name, actor=actor, reason=request.reason)


def _reset(service: ControlService, name: str, request: ChangeRequest, /, *, actor: str) -> Change:
    return service.reset(name, actor=actor, reason=request.reason)


def _drill(service: ControlService, name: str, request: ChangeRequest, /, *, actor: str) -> Change:
    if request.clear == (request.fault is not None):
        raise ChangeRefused(
            "a drill needs either a fault (abort, delay) or clear, not both or neither",
            status=400,
        )
    return service.drill(
        name, request.fault, for_s=request.for_s, actor=actor, reason=request.reason
    )


CHANGES: Mapping[str, ChangeHandler] = {
    "promote": _promote,
    "weight": _set_weight,
    "rollback": _rollback,
    "pause": _pause,
    "resume": _resume,
    "reset": _reset,
    "drill": _drill,
}


def change_handler(action: str) -> ChangeHandler:
    """The handler of `action`; ChangeRefused (400) for a name no door offers."""
    handler = CHANGES.get(action)
    if handler is None:
        known = ", ".join(CHANGES)
        raise ChangeRefused(f"no change named {action!r} (known: {known})", status=400)
    return handler
