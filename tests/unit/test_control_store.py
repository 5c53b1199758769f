"""The ControlStore contract (overrides, audit, windows, verdicts, leases, tokens, sessions), run
against SQLite on a real file and PostgreSQL on a fresh database per test."""

from __future__ import annotations

import threading

import psycopg
import pytest

from strangler.control.state import (
    Drill,
    Override,
    Proposal,
    SessionRecord,
    Store,
    TokenRecord,
    VerdictRecord,
    WindowDelta,
)
from strangler.control.stores import PostgresShadowStore
from strangler.control.stores.postgres import NOTIFY_CHANNEL, engine_url
from tests.unit.conftest import open_location


def _set_weight(weight_bp: int, action: str = "set_weight") -> Proposal:
    return Proposal(action=action, stage="canary", weight_bp=weight_bp, status="running")


def test_a_change_writes_the_override_and_its_audit_entry(store: Store) -> None:
    assert store.state_version() == 0
    assert store.overrides() == {}
    seen: list[Override | None] = []

    def decide(current: Override | None) -> Proposal:
        seen.append(current)
        return _set_weight(500)

    change = store.change("projects", decide, actor="ana", reason="first step", now=100.0)
    assert change is not None and change.version == 1
    assert seen == [None]
    assert store.state_version() == 1
    override = store.overrides()["projects"]
    assert (override.stage, override.weight_bp, override.status) == ("canary", 500, "running")
    assert (override.version, override.actor, override.reason) == (1, "ana", "first step")
    assert override.step_started_at == 100.0

    second = store.change(
        "projects", lambda current: _set_weight(2500, "promote"), actor="bot", reason="r", now=200.0
    )
    assert second is not None and second.version == 2
    assert second.before["weight_bp"] == 500 and second.after["weight_bp"] == 2500
    entries = store.audit()
    assert [(c.version, c.actor, c.action) for c in entries] == [
        (2, "bot", "promote"),
        (1, "ana", "set_weight"),
    ]
    assert entries[1].before == {}
    assert store.audit("other") == []


def test_a_drill_is_written_with_its_audit_entry_and_moves_the_state_version(
    store: Store,
) -> None:
    fault = {"abort": {"percent": 50.0, "status": 503}, "side": "new"}
    set_at = store.set_drill(
        "projects", Drill("projects", fault, 160.0), actor="ana", reason="drill", now=100.0
    )
    assert (set_at.version, set_at.action, set_at.before) == (1, "drill", {})
    assert set_at.after == {"fault": fault, "expires_at": 160.0}
    assert store.state_version() == 1
    drill = store.drills()["projects"]
    assert (drill.fault, drill.expires_at, drill.version, drill.actor) == (fault, 160.0, 1, "ana")
    cleared = store.set_drill("projects", None, actor="bob", reason="done", now=120.0)
    assert (cleared.action, cleared.after, cleared.before["expires_at"]) == (
        "drill_clear",
        {},
        160.0,
    )
    assert store.drills() == {}
    assert [c.action for c in store.audit("projects")] == ["drill_clear", "drill"]
    # Overrides are untouched by drills.
    assert store.overrides() == {}


def test_a_proposal_that_clears_the_override_deletes_it_and_is_audited(store: Store) -> None:
    store.change("projects", lambda current: _set_weight(500), actor="ana", reason="r", now=1.0)
    clear = Proposal("reset", None, None, "", baseline={"stage": "legacy"}, clears_override=True)
    change = store.change("projects", lambda current: clear, actor="bo", reason="r", now=2.0)
    assert change is not None and change.version == 2
    assert store.overrides() == {}
    assert store.state_version() == 2
    entry = store.audit("projects")[0]
    assert (entry.action, entry.before["weight_bp"], entry.after) == (
        "reset",
        500,
        {"stage": "legacy"},
    )
    # A later change of the unit starts from no override again.
    seen: list[Override | None] = []
    store.change(
        "projects", lambda current: seen.append(current) or _set_weight(100), actor="ana",
        reason="r", now=3.0,
    )  # fmt: skip
    assert seen == [None]


def test_decide_returning_none_or_raising_writes_nothing(store: Store) -> None:
    assert store.change("u", lambda current: None, actor="a", reason="r", now=1.0) is None

    def refuse(current: Override | None) -> Proposal:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        store.change("u", refuse, actor="a", reason="r", now=1.0)
    assert store.state_version() == 0 and store.overrides() == {} and store.audit() == []


def test_a_kept_step_start_survives_a_change(store: Store) -> None:
    store.change("u", lambda c: _set_weight(100), actor="a", reason="r", now=10.0)
    store.change(
        "u",
        lambda c: Proposal("pause", "canary", 100, "paused", keeps_step_start=True),
        actor="a",
        reason="r",
        now=50.0,
    )
    assert store.overrides()["u"].step_started_at == 10.0


def test_concurrent_changes_of_one_unit_are_serialized(location: tuple[str, str]) -> None:
    """Eight threads, each with its own store, add 1 to the weight 10 times: every increment
    decides on the previous one's result, so none is lost."""
    errors: list[BaseException] = []

    def bump() -> None:
        store = open_location(location)
        try:
            for _ in range(10):
                store.change(
                    "u",
                    lambda c: _set_weight((c.weight_bp or 0) + 1 if c else 1),
                    actor="t",
                    reason="r",
                    now=1.0,
                )
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    check = open_location(location)
    try:
        assert check.overrides()["u"].weight_bp == 80
        assert check.state_version() == 80
    finally:
        check.close()


def _window(route: str, side: str, slot: int, requests: int, errors: int) -> WindowDelta:
    statuses = {"2": requests - errors, "5": errors}
    return WindowDelta(route, side, slot, requests, errors, statuses, {"100": requests})


def test_windows_sum_over_flushes_routes_and_a_period(store: Store) -> None:
    store.add_windows(
        [
            _window("a", "new", 100, 10, 1),
            _window("a", "new", 100, 5, 0),  # another worker's flush of the same second
            _window("b", "new", 101, 7, 2),
            _window("a", "legacy", 101, 20, 0),
            _window("a", "new", 105, 99, 99),  # after the period
            _window("c", "new", 101, 99, 99),  # another route
        ]
    )
    totals = store.window_totals(["a", "b"], 100, 105)
    assert totals["new"].requests == 22 and totals["new"].errors == 3
    assert totals["new"].statuses == {"2": 19, "5": 3}
    assert totals["new"].latency == {"100": 22}
    assert totals["legacy"].requests == 20
    assert store.prune_windows(101) == 2
    assert store.window_totals(["a"], 0, 200)["new"].requests == 99


def test_verdicts_newest_first(store: Store) -> None:
    for end in (60.0, 120.0, 180.0):
        store.add_verdict(
            VerdictRecord("u", end - 60, end, 500, "pass", "none", {"outcome": "pass"})
        )
    got = store.verdicts("u", limit=2)
    assert [v.ended_at for v in got] == [180.0, 120.0]
    assert got[0].verdict == {"outcome": "pass"}
    assert store.verdicts("other") == []


def test_a_lease_has_one_holder_until_it_expires(store: Store) -> None:
    assert store.try_lease("analyzer", "one", 5.0, now=100.0)
    assert not store.try_lease("analyzer", "two", 5.0, now=103.0)
    assert store.try_lease("analyzer", "one", 5.0, now=104.0)  # renewed to 109
    assert not store.try_lease("analyzer", "two", 5.0, now=108.0)
    assert store.try_lease("analyzer", "two", 5.0, now=110.0)
    assert not store.try_lease("analyzer", "one", 5.0, now=111.0)


def test_tokens_are_found_by_hash_and_revoked(store: Store) -> None:
    token = TokenRecord("tok1", "ci", "write", "ab" * 32, 1.0, "ana")
    store.add_token(token)
    assert store.token_by_hash("ab" * 32) == token
    assert store.token_by_hash("cd" * 32) is None
    store.touch_token("tok1", 5.0)
    assert store.revoke_token("tok1", 9.0)
    assert not store.revoke_token("tok1", 10.0)
    [listed] = store.tokens()
    assert (listed.last_used_at, listed.revoked_at) == (5.0, 9.0)


def test_sessions_expire(store: Store) -> None:
    store.add_session(SessionRecord("h1", "ana", "write", "c1", 10.0, 20.0))
    assert store.session("h1", 15.0) is not None
    assert store.session("h1", 20.0) is None
    # A new session sweeps the expired ones.
    store.add_session(SessionRecord("h2", "ana", "read", "c2", 30.0, 40.0))
    assert store.session("h1", 0.0) is None
    store.delete_session("h2")
    assert store.session("h2", 31.0) is None


def test_postgresql_announces_each_change_on_commit(postgres_url: str) -> None:
    store = PostgresShadowStore(postgres_url)
    url = engine_url(postgres_url).set(drivername="postgresql")
    listener = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
    try:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        store.change("u", lambda c: _set_weight(100), actor="a", reason="r", now=1.0)
        payloads = [n.payload for n in listener.notifies(timeout=2.0, stop_after=1)]
        assert payloads == ["1"]
    finally:
        listener.close()
        store.close()
