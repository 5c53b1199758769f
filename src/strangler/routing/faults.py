"""Fault injection for drills: what a route's answers suffer on one side (an injected abort or
delay), and whether one request gets it.

Pure. Never awaits, never reads a clock or a random source: the proxy hands in its rolls and the
wall time. The same plan, rolls and time always give the same fault.

Rules:
- A fault applies after the side is chosen, only on the side it names (`new`, `legacy` or
  `both`), and before the upstream is contacted: an abort never reaches the backend.
- Abort and delay are rolled independently; an aborted request is not delayed.
- A plan with `only_when_header` applies only to requests carrying that header, from a client
  the canary override trusts (its networks) or with a valid signature in the header's value
  (`{expiry}:{hex HMAC-SHA256(secret, "fault:{path}:{expiry}")}`, the override's scheme).
- A plan with an expiry (a runtime drill) stops applying at it, whatever the snapshot in force
  says: the expiry travels with the fault, so no worker needs to hear that it ended.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from dataclasses import dataclass

from strangler.routing.canary import OverridePolicy, is_in_networks, override_message

# Rolls are uniform integers in [0, ROLL_BP): percentages are held in basis points.
ROLL_BP = 10_000

_SIGNATURE = re.compile(r"(\d{1,12}):([0-9a-fA-F]{64})")


class FaultSide(enum.StrEnum):
    """Which side's answers a fault hits."""

    NEW = "new"
    LEGACY = "legacy"
    BOTH = "both"

    def hits(self, *, is_new: bool) -> bool:
        return self is FaultSide.BOTH or (self is FaultSide.NEW) is is_new


class FaultKind(enum.StrEnum):
    """What one request suffered (the metric's `kind` label and the access log's `fault`)."""

    ABORT = "abort"
    DELAY = "delay"


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """The faults of one route on one side: from the YAML's `faults:` or a runtime drill."""

    abort_bp: int = 0
    abort_status: int = 503
    delay_bp: int = 0
    delay_s: float = 0.0
    side: FaultSide = FaultSide.NEW
    # Lowercase; b"" applies to every request.
    only_when_header: bytes = b""
    # Who may ask for a header-gated fault: the canary override's networks and secret.
    trust: OverridePolicy | None = None
    # Wall-clock seconds after which the plan no longer applies; 0.0: never (the YAML's).
    expires_at: float = 0.0
    # "yaml" or "drill", for logs and `strangler routes`.
    source: str = "yaml"

    def is_expired(self, now: float) -> bool:
        return 0.0 < self.expires_at <= now


def pick_fault(plan: FaultPlan, abort_roll: int, delay_roll: int) -> FaultKind | None:
    """The fault one request gets, from two uniform rolls in [0, ROLL_BP)."""
    if abort_roll < plan.abort_bp:
        return FaultKind.ABORT
    if delay_roll < plan.delay_bp:
        return FaultKind.DELAY
    return None


def is_fault_requested(
    plan: FaultPlan, client_ip: str, path: str, header_value: str | None, now: float
) -> bool:
    """Whether a request may have the header-gated fault of `plan`: it carries the header, and
    comes from a network the canary override trusts or signs the header's value."""
    if header_value is None:
        return False
    trust = plan.trust
    if trust is None:
        return False
    if trust.networks and is_in_networks(client_ip, trust.networks):
        return True
    if not trust.secret:
        return False
    match = _SIGNATURE.fullmatch(header_value.strip())
    if match is None:
        return False
    expiry = int(match[1])
    if not now < expiry <= now + trust.max_ttl_s:
        return False
    expected = hmac.new(
        trust.secret, override_message("fault", path, expiry), hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected.encode("ascii"), match[2].lower().encode("ascii"))


def sign_fault(secret: bytes, path: str, expiry: int) -> str:
    """The header value that asks for a header-gated fault on `path` until `expiry`."""
    mac = hmac.new(secret, override_message("fault", path, expiry), hashlib.sha256).hexdigest()
    return f"{expiry}:{mac}"
