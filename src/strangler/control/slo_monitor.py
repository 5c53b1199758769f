"""The SLO monitor: evaluates every SLO of the config from the store's series, stores each
evaluation, and acts once on what changed: a page alert pauses or rolls back the canaries among
the SLO's routes (`on_page`), and every transition is handed to the webhooks.

Rules:
- One monitor acts per store, whatever the number of workers and replicas: it runs in each
  gateway's analyzer process, and only the holder of the store lease "slo" works.
- It evaluates every `evaluate_interval_s` (10 s; less for windows of seconds). An alert's
  history carries over from the last evaluation, kept in memory and in the store, so a replica
  that takes the lease over does not fire an alert that is firing already.
- Actions go through the ControlService like a person's, audited as `slo:<name>` with the burn
  numbers in the reason. A canary a person resumed while the alert still fires is left alone:
  the monitor acts on the transition to firing, not on every evaluation.
- Blocking (store I/O); runs on its own thread.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

from strangler.config import Config, SloConfig
from strangler.control.background import Background
from strangler.control.service import ChangeRefused, ControlService
from strangler.control.slo_status import evaluate_interval_s, evaluate_now
from strangler.control.state import SLO_FINE_RETENTION_S, Store
from strangler.errors import StranglerError
from strangler.observe.slo.evaluator import (
    SloState,
    Transition,
    TransitionKind,
    state_from_json,
)
from strangler.routing.model import Stage

log = logging.getLogger("strangler.slo")

LEASE_NAME = "slo"
PRUNE_INTERVAL_S = 600.0

# (event name, data) for the webhooks.
OnEvent = Callable[[str, Mapping[str, object]], None]


def transition_json(transition: Transition, state: SloState) -> dict[str, object]:
    """A transition as a webhook event's data."""
    alert = transition.alert
    return {
        "slo": transition.slo,
        "at": transition.at_s,
        "reason": transition.reason,
        "severity": None if alert is None else alert.severity,
        "burn": None if alert is None else alert.burn,
        "long_s": None if alert is None else alert.long,
        "short_s": None if alert is None else alert.short,
        "windows": None if transition.burn is None else transition.burn.to_json(),
        "budget_left_pct": state.budget_left_pct,
    }


class SloMonitor:
    """Evaluates the SLOs of one config against one store."""

    def __init__(
        self,
        store: Callable[[], Store],
        base: Callable[[], Config],
        *,
        on_event: OnEvent | None = None,
        holder: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._base = base
        self._on_event = on_event
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.clock = clock
        self._states: dict[str, SloState] = {}
        self._next_prune = 0.0

    def interval_s(self) -> float:
        return evaluate_interval_s(self._base().slos)

    def run_once(self) -> list[SloState]:
        """One evaluation of every SLO; the states it stored (none without the lease)."""
        now = self.clock()
        config = self._base()
        if not config.slos:
            return []
        store = self._store()
        lease_ttl_s = 3 * evaluate_interval_s(config.slos)
        if not store.try_lease(LEASE_NAME, self.holder, lease_ttl_s, now):
            self._states.clear()  # another process evaluates; start from the store if back
            return []
        stored = None
        states = []
        for slo in config.slos:
            previous = self._states.get(slo.name)
            if previous is None:
                if stored is None:
                    stored = store.slo_states()
                data = stored.get(slo.name)
                previous = None if data is None else state_from_json(slo, data)
            state = evaluate_now(store, slo, now, previous)
            store.put_slo_state(slo.name, state.to_json(), now)
            self._states[slo.name] = state
            states.append(state)
            for transition in state.transitions:
                self._act(store, config, slo, state, transition)
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_INTERVAL_S
            for slo in config.slos:
                # Seconds are kept a minute longer than any read of them needs.
                store.prune_slo_counts(
                    slo.name, now - slo.window_s, now - SLO_FINE_RETENTION_S - 60
                )
        return states

    def _act(
        self,
        store: Store,
        config: Config,
        slo: SloConfig,
        state: SloState,
        transition: Transition,
    ) -> None:
        kind = transition.kind
        if kind is TransitionKind.ALERT_RESOLVED:
            log.info("SLO alert resolved: %s", transition.reason)
        else:
            log.warning("SLO %s: %s", kind.value.replace("_", " "), transition.reason)
        if self._on_event is not None:
            self._on_event(kind.value, transition_json(transition, state))
        alert = transition.alert
        if (
            kind is not TransitionKind.ALERT_FIRING
            or alert is None
            or alert.severity != "page"
            or slo.on_page == "none"
        ):
            return
        service = ControlService(store, config, clock=self.clock)
        selected = {route.name for route in config.routes if slo.selects(route)}
        actor = f"slo:{slo.name}"
        for unit in service.units():
            if unit.stage is not Stage.CANARY or selected.isdisjoint(unit.routes):
                continue
            try:
                if slo.on_page == "pause":
                    service.pause(unit.unit, actor=actor, reason=transition.reason)
                else:
                    service.rollback(unit.unit, actor=actor, reason=transition.reason)
            except ChangeRefused as exc:
                # Paused already, or a person moved it meanwhile: nothing left to do.
                log.info("SLO %s: %s left as it is: %s", slo.name, unit.unit, exc)
                continue
            log.warning(
                "SLO %s: canary %s %s: %s",
                slo.name,
                unit.unit,
                "paused" if slo.on_page == "pause" else "rolled back to legacy",
                transition.reason,
            )


class SloMonitorThread(Background):
    """An SloMonitor on a daemon thread; store outages are logged once and retried."""

    def __init__(self, monitor: SloMonitor) -> None:
        super().__init__("strangler-slo")
        self.monitor = monitor

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self.monitor.interval_s()):
            try:
                self.monitor.run_once()
            except StranglerError as exc:
                if not failing:
                    log.warning("SLO monitor waiting for the control store: %s", exc)
                failing = True
                continue
            except Exception:
                log.exception("SLO monitor: this evaluation failed; the next one runs as usual")
                continue
            if failing:
                log.info("SLO monitor resumed: the control store is reachable again")
                failing = False
