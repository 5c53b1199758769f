"""`LoginThrottle`: how long a failed login makes the next attempt wait, per user and client.

Rules:
- Failures are counted per `LoginKey`: (user name, client address). A token login has no user
  name; its failures count per client under user None. One attacker's failures never hold back
  another user from the same address, nor the same user from another address.
- After the n-th failure in a row of a key, its next attempt waits
  min(2 ** (n - 1) s, 60 / login_attempts_per_minute s): 1, 2, 4, 6, 6 ... s by default, so once
  at the cap a key makes at most `login_attempts_per_minute` failed attempts a minute.
- An attempt is admitted before the credentials are checked. During a backoff it is refused
  with the seconds left (a 429 with Retry-After): it is not judged, so a guess during the
  backoff can't be confirmed, and it is not a failure, so it does not lengthen the backoff.
  Once admitted, a key has one attempt in judgement at a time (scrypt runs in a thread: without
  this, concurrent guesses would all be judged before the first failure is recorded).
- A success forgets its key's failures; an attempt that could not be judged (the store was
  down) is given back and counts for nothing. A key, or a user, with no failure for
  FORGET_AFTER_S is forgotten: yesterday's typos cost nothing tomorrow.
- Guessing one user's password from many addresses: once a user name has failures from
  SPREAD_CLIENTS different clients that have not logged in since, the whole user is held too:
  after each of its failures, from any client, every attempt for that user waits the cap (60 /
  login_attempts_per_minute s, flat, no doubling) and one attempt is judged at a time. So, once
  held, the user's password is tried at most `login_attempts_per_minute` times a minute however
  many addresses try it. A client that logs in as the user stops counting towards its spread;
  a held user stays held until too few failing clients are left, or it has had no failure for
  FORGET_AFTER_S.
- Unknown user names are treated exactly as known ones: the throttle never tells them apart.
- Refusals are counted by reason (`strangler_admin_login_refusals_total{reason}`, shown by
  the repr) and per key; the caller logs each failure with its key's refusals.
- In memory, per process; thread-safe (one lock); bounded: at most MAX_TRACKED_KEYS keys and
  MAX_TRACKED_USERS users, the least recently failed forgotten first.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from strangler.observe.counters import Counters

# Keys (user, client) and user names remembered; past it the least recently failed is forgotten.
MAX_TRACKED_KEYS = 10_000
MAX_TRACKED_USERS = 10_000
# The first failure's backoff; each further failure in a row doubles it, up to the cap.
BACKOFF_BASE_S = 1.0
# A key or user with no failure for this long is forgotten.
FORGET_AFTER_S = 900.0
# Failing clients (without a success since) that make a user held as a whole. A person on a
# laptop, a phone and a VPN is 3; an attacker spreading guesses over addresses is more.
SPREAD_CLIENTS = 4
# What a refused attempt waits when another attempt of its key (or held user) is being judged.
BUSY_WAIT_S = 1.0
# Doubling stops here whatever the cap: 2 ** 30 s is far past any cap.
_MAX_DOUBLINGS = 30

REFUSALS_COUNTER = "admin_login_refusals_total"
FAILURES_COUNTER = "admin_login_failures_total"

_Name = TypeVar("_Name")
_State = TypeVar("_State", "_KeyState", "_UserState")


class Refusal(StrEnum):
    """Why an attempt was refused unjudged; the label of strangler_admin_login_refusals_total."""

    BACKOFF = "backoff"  # this (user, client) failed and its backoff has not passed
    USER_HELD = "user_held"  # the user failed from many clients; its flat backoff has not passed
    BUSY = "busy"  # an attempt of this key (or of this held user) is being judged right now


@dataclass(frozen=True, slots=True)
class LoginKey:
    """Whose failures an attempt counts towards: a user name (None: a token login) and the
    client address (the peer, or the client a trusted proxy forwarded for)."""

    user: str | None
    client: str


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Refusal
    wait_s: float


@dataclass(frozen=True, slots=True)
class Failure:
    """What a failed attempt did, for the log line."""

    in_a_row: int
    # Until the key's next attempt is judged: its backoff, or the user's hold if longer.
    wait_s: float
    # Attempts of this key refused unjudged since its last success.
    refused: int
    is_user_held: bool


@dataclass(slots=True)
class _KeyState:
    failures: int = 0
    last_failure_at: float = 0.0
    not_before: float = 0.0
    refused: int = 0
    is_judging: bool = False


@dataclass(slots=True)
class _UserState:
    # Clients that failed as this user and have not logged in since (at most SPREAD_CLIENTS).
    failing_clients: set[str] = field(default_factory=set)
    last_failure_at: float = 0.0
    not_before: float = 0.0
    is_judging: bool = False

    @property
    def is_held(self) -> bool:
        return len(self.failing_clients) >= SPREAD_CLIENTS


def backoff_s(failures: int, per_minute: int) -> float:
    """The wait after the `failures`-th failure in a row: doubling from 1 s, capped."""
    cap_s = 60.0 / per_minute
    return min(BACKOFF_BASE_S * 2.0 ** min(failures - 1, _MAX_DOUBLINGS), cap_s)


class LoginThrottle:
    """Failed logins by (user, client), with exponential backoff. Thread-safe, bounded.

    Call `admit` before checking credentials; when it admits (None), call exactly one of
    `failed`, `succeeded` or `unjudged` for the same key once the attempt is judged (or not).
    """

    def __init__(
        self,
        *,
        max_keys: int = MAX_TRACKED_KEYS,
        max_users: int = MAX_TRACKED_USERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_keys = max_keys
        self._max_users = max_users
        self._clock = clock
        self._lock = threading.Lock()
        # Least recently touched first, so the front is what goes stale or is evicted first.
        self._keys: OrderedDict[LoginKey, _KeyState] = OrderedDict()
        self._users: OrderedDict[str, _UserState] = OrderedDict()
        # strangler_admin_login_refusals_total{reason}, strangler_admin_login_failures_total.
        self.counters = Counters()

    def __repr__(self) -> str:
        with self._lock:
            held = sum(1 for state in self._users.values() if state.is_held)
            return (
                f"<LoginThrottle {len(self._keys)} keys, {len(self._users)} users "
                f"({held} held), {self._refused_total()} refused>"
            )

    def admit(self, key: LoginKey) -> Refused | None:
        """None: judge this attempt now (the key is marked as judging). Refused: don't."""
        with self._lock:
            now = self._clock()
            self._forget_stale(now)
            state = _live(self._keys, key, now)
            user = None if key.user is None else _live(self._users, key.user, now)
            refused = self._refusal(state, user, now)
            if refused is not None:
                self.counters.inc(REFUSALS_COUNTER, refused.reason.value)
                if state is not None:
                    state.refused += 1
                return refused
            if state is None:
                state = _KeyState()
                _put(self._keys, key, state, self._max_keys)
            state.is_judging = True
            if user is not None and user.is_held:
                user.is_judging = True
            return None

    def failed(self, key: LoginKey, per_minute: int) -> Failure:
        """The admitted attempt of `key` had wrong credentials: start or double its backoff."""
        with self._lock:
            now = self._clock()
            self.counters.inc(FAILURES_COUNTER)
            state = _live(self._keys, key, now)
            if state is None:  # evicted while it was judged
                state = _KeyState()
            state.failures += 1
            state.last_failure_at = now
            state.not_before = now + backoff_s(state.failures, per_minute)
            state.is_judging = False
            _put(self._keys, key, state, self._max_keys)
            wait_s = state.not_before - now
            is_user_held = False
            if key.user is not None:
                user = _live(self._users, key.user, now)
                if user is None:
                    user = _UserState()
                if len(user.failing_clients) < SPREAD_CLIENTS:
                    user.failing_clients.add(key.client)
                user.last_failure_at = now
                user.is_judging = False
                if user.is_held:
                    is_user_held = True
                    user.not_before = now + 60.0 / per_minute
                    wait_s = max(wait_s, user.not_before - now)
                _put(self._users, key.user, user, self._max_users)
            return Failure(state.failures, wait_s, state.refused, is_user_held)

    def succeeded(self, key: LoginKey) -> None:
        """The admitted attempt of `key` logged in: forget the key's failures."""
        with self._lock:
            self._keys.pop(key, None)
            if key.user is None:
                return
            user = self._users.get(key.user)
            if user is None:
                return
            user.failing_clients.discard(key.client)
            user.is_judging = False
            if not user.failing_clients:
                del self._users[key.user]

    def unjudged(self, key: LoginKey) -> None:
        """The admitted attempt of `key` was never judged (the store was down): give it back."""
        with self._lock:
            state = self._keys.get(key)
            if state is not None:
                state.is_judging = False
                if state.failures == 0:
                    del self._keys[key]
            user = None if key.user is None else self._users.get(key.user)
            if user is not None:
                user.is_judging = False

    def refusals(self, reason: Refusal) -> int:
        return self.counters.get(REFUSALS_COUNTER, reason.value)

    def _refused_total(self) -> int:
        return sum(self.counters.get(REFUSALS_COUNTER, reason.value) for reason in Refusal)

    def _refusal(
        self, state: _KeyState | None, user: _UserState | None, now: float
    ) -> Refused | None:
        if state is not None:
            if state.is_judging:
                return Refused(Refusal.BUSY, BUSY_WAIT_S)
            if now < state.not_before:
                return Refused(Refusal.BACKOFF, state.not_before - now)
        if user is not None and user.is_held:
            if user.is_judging:
                return Refused(Refusal.BUSY, BUSY_WAIT_S)
            if now < user.not_before:
                return Refused(Refusal.USER_HELD, user.not_before - now)
        return None

    def _forget_stale(self, now: float) -> None:
        _forget_stale_front(self._keys, now)
        _forget_stale_front(self._users, now)


def _is_stale(state: _KeyState | _UserState, now: float) -> bool:
    return not state.is_judging and now - state.last_failure_at >= FORGET_AFTER_S


def _live(states: OrderedDict[_Name, _State], name: _Name, now: float) -> _State | None:
    """The state of `name`, or None (forgetting it) when it is stale."""
    state = states.get(name)
    if state is not None and _is_stale(state, now):
        del states[name]
        return None
    return state


def _forget_stale_front(states: OrderedDict[_Name, _State], now: float) -> None:
    """Drop stale states from the front (least recently failed first) until a live one."""
    while states and _is_stale(next(iter(states.values())), now):
        states.popitem(last=False)


def _put(states: OrderedDict[_Name, _State], name: _Name, state: _State, limit: int) -> None:
    """Store `state` as the most recently failed; forget the least recent past `limit`."""
    states[name] = state
    states.move_to_end(name)
    while len(states) > limit:
        states.popitem(last=False)
