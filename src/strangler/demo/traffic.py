"""A traffic generator for the demo: a steady, realistic mix of browsers and API clients.

Most requests are anonymous reads of pages and of the JSON API; a few are "writers" who open
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

Rules:
- Open loop at `rate_per_s`: a tick starts one action whether or not earlier ones finished, so a
  slow backend shows up as latency and errors, not as a politely lower rate. In-flight actions
  are bounded by `max_in_flight`; a tick that finds no free slot is skipped and counted, never
  queued.
- Never raises because of what the server does: transport errors, unexpected statuses and broken
  flows are counted in `TrafficStats.errors`. Only bad arguments raise (ValueError).
- Deterministic for a given `seed`, apart from what the server and the clock do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import logging
import random
import re
import signal
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
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
    skipped: int = 0
    elapsed_s: float = 0.0

    @property
    def responses(self) -> int:
        return sum(self.by_status.values())

    def count_status_class(self, hundreds: int) -> int:
        """Responses whose status is in `hundreds`xx, e.g. `count_status_class(2)` for 2xx."""
        return sum(n for status, n in self.by_status.items() if status // 100 == hundreds)

    def record(self, response: httpx.Response) -> None:
        self.by_status[response.status_code] += 1
        self.by_backend[backend_of(response)] += 1

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
        """One line while traffic runs: responses, by backend, errors, the identity checks."""
        line = (
            f"{self.responses} responses ({_tally(sorted(self.by_backend.items()))}), "
            f"{sum(self.errors.values())} errors"
        )
        if self.has_identity_traffic:
            line += "; identity: " + self.identity_line()
        return line


def _tally(items: list[tuple[Any, int]]) -> str:
    return ", ".join(f"{key} x {count}" for key, count in items) or "-"


class _Session:
    """One simulated client: an httpx client (and so a cookie jar) plus the shared tally."""

    def __init__(self, client: httpx.AsyncClient, stats: TrafficStats, rng: random.Random) -> None:
        self.client = client
        self.stats = stats
        self.rng = rng

    async def send(self, method: str, url: str, **kwargs: Any) -> httpx.Response | None:
        # W3C trace context on every request, so the gateway's traces have a browser-side root.
        traceparent = (
            f"00-{self.rng.getrandbits(128) | 1:032x}-{self.rng.getrandbits(64) | 1:016x}-01"
        )
        headers = {"traceparent": traceparent, **kwargs.pop("headers", {})}
        try:
            response = await self.client.request(method, url, headers=headers, **kwargs)
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
    await session.send("GET", path, headers={"accept": accept})


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
) -> TrafficStats:
    """Send the mix to `base_url` at `rate_per_s` until `duration_s` passes or `stop` is set.

    With neither, runs until cancelled. On stop, waits up to DRAIN_TIMEOUT_S for in-flight
    actions, then cancels the rest (they are not counted). Returns the tally: `stats` if given
    (so a caller can watch it fill while traffic runs), else a new one.
    """
    weights = dict(DEFAULT_MIX if mix is None else mix)
    if rate_per_s <= 0 or max_in_flight < 1:
        raise ValueError("rate_per_s must be > 0 and max_in_flight >= 1")
    if not weights or any(weight < 0 for weight in weights.values()) or not sum(weights.values()):
        raise ValueError("mix needs at least one action with a positive weight")
    stop = stop if stop is not None else asyncio.Event()
    stats = stats if stats is not None else TrafficStats()
    rng = random.Random(seed)
    project_ids = [project.id for project in seed_projects()]
    loop = asyncio.get_running_loop()
    started_s = loop.time()
    deadline_s = None if duration_s is None else started_s + duration_s
    in_flight: set[asyncio.Task[None]] = set()
    base = base_url.rstrip("/")
    client_options: dict[str, Any] = {
        "base_url": base,
        "timeout": _TIMEOUT,
        "headers": {"user-agent": USER_AGENT},
        # Demo traffic goes straight to the URL given, whatever HTTP_PROXY says.
        "trust_env": False,
    }

    async def act(action: Action, serial: int, client: httpx.AsyncClient) -> None:
        if action is Action.WRITE_SESSION:
            # A writer is its own browser: its own connection pool and cookie jar.
            async with httpx.AsyncClient(**client_options) as own:
                await _write_session(_Session(own, stats, rng), serial)
        elif action is Action.IDENTITY_SESSION:
            async with httpx.AsyncClient(**client_options) as own:
                await _identity_session(_Session(own, stats, rng), serial, project_ids)
        else:
            await _read(_Session(client, stats, rng), action, project_ids)

    def finished(task: asyncio.Task[None]) -> None:
        in_flight.discard(task)
        if task.cancelled() or (exc := task.exception()) is None:
            return
        name = f"internal:{type(exc).__name__}"
        stats.errors[name] += 1
        if stats.errors[name] == 1:
            _log.warning("traffic action failed (further %s are only counted)", name, exc_info=exc)

    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    async with httpx.AsyncClient(limits=limits, **client_options) as reader:
        next_tick_s = started_s
        serial = 0
        actions, action_weights = list(weights), list(weights.values())
        while not stop.is_set() and (deadline_s is None or loop.time() < deadline_s):
            if len(in_flight) >= max_in_flight:
                stats.skipped += 1
            else:
                serial += 1
                action = rng.choices(actions, weights=action_weights)[0]
                stats.actions[action.value] += 1
                task = asyncio.create_task(act(action, serial, reader), name=f"traffic-{serial}")
                in_flight.add(task)
                task.add_done_callback(finished)
            # Fell behind (a stalled loop)? Resume the cadence from now instead of bursting.
            next_tick_s = max(next_tick_s + 1 / rate_per_s, loop.time())
            wake_s = next_tick_s if deadline_s is None else min(next_tick_s, deadline_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(wake_s - loop.time(), 0))
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
        args.url, args.rate, args.duration, stop, max_in_flight=args.max_in_flight, seed=args.seed
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
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.max_in_flight < 1:
        parser.error("--rate must be > 0 and --max-in-flight >= 1")
    print(f"sending {args.rate:g} actions/s to {args.url}; Ctrl-C to stop", flush=True)
    stats = asyncio.run(_run_until_signalled(args))
    print(stats.render(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
