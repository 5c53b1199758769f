"""A traffic generator for the demo: a steady, realistic mix of browsers and API clients.

Most requests are anonymous reads of pages and of the JSON API, sent by a pool of `visitors`
that each keep their own cookie jar, as browsers do: a canary's sticky cookie then holds each
visitor to one side, and the canary sees many users rather than one. A few are "writers" who open
the login form, log in with its authenticity token, read the fresh token from the next page's
`<meta name="csrf-token">`, and then create, rename and delete a project through the API with
`X-CSRF-Token` before logging out. Every response is counted by status and by the backend that
answered (`backend_of`).

A few are "members" who exercise the Rails bridge: they log in on legacy the same way, read
their user id from the account page, then ask the new app who they are (`GET /api/me`, served by
the new app, which knows them only from the gateway's identity token) and star a project there
with the page's X-CSRF-Token (the gateway checks it before the new app sees the request). Each
check that passes is counted in `TrafficStats.identity_ok`; one that fails is a `flow:` error
(`me_rejected`, `me_wrong_user`, `star_rejected`, `star_wrong_user`). Against the legacy app
alone these fail, as they should: only the gateway makes the identity token.

The demo's canary route (CANARY_ROUTE, `GET /api/projects/:id`) needs more traffic than the mix
gives it: the analyzer judges each interval only with enough answers from both sides, and at a
first step of 5 % new gets one request in twenty. `api_rate_per_s` adds a second stream of that
read alone, from the same visitors (API clients polling a project, say). Answers to that route
are tallied per side in `TrafficStats.canary`, 5xx apart: when the demo's chaos switch breaks the
new app, its 503s show there, and never as generator errors or failed identity checks.

Rules:
- Open loop at `rate_per_s` (and `api_rate_per_s`): a tick starts one action whether or not
  earlier ones finished, so a slow backend shows up as latency and errors, not as a politely
  lower rate. In-flight actions are bounded by `max_in_flight` per stream; a tick that finds no
  free slot is skipped and counted, never queued.
- Never raises because of what the server does: transport errors, unexpected statuses and broken
  flows are counted in `TrafficStats.errors`. Only bad arguments raise (ValueError).
- Deterministic for a given `seed`, apart from what the server and the clock do: each stream
  draws from its own generator, so the API stream never shifts the mix's choices.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import itertools
import logging
import random
import re
import signal
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx

from strangler.demo.seed import seed_projects

USER_AGENT = "strangler-demo-traffic/0.1"
# How long a stopped generator waits for in-flight actions before cancelling them.
DRAIN_TIMEOUT_S = 5.0
_TIMEOUT = httpx.Timeout(10.0, connect=2.0)
_FORM_TOKEN = re.compile(r'name="authenticity_token" value="([^"]+)"')
_META_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
_ACCOUNT_USER_ID = re.compile(r"\(user #(\d+)\)")
_MAX_BACKEND_LABEL_CHARS = 32
# Enough that at a 5 % canary step about 25 visitors land on new: a share within a point of the
# weight, where 20 visitors would often give none or two.
DEFAULT_VISITORS = 500
# The `flow:` errors of a failed identity check (see the module docstring).
IDENTITY_FAILURES = ("me_rejected", "me_wrong_user", "star_rejected", "star_wrong_user")
_log = logging.getLogger(__name__)


class Action(enum.StrEnum):
    """One thing a simulated user does; most are one request, WRITE_SESSION is seven,
    IDENTITY_SESSION six."""

    HOME = "home"
    PROJECTS_PAGE = "projects_page"
    PROJECT_PAGE = "project_page"
    API_INDEX = "api_index"
    API_SHOW = "api_show"
    API_TASKS = "api_tasks"
    API_MISSING = "api_missing"
    REPORT = "report"
    HEALTH = "health"
    WRITE_SESSION = "write_session"
    IDENTITY_SESSION = "identity_session"


# Reads dominate, as on most line-of-business apps; weights are relative, not percentages.
DEFAULT_MIX: Mapping[Action, float] = {
    Action.HOME: 5,
    Action.PROJECTS_PAGE: 14,
    Action.PROJECT_PAGE: 14,
    Action.API_INDEX: 20,
    Action.API_SHOW: 20,
    Action.API_TASKS: 10,
    Action.API_MISSING: 3,
    Action.REPORT: 5,
    Action.HEALTH: 4,
    Action.WRITE_SESSION: 5,
    Action.IDENTITY_SESSION: 5,
}

_READS: Mapping[Action, str] = {
    Action.HOME: "/",
    Action.PROJECTS_PAGE: "/projects",
    Action.PROJECT_PAGE: "/projects/{id}",
    Action.API_INDEX: "/api/projects.json",
    Action.API_SHOW: "/api/projects/{id}.json",
    Action.API_TASKS: "/api/projects/{id}/tasks.json",
    Action.API_MISSING: "/api/projects/999999.json",
    Action.REPORT: "/reports/projects.csv",
    Action.HEALTH: "/up",
}


# The demo's canary route (demo.yaml) and the reads that hit it: their answers are tallied per side.
CANARY_ROUTE = "projects.show.api"
_CANARY_ACTIONS = frozenset({Action.API_SHOW, Action.API_MISSING})
# The shared client's own jar: visitors bring their cookies, and it must keep none of theirs, or
# a visitor without cookies yet would be sent with another's.
_NO_COOKIES = DefaultCookiePolicy(allowed_domains=[])


def backend_of(response: httpx.Response) -> str:
    """Which backend answered: its `X-Served-By`, else "legacy" for a Rails-style answer.

    The legacy app does not name itself, like most monoliths; Rails' `X-Runtime` header gives it
    away. Anything else (for example an error the gateway made up itself) is "unknown".
    """
    served_by: str | None = response.headers.get("x-served-by")
    if served_by:
        return served_by[:_MAX_BACKEND_LABEL_CHARS]
    return "legacy" if "x-runtime" in response.headers else "unknown"


@dataclass(slots=True)
class TrafficStats:
    """What one run of the generator saw. Mutable: it is a tally, filled while traffic runs."""

    by_status: Counter[int] = field(default_factory=Counter)
    by_backend: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    # Identity checks that passed: "me" (the new app knew the user), "star" (a CSRF-checked
    # write reached the new app as that user).
    identity_ok: Counter[str] = field(default_factory=Counter)
    # Answers of CANARY_ROUTE by the side that gave them (`backend_of`), and its 5xx by side.
    canary: Counter[str] = field(default_factory=Counter)
    canary_5xx: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    elapsed_s: float = 0.0
    # `canary` and `canary_5xx` as the previous progress line saw them.
    _canary_seen: tuple[Counter[str], Counter[str]] = field(
        default_factory=lambda: (Counter(), Counter()), init=False, repr=False
    )

    @property
    def responses(self) -> int:
        return sum(self.by_status.values())

    def count_status_class(self, hundreds: int) -> int:
        """Responses whose status is in `hundreds`xx, e.g. `count_status_class(2)` for 2xx."""
        return sum(n for status, n in self.by_status.items() if status // 100 == hundreds)

    def record(self, response: httpx.Response) -> None:
        self.by_status[response.status_code] += 1
        self.by_backend[backend_of(response)] += 1

    def record_canary(self, response: httpx.Response) -> None:
        """Count one answer of CANARY_ROUTE (already counted by `record`) by side."""
        side = backend_of(response)
        self.canary[side] += 1
        if response.status_code >= 500:
            self.canary_5xx[side] += 1

    def render(self) -> str:
        """A short human summary, one line per dimension."""
        rate = self.responses / self.elapsed_s if self.elapsed_s > 0 else 0.0
        lines = [
            f"traffic: {self.responses} responses in {self.elapsed_s:.1f} s ({rate:.1f}/s), "
            f"{sum(self.errors.values())} errors, {self.skipped} skipped ticks",
            "  by status:  " + _tally(sorted(self.by_status.items())),
            "  by backend: " + _tally(sorted(self.by_backend.items())),
        ]
        if self.has_identity_traffic:
            lines.append("  identity:   " + self.identity_line())
        if self.canary:
            lines.append(
                f"  canary:     {CANARY_ROUTE}: {_tally(sorted(self.canary.items()))}"
                + _five_xx(self.canary_5xx)
            )
        if self.errors:
            lines.append("  errors:     " + _tally(sorted(self.errors.items())))
        return "\n".join(lines)

    @property
    def has_identity_traffic(self) -> bool:
        return bool(self.identity_ok or self.actions[Action.IDENTITY_SESSION.value])

    def identity_line(self) -> str:
        """How the Rails bridge checks went: passed, and failed (any `flow:` error of theirs)."""
        failed = sum(self.errors[f"flow:{reason}"] for reason in IDENTITY_FAILURES)
        return (
            f"/api/me knew the user x {self.identity_ok['me']}, "
            f"star as the user x {self.identity_ok['star']}, failed x {failed}"
        )

    def progress_line(self) -> str:
        """One line while traffic runs: responses, by backend, errors, the identity checks, and
        the canary route's split since the previous progress line (the weight in force now)."""
        line = (
            f"{self.responses} responses ({_tally(sorted(self.by_backend.items()))}), "
            f"{sum(self.errors.values())} errors"
        )
        if self.has_identity_traffic:
            line += "; identity: " + self.identity_line()
        if self.canary:
            seen, seen_5xx = self._canary_seen
            answers, failed = self.canary - seen, self.canary_5xx - seen_5xx
            self._canary_seen = (self.canary.copy(), self.canary_5xx.copy())
            total = sum(answers.values())
            share = f"{answers['new'] / total * 100:.0f} %" if total else "-"
            line += f"; canary {CANARY_ROUTE}: new {share} of the last {total}" + _five_xx(failed)
        return line


def _five_xx(by_side: Counter[str]) -> str:
    return f" (5xx: {_tally(sorted(by_side.items()))})" if by_side else ""


def _tally(items: list[tuple[Any, int]]) -> str:
    return ", ".join(f"{key} x {count}" for key, count in items) or "-"


class _Session:
    """One simulated client: an httpx client plus the shared tally, and the cookie jar: the
    client's own, or `cookies` (a visitor's) when the client is shared."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        stats: TrafficStats,
        rng: random.Random,
        cookies: httpx.Cookies | None = None,
    ) -> None:
        self.client = client
        self.stats = stats
        self.rng = rng
        self.cookies = cookies

    async def send(self, method: str, url: str, **kwargs: Any) -> httpx.Response | None:
        # W3C trace context on every request, so the gateway's traces have a browser-side root.
        traceparent = (
            f"00-{self.rng.getrandbits(128) | 1:032x}-{self.rng.getrandbits(64) | 1:016x}-01"
        )
        headers = {"traceparent": traceparent, **kwargs.pop("headers", {})}
        try:
            if self.cookies is None:
                response = await self.client.request(method, url, headers=headers, **kwargs)
            else:
                request = self.client.build_request(method, url, headers=headers, **kwargs)
                self.cookies.set_cookie_header(request)
                response = await self.client.send(request)
                self.cookies.extract_cookies(response)
        except httpx.HTTPError as exc:
            self.stats.errors[type(exc).__name__] += 1
            return None
        self.stats.record(response)
        return response

    def fail(self, reason: str) -> None:
        self.stats.errors[f"flow:{reason}"] += 1


async def _read(session: _Session, action: Action, project_ids: list[int]) -> None:
    path = _READS[action].format(id=session.rng.choice(project_ids))
    accept = "application/json" if path.startswith("/api/") else "text/html,*/*;q=0.8"
    response = await session.send("GET", path, headers={"accept": accept})
    if response is not None and action in _CANARY_ACTIONS:
        session.stats.record_canary(response)


async def _log_in(session: _Session, email: str) -> httpx.Response | None:
    """Log in through the form; the account page after it, or None (the failure is counted)."""
    login_page = await session.send("GET", "/login")
    form_token = _first(_FORM_TOKEN, login_page)
    if form_token is None:
        session.fail("no_login_form")
        return None
    form = {"email": email, "password": "secret", "authenticity_token": form_token}
    logged_in = await session.send("POST", "/login", data=form)
    if logged_in is None or logged_in.status_code != 302:
        session.fail("login_rejected")
        return None
    # Logging in resets the session and its CSRF token, so the token must come from a new page.
    return await session.send("GET", "/account")


async def _write_session(session: _Session, serial: int) -> None:
    account = await _log_in(session, f"writer{serial % 7}@example.com")
    if account is None:
        return
    csrf = _first(_META_TOKEN, account)
    if csrf is None:
        session.fail("no_csrf_meta")
        return
    api = {"x-csrf-token": csrf, "accept": "application/json"}
    created = await session.send(
        "POST", "/api/projects.json", json={"project": {"name": f"Demo {serial}"}}, headers=api
    )
    project_id = _created_id(created)
    if project_id is None:
        session.fail("create_rejected")
    else:
        body = {"project": {"name": f"Demo {serial} (renamed)"}}
        await session.send("PATCH", f"/api/projects/{project_id}.json", json=body, headers=api)
        await session.send("DELETE", f"/api/projects/{project_id}.json", headers=api)
    await session.send("POST", "/logout", data={"authenticity_token": csrf})


async def _identity_session(session: _Session, serial: int, project_ids: list[int]) -> None:
    account = await _log_in(session, f"member{serial % 5}@example.com")
    if account is None:
        return
    user_id, csrf = _first(_ACCOUNT_USER_ID, account), _first(_META_TOKEN, account)
    if user_id is None or csrf is None:
        session.fail("no_account_page")
        return
    api = {"accept": "application/json"}
    # Served by the new app, which never sees the Rails cookie: only the gateway's token.
    me = await session.send("GET", "/api/me", headers=api)
    _check_user(session, "me", me, user_id)
    project_id = session.rng.choice(project_ids)
    star = await session.send(
        "POST", f"/api/projects/{project_id}/star", headers={**api, "x-csrf-token": csrf}
    )
    _check_user(session, "star", star, user_id)
    await session.send("POST", "/logout", data={"authenticity_token": csrf})


def _check_user(
    session: _Session, check: str, response: httpx.Response | None, user_id: str
) -> None:
    """Count `check` as passed if the new app answered for `user_id`, else as a flow error."""
    if response is None:
        return  # the transport error is counted already
    if response.status_code != 200 or backend_of(response) != "new":
        session.fail(f"{check}_rejected")
        return
    try:
        seen = response.json()["user"]["id"]
    except (ValueError, KeyError, TypeError):
        session.fail(f"{check}_rejected")
        return
    if seen != user_id:
        session.fail(f"{check}_wrong_user")
        return
    session.stats.identity_ok[check] += 1


def _first(pattern: re.Pattern[str], response: httpx.Response | None) -> str | None:
    match = pattern.search(response.text) if response is not None else None
    return match.group(1) if match else None


def _created_id(response: httpx.Response | None) -> int | None:
    if response is None or response.status_code != 201:
        return None
    try:
        project_id = response.json()["project"]["id"]
    except (ValueError, KeyError, TypeError):
        return None
    return project_id if isinstance(project_id, int) else None


async def generate_traffic(
    base_url: str,
    rate_per_s: float,
    duration_s: float | None,
    stop: asyncio.Event | None = None,
    *,
    mix: Mapping[Action, float] | None = None,
    max_in_flight: int = 16,
    seed: int = 0,
    stats: TrafficStats | None = None,
    visitors: int = DEFAULT_VISITORS,
    api_rate_per_s: float = 0.0,
) -> TrafficStats:
    """Send the mix to `base_url` at `rate_per_s`, and CANARY_ROUTE's read alone at
    `api_rate_per_s` (0: none), until `duration_s` passes or `stop` is set.

    With neither, runs until cancelled. On stop, waits up to DRAIN_TIMEOUT_S for in-flight
    actions, then cancels the rest (they are not counted). Returns the tally: `stats` if given
    (so a caller can watch it fill while traffic runs), else a new one.
    """
    weights = dict(DEFAULT_MIX if mix is None else mix)
    if rate_per_s <= 0 or max_in_flight < 1 or visitors < 1 or api_rate_per_s < 0:
        raise ValueError(
            "rate_per_s must be > 0, api_rate_per_s >= 0, max_in_flight and visitors >= 1"
        )
    if not weights or any(weight < 0 for weight in weights.values()) or not sum(weights.values()):
        raise ValueError("mix needs at least one action with a positive weight")
    stop = stop if stop is not None else asyncio.Event()
    stats = stats if stats is not None else TrafficStats()
    project_ids = [project.id for project in seed_projects()]
    jars = [httpx.Cookies() for _ in range(visitors)]
    loop = asyncio.get_running_loop()
    started_s = loop.time()
    deadline_s = None if duration_s is None else started_s + duration_s
    in_flight: set[asyncio.Task[None]] = set()
    serials = itertools.count(1)
    base = base_url.rstrip("/")
    client_options: dict[str, Any] = {
        "base_url": base,
        "timeout": _TIMEOUT,
        "headers": {"user-agent": USER_AGENT},
        # Demo traffic goes straight to the URL given, whatever HTTP_PROXY says.
        "trust_env": False,
    }

    async def act(
        action: Action, serial: int, reader: httpx.AsyncClient, rng: random.Random
    ) -> None:
        if action is Action.WRITE_SESSION:
            # A writer is its own browser: its own connection pool and cookie jar.
            async with httpx.AsyncClient(**client_options) as own:
                await _write_session(_Session(own, stats, rng), serial)
        elif action is Action.IDENTITY_SESSION:
            async with httpx.AsyncClient(**client_options) as own:
                await _identity_session(_Session(own, stats, rng), serial, project_ids)
        else:
            visitor = _Session(reader, stats, rng, cookies=rng.choice(jars))
            await _read(visitor, action, project_ids)

    def finished(task: asyncio.Task[None]) -> None:
        in_flight.discard(task)
        if task.cancelled() or (exc := task.exception()) is None:
            return
        name = f"internal:{type(exc).__name__}"
        stats.errors[name] += 1
        if stats.errors[name] == 1:
            _log.warning("traffic action failed (further %s are only counted)", name, exc_info=exc)

    async def run_stream(
        reader: httpx.AsyncClient,
        rate: float,
        pick: Callable[[random.Random], Action],
        rng: random.Random,
    ) -> None:
        mine: set[asyncio.Task[None]] = set()  # this stream's part of in_flight
        next_tick_s = started_s
        while not stop.is_set() and (deadline_s is None or loop.time() < deadline_s):
            if len(mine) >= max_in_flight:
                stats.skipped += 1
            else:
                serial = next(serials)
                action = pick(rng)
                stats.actions[action.value] += 1
                task = asyncio.create_task(
                    act(action, serial, reader, rng), name=f"traffic-{serial}"
                )
                mine.add(task)
                in_flight.add(task)
                task.add_done_callback(mine.discard)
                task.add_done_callback(finished)
            # Fell behind (a stalled loop)? Resume the cadence from now instead of bursting.
            next_tick_s = max(next_tick_s + 1 / rate, loop.time())
            wake_s = next_tick_s if deadline_s is None else min(next_tick_s, deadline_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(wake_s - loop.time(), 0))

    actions, action_weights = list(weights), list(weights.values())

    def pick_from_mix(rng: random.Random) -> Action:
        return rng.choices(actions, weights=action_weights)[0]

    def pick_api_show(rng: random.Random) -> Action:
        return Action.API_SHOW

    has_api_stream = api_rate_per_s > 0
    connections = max_in_flight * (2 if has_api_stream else 1)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    reader_options = {**client_options, "cookies": CookieJar(policy=_NO_COOKIES)}
    async with httpx.AsyncClient(limits=limits, **reader_options) as reader:
        streams = [run_stream(reader, rate_per_s, pick_from_mix, random.Random(seed))]
        if has_api_stream:
            api_rng = random.Random(seed + 1)
            streams.append(run_stream(reader, api_rate_per_s, pick_api_show, api_rng))
        await asyncio.gather(*streams)
        if in_flight:
            _done, pending = await asyncio.wait(set(in_flight), timeout=DRAIN_TIMEOUT_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
    stats.elapsed_s = loop.time() - started_s
    return stats


async def _run_until_signalled(args: argparse.Namespace) -> TrafficStats:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not available on Windows event loops; Ctrl-C then ends the run without a summary.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return await generate_traffic(
        args.url,
        args.rate,
        args.duration,
        stop,
        max_in_flight=args.max_in_flight,
        seed=args.seed,
        visitors=args.visitors,
        api_rate_per_s=args.api_rate,
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m strangler.demo.traffic --url http://127.0.0.1:8000 --rate 20`."""
    parser = argparse.ArgumentParser(
        prog="python -m strangler.demo.traffic", description="Send demo traffic."
    )
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="gateway or app base URL")
    parser.add_argument("--rate", type=float, default=20.0, help="actions per second")
    parser.add_argument("--duration", type=float, default=None, help="seconds (default: forever)")
    parser.add_argument("--max-in-flight", type=int, default=16, help="concurrent actions")
    parser.add_argument("--seed", type=int, default=0, help="random seed for the mix")
    parser.add_argument(
        "--visitors", type=int, default=DEFAULT_VISITORS, help="anonymous clients, one jar each"
    )
    parser.add_argument(
        "--api-rate", type=float, default=0.0, help=f"extra reads of {CANARY_ROUTE} per second"
    )
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.max_in_flight < 1 or args.visitors < 1 or args.api_rate < 0:
        parser.error("--rate must be > 0, --api-rate >= 0, --max-in-flight and --visitors >= 1")
    api = f" and {args.api_rate:g}/s of {CANARY_ROUTE}" if args.api_rate else ""
    print(f"sending {args.rate:g} actions/s{api} to {args.url}; Ctrl-C to stop", flush=True)
    stats = asyncio.run(_run_until_signalled(args))
    print(stats.render(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
