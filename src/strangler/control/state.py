"""The control-state port: runtime overrides, the audit log, rollout windows and verdicts,
leases, and admin credentials. What the CLI, the admin API and the analyzer change, and what
every worker converges on.

Pure: dataclasses and a Protocol, no I/O. The SQL adapters implement it next to ShadowStore.

Rules every adapter keeps:
- The state's version is the id of the newest audit entry. Every change of an override writes
  the override and its audit entry in one transaction, so no change is ever unaudited and a
  reader that sees version V sees every override up to V.
- `change` runs the caller's `decide` inside the write transaction, on the unit's current
  override: two changes of one unit (a person and the analyzer) are serialized, and each
  decides on what the other wrote.
- Rollout windows are insert-only rows (one per worker flush, route, side and second); readers
  sum them. `prune_windows` bounds them by age.
- SLO counts are additive upserts, like traffic: per second (kept for SLO_FINE_RETENTION_S,
  for alert windows shorter than that) and per minute (kept for the SLO's window). Readers ask
  for buckets of any whole number of seconds or minutes; the store sums them.
- An SLO's last evaluation is one JSON row per SLO name, overwritten by each evaluation.
- Secrets are never stored: tokens and sessions by SHA-256 hash only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from strangler.control.data_runs import DataStore
from strangler.control.data_watch import DataWatchStore
from strangler.control.store import ShadowStore


@dataclass(frozen=True, slots=True)
class Override:
    """A runtime change on top of the YAML for one rollout unit (a canary group, else a route).

    `stage` and `weight_bp` are None where the YAML stays in force."""

    unit: str
    stage: str | None
    weight_bp: int | None
    status: str  # a RolloutStatus value, "" before any rollout
    # When the current weight took effect: the analyzer's intervals start here.
    step_started_at: float = 0.0
    version: int = 0
    updated_at: float = 0.0
    actor: str = ""
    reason: str = ""

    def as_dict(self) -> dict[str, object]:
        """The override's values, as audit entries keep them in `before` and `after`."""
        return {
            "stage": self.stage,
            "weight_bp": self.weight_bp,
            "status": self.status,
            "step_started_at": self.step_started_at,
        }

    def to_json(self) -> dict[str, object]:
        """The override with who set it and when, as reports and the admin API show it."""
        return {
            **self.as_dict(),
            "version": self.version,
            "actor": self.actor,
            "reason": self.reason,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_json(cls, unit: str, value: Mapping[str, object]) -> Override:
        """The inverse of `to_json` (an admin API answer read back by the CLI); ValueError
        for a value of the wrong type."""
        stage, weight, status = value.get("stage"), value.get("weight_bp"), value.get("status")
        if stage is not None and not isinstance(stage, str):
            raise ValueError(f"override of {unit!r}: stage {stage!r} is not a string")
        if weight is not None and not isinstance(weight, int):
            raise ValueError(f"override of {unit!r}: weight_bp {weight!r} is not an integer")
        return cls(
            unit=unit,
            stage=stage,
            weight_bp=weight,
            status=str(status or ""),
            step_started_at=_number(value.get("step_started_at")),
            version=int(_number(value.get("version"))),
            updated_at=_number(value.get("updated_at")),
            actor=str(value.get("actor") or ""),
            reason=str(value.get("reason") or ""),
        )


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


@dataclass(frozen=True, slots=True)
class Drill:
    """A runtime fault on every route of one rollout unit, until `expires_at` (wall clock).

    `fault` is the fault as the YAML's `faults:` spells it (FaultsConfig's JSON). A worker
    ignores a drill past its expiry, so an expired row changes nothing and needs no clearing."""

    unit: str
    fault: Mapping[str, object]
    expires_at: float
    version: int = 0
    updated_at: float = 0.0
    actor: str = ""
    reason: str = ""

    def as_dict(self) -> dict[str, object]:
        """The drill as audit entries keep it in `before` and `after`."""
        return {"fault": dict(self.fault), "expires_at": self.expires_at}

    def to_json(self) -> dict[str, object]:
        return {
            "unit": self.unit,
            **self.as_dict(),
            "version": self.version,
            "actor": self.actor,
            "reason": self.reason,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class Proposal:
    """What a `decide` callback wants written; `None` from decide means "no change"."""

    action: str  # promote, rollback, pause, resume, set_weight, analyzer verdict actions...
    stage: str | None
    weight_bp: int | None
    status: str
    # Keep the current step's start (a pause, a verdict that does not move the weight).
    keeps_step_start: bool = False
    evidence: Mapping[str, object] | None = None
    # The unit's state as the YAML has it: the audit entry's "before" when the unit had no
    # override yet, and its "after" when the proposal clears the override.
    baseline: Mapping[str, object] | None = None
    # Delete the unit's override (the YAML stands again) instead of writing one.
    clears_override: bool = False


@dataclass(frozen=True, slots=True)
class Change:
    """One audit entry: who changed which unit, when, from what to what, and why."""

    version: int
    at: float
    actor: str
    action: str
    unit: str
    before: Mapping[str, object]
    after: Mapping[str, object]
    reason: str
    evidence: Mapping[str, object] | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "unit": self.unit,
            "before": dict(self.before),
            "after": dict(self.after),
            "reason": self.reason,
            "evidence": None if self.evidence is None else dict(self.evidence),
        }


@dataclass(frozen=True, slots=True)
class WindowDelta:
    """One worker's answers of one route and side within one second (`slot`, unix seconds)."""

    route: str
    side: str  # "legacy" or "new"
    slot: int
    requests: int
    errors: int  # 5xx answers, including the gateway's own for a failed connection
    statuses: Mapping[str, int]  # by status class: {"2": 410, "5": 3}
    latency: Mapping[str, int]  # LatencyHistogram.to_json()

    def __post_init__(self) -> None:
        if self.side not in ("legacy", "new"):
            raise ValueError(f"side must be legacy or new, not {self.side!r}")
        if self.requests < 0 or not 0 <= self.errors <= self.requests:
            raise ValueError(f"bad window counts for {self.route!r}: {self.requests}/{self.errors}")


@dataclass(frozen=True, slots=True)
class WindowTotals:
    """One side of some routes over a period, summed over every flush of every worker."""

    requests: int = 0
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    # Sparse histogram buckets (LatencyHistogram.to_json form), summed.
    latency: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VerdictRecord:
    """The analyzer's judgement of one interval of one unit, and what it did about it."""

    unit: str
    started_at: float
    ended_at: float
    weight_bp: int
    outcome: str
    action: str
    verdict: Mapping[str, object]  # IntervalVerdict.to_json()

    def to_json(self) -> dict[str, object]:
        return {
            "unit": self.unit,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "weight_bp": self.weight_bp,
            "outcome": self.outcome,
            "action": self.action,
            "verdict": dict(self.verdict),
        }


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """An admin API token; the token itself is never stored, only its SHA-256 `hash`."""

    id: str
    name: str
    scope: str  # "read" or "write"
    hash: str
    created_at: float
    created_by: str
    last_used_at: float | None = None
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A browser session of the admin API, by the SHA-256 hash of its cookie value."""

    hash: str
    subject: str
    scope: str
    csrf_hash: str
    created_at: float
    expires_at: float
    # The token it was opened with (None for a configured user): revoking it ends the session.
    token_id: str | None = None


Decide = Callable[[Override | None], Proposal | None]


class ControlStore(Protocol):
    """Durable control state shared by every worker and replica. Blocking, like ShadowStore."""

    def state_version(self) -> int:
        """The newest audit entry's version, 0 for a store nobody changed. Cheap: workers call
        it several times a second."""
        ...

    def overrides(self) -> dict[str, Override]:
        """Every unit's override, by unit."""
        ...

    def change(
        self, unit: str, decide: Decide, *, actor: str, reason: str, now: float
    ) -> Change | None:
        """Run `decide` on the unit's current override inside one write transaction; write its
        Proposal (or delete the override, when the proposal clears it) and the audit entry, or
        nothing when it returns None. `decide` may raise to refuse (the exception propagates,
        nothing is written)."""
        ...

    def audit(self, unit: str | None = None, *, limit: int = 100) -> list[Change]:
        """Newest first; one unit's, or all."""
        ...

    def drills(self) -> dict[str, Drill]:
        """Every unit's drill, by unit, expired ones included (readers skip those)."""
        ...

    def set_drill(
        self, unit: str, drill: Drill | None, *, actor: str, reason: str, now: float
    ) -> Change:
        """Replace the unit's drill with `drill` (None clears it) and write its audit entry
        (action `drill` or `drill_clear`) in one transaction: the state version moves."""
        ...

    def add_windows(self, windows: Sequence[WindowDelta]) -> None: ...

    def window_totals(
        self, routes: Sequence[str], since: float, until: float
    ) -> dict[str, WindowTotals]:
        """By side ("legacy", "new"): the sums over `routes` for slots in [since, until)."""
        ...

    def prune_windows(self, before: float) -> int:
        """Delete windows of slots before `before`; returns rows removed."""
        ...

    def add_verdict(self, record: VerdictRecord) -> None: ...

    def verdicts(self, unit: str, *, limit: int = 20) -> list[VerdictRecord]:
        """Newest first."""
        ...

    def try_lease(self, name: str, holder: str, ttl_s: float, now: float) -> bool:
        """Take or renew the lease `name` for `holder` until now + ttl_s; False while another
        holder's lease runs. One analyzer per store, whatever the number of replicas."""
        ...

    def add_token(self, token: TokenRecord) -> None: ...

    def token_by_hash(self, token_hash: str) -> TokenRecord | None: ...

    def tokens(self) -> list[TokenRecord]: ...

    def revoke_token(self, token_id: str, now: float) -> bool:
        """Revoke the token and end the sessions opened with it; False if it was unknown or
        revoked already."""
        ...

    def touch_token(self, token_id: str, now: float) -> None: ...

    def add_session(self, session: SessionRecord) -> None: ...

    def session(self, session_hash: str, now: float) -> SessionRecord | None:
        """The unexpired session, or None."""
        ...

    def delete_session(self, session_hash: str) -> None: ...


# Per-second SLO counts are kept this long: alert windows shorter than it are measured to the
# second, longer ones (and the budget) from per-minute counts.
SLO_FINE_RETENTION_S = 3600


@dataclass(frozen=True, slots=True)
class SloDelta:
    """Good and bad answers of one SLO within one second (`second`, unix seconds), from one
    worker's flush."""

    slo: str
    second: int
    good: int
    bad: int

    def __post_init__(self) -> None:
        if self.good < 0 or self.bad < 0:
            raise ValueError(f"negative SLO counts for {self.slo!r}: {self.good}/{self.bad}")


@dataclass(frozen=True, slots=True)
class SloSample:
    """Counts of one bucket of an SLO's series, keyed by the bucket's start (epoch seconds)."""

    at_s: float
    good: int
    bad: int


class SloStore(Protocol):
    """Per-SLO good/bad series and each SLO's last evaluation."""

    def add_slo_counts(self, deltas: Sequence[SloDelta]) -> None:
        """Add one flush of counts to the per-second and per-minute series, atomically."""
        ...

    def slo_samples(self, slo: str, since: float, until: float, bucket_s: int) -> list[SloSample]:
        """The SLO's counts in [since, until), summed into buckets of `bucket_s` seconds (a
        divisor of 60 reads the per-second series, a multiple of 60 the per-minute one), keyed
        by each bucket's start, oldest first; empty buckets are left out."""
        ...

    def prune_slo_counts(self, slo: str, before: float, fine_before: float) -> int:
        """Drop the SLO's per-minute counts of minutes that start before `before` and its
        per-second counts before `fine_before`. Returns rows removed."""
        ...

    def put_slo_state(self, slo: str, state: Mapping[str, object], now: float) -> None:
        """Store the SLO's latest evaluation (its JSON), replacing the one before."""
        ...

    def slo_states(self) -> dict[str, dict[str, object]]:
        """Every SLO's latest stored evaluation, by name."""
        ...


class Store(ShadowStore, ControlStore, SloStore, DataStore, DataWatchStore, Protocol):
    """Every port: what `open_store` returns."""


class SharedStore:
    """One store for every thread of a process (the flush, the state watcher, the analyzer):
    opened once, by whichever needs it first, so the schema check and the connection pool are
    not paid three times. SQLAlchemy's pool makes one store safe to share between threads.

    A failed open raises and is tried again by the next caller. `close` is the owner's, once
    every thread that uses the store has stopped."""

    def __init__(self, opener: Callable[[], Store]) -> None:
        self._opener = opener
        self._lock = threading.Lock()
        self._store: Store | None = None

    def get(self) -> Store:
        with self._lock:
            if self._store is None:
                self._store = self._opener()
            return self._store

    def close(self) -> None:
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()
