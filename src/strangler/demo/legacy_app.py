"""The demo's legacy app: a small "projects and tasks" site that answers the way Rails 7.1 does.

It stands in for the monolith a team is migrating away from: HTML pages with a layout and
`csrf_meta_tags`, the JSON API of `legacy_api.py`, a login form protected by masked authenticity
tokens (per-form tokens in forms, the global token in the meta tag), a Rails cookie-store session
(cookie_store.py: the exact format of Rails 6.1 defaults, which an upgraded 7.x monolith often
still has, encrypted with a demo secret_key_base), a streamed CSV report and `/up`. Any email
logs in with the password "secret".

Rules:
- Every POST checks the Origin and the authenticity token (form field or X-CSRF-Token header)
  before anything else; a bad one is 422, like ActionController::InvalidAuthenticityToken.
- The session holds what a Rails app with a hand-rolled login keeps: `session_id`,
  `_csrf_token`, `user_id` (the gateway's `rails.user_id` reads it) and `user_email`, plus the
  flash in Rails' own shape while there is one.
- Logging in or out resets the session (session fixation): a new session id and a new CSRF
  token, so tokens from before the login stop working, as in Rails.
- Unknown routes and ids are 404; a wrong method is 404 too (Rails raises RoutingError). JSON for
  API requests, public/404.html otherwise.
- The project page has a Star button: a `fetch` with the page's X-CSRF-Token to
  `POST /api/projects/:id/star`, a feature only the new app has. Through the gateway it works
  (the gateway checks the token, then hands the new app the user as a JWT); on the legacy app
  directly it is a 404, as it would be on the monolith.
"""

from __future__ import annotations

import asyncio
import csv
import html
import io
import os
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from strangler.demo.cookie_store import DEMO_SECRET_KEY_BASE, SECRET_KEY_BASE_ENV, RailsCookieStore
from strangler.demo.databases import LEGACY_DATABASE_ENV, LegacyDatabase
from strangler.demo.legacy_api import (
    LegacyStore,
    api_routes,
    project_or_none,
    rails_error,
    store_of,
)
from strangler.demo.rails_conventions import (
    CSRF_PARAM,
    RailsConventions,
    csrf_meta_token,
    form_csrf_token,
    is_authentic,
)

DEMO_PASSWORD = "secret"
REPORT_CHUNK_DELAY_S = 0.01


def _wants_json(request: Request) -> bool:
    path = request.url.path
    accept = request.headers.get("accept", "")
    return path.startswith("/api/") or path.endswith(".json") or "application/json" in accept


def _redirect(request: Request, path: str) -> Response:
    # Rails' redirect_to sends an absolute URL built from the request's own Host header.
    location = str(request.base_url).rstrip("/") + path
    body = (
        f'<html><body>You are being <a href="{html.escape(location)}">redirected</a>.</body></html>'
    )
    return HTMLResponse(body, status_code=302, headers={"location": location})


# ----------------------------------------------------------------------------- HTML pages


def _set_notice(session: MutableMapping[str, Any], notice: str) -> None:
    # ActionDispatch::Flash::FlashHash#to_session_value: what the next request will show.
    session["flash"] = {"discard": [], "flashes": {"notice": notice}}


def _take_notice(session: MutableMapping[str, Any]) -> str | None:
    # Shown once: Rails drops the flash from the session at the end of the request showing it.
    flash = session.pop("flash", None)
    flashes = flash.get("flashes") if isinstance(flash, dict) else None
    notice = flashes.get("notice") if isinstance(flashes, dict) else None
    return notice if isinstance(notice, str) else None


def _page(request: Request, title: str, body: str, status: int = 200) -> HTMLResponse:
    session = request.session
    email = session.get("user_email")
    token = csrf_meta_token(session)
    notice = _take_notice(session)
    account = (
        f'<a href="/account">{html.escape(email)}</a> '
        f'<form class="button_to" method="post" action="/logout">'
        f'<input type="hidden" name="{CSRF_PARAM}" '
        f'value="{form_csrf_token(session, "/logout", "post")}" autocomplete="off">'
        f'<button type="submit">Log out</button></form>'
        if email
        else '<a href="/login">Log in</a>'
    )
    flash = f'<p class="notice">{html.escape(notice)}</p>' if notice else ""
    page = f"""<!DOCTYPE html>
<html>
  <head>
    <title>{html.escape(title)} | Projects</title>
    <meta name="viewport" content="width=device-width,initial-scale=1">
    <meta name="csrf-param" content="{CSRF_PARAM}" />
<meta name="csrf-token" content="{token}" />
  </head>
  <body>
    <nav><a href="/">Home</a> <a href="/projects">Projects</a> {account}</nav>
    {flash}
    <main>
{body}
    </main>
  </body>
</html>
"""
    return HTMLResponse(page, status_code=status)


async def home(request: Request) -> Response:
    body = """<h1>Projects and tasks</h1>
<ul>
  <li><a href="/projects">All projects</a></li>
  <li><a href="/api/projects.json">The JSON API</a></li>
  <li><a href="/reports/projects.csv">Projects report (CSV)</a></li>
  <li><a href="/account">Your account</a></li>
</ul>"""
    return _page(request, "Home", body)


async def projects_index(request: Request) -> Response:
    store = store_of(request)
    rows = "\n".join(
        f'<tr><td><a href="/projects/{p.id}">{html.escape(p.name)}</a></td>'
        f"<td>{html.escape(p.owner)}</td><td>{len(store.tasks_of(p.id))}</td></tr>"
        for p in sorted(store.projects.values(), key=lambda p: p.id)
    )
    header = "<tr><th>Name</th><th>Owner</th><th>Tasks</th></tr>"
    body = f"<h1>Projects</h1>\n<table>\n{header}\n{rows}\n</table>"
    return _page(request, "Projects", body)


# The way a Rails 7 page calls an API with Rails' CSRF protection (what @rails/request.js does):
# the token from <meta name="csrf-token"> in X-CSRF-Token, the session cookie sent along.
_STAR_BUTTON = """<p>
<button type="button" id="star" data-url="/api/projects/{id}/star">&#9734; Star</button>
<output id="star-result"></output>
</p>
<script>
document.getElementById("star").addEventListener("click", async (event) => {{
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const response = await fetch(event.target.dataset.url, {{
    method: "POST", headers: {{"X-CSRF-Token": token, "Accept": "application/json"}}}});
  const result = document.getElementById("star-result");
  if (response.ok) {{
    const body = await response.json();
    result.textContent = `starred by user #${{body.user.id}}; ${{body.stars_count}} star(s) ` +
      `(answered by: ${{response.headers.get("X-Served-By")}})`;
  }} else {{
    result.textContent = `failed: HTTP ${{response.status}}`;
  }}
}});
</script>
"""


async def projects_show(request: Request) -> Response:
    project = project_or_none(request)
    if project is None:
        raise HTTPException(404)
    items = "\n".join(
        f"<li>{'&#10003;' if t.is_done else '&#9744;'} {html.escape(t.title)}</li>"
        for t in store_of(request).tasks_of(project.id)
    )
    star = _STAR_BUTTON.format(id=project.id) if request.session.get("user_email") else ""
    body = (
        f"<h1>{html.escape(project.name)}</h1>\n<p>Owner: {html.escape(project.owner)}</p>\n"
        f"{star}<h2>Tasks</h2>\n<ul>\n{items}\n</ul>"
    )
    return _page(request, project.name, body)


def _login_page(request: Request, error: str = "", status: int = 200) -> Response:
    alert = f'<p class="alert">{html.escape(error)}</p>' if error else ""
    token = form_csrf_token(request.session, "/login", "post")
    body = f"""<h1>Log in</h1>
{alert}<form action="/login" accept-charset="UTF-8" method="post">
<input type="hidden" name="{CSRF_PARAM}" value="{token}" autocomplete="off" />
<label>Email <input type="email" name="email" autocomplete="username" /></label>
<label>Password <input type="password" name="password" autocomplete="current-password" /></label>
<button type="submit">Log in</button>
</form>"""
    return _page(request, "Log in", body, status)


async def login_form(request: Request) -> Response:
    return _login_page(request)


async def login(request: Request) -> Response:
    form = await request.form()
    if not is_authentic(request, form.get(CSRF_PARAM)):
        return _invalid_authenticity_token(request)
    email = str(form.get("email", "")).strip().lower()
    if not email or form.get("password") != DEMO_PASSWORD:
        return _login_page(request, "Invalid email or password.", status=422)
    users = store_of(request).users
    user_id = users.setdefault(email, len(users) + 1)
    # reset_session on login defeats session fixation: a new session id, a new CSRF token.
    request.session.clear()
    request.session.update({"user_id": user_id, "user_email": email})
    _set_notice(request.session, "Signed in successfully.")
    return _redirect(request, "/account")


async def logout(request: Request) -> Response:
    form = await request.form()
    if not is_authentic(request, form.get(CSRF_PARAM)):
        return _invalid_authenticity_token(request)
    request.session.clear()
    _set_notice(request.session, "Signed out successfully.")
    return _redirect(request, "/")


async def account(request: Request) -> Response:
    email = request.session.get("user_email")
    if not email:
        return _redirect(request, "/login")
    user_id = request.session.get("user_id")
    body = (
        "<h1>Your account</h1>\n"
        f"<p>Signed in as <strong>{html.escape(email)}</strong> (user #{user_id}).</p>\n"
        # Served by the new app through the gateway, which tells it who you are (a JWT).
        '<p>What the new app knows about you: <a href="/api/me">/api/me</a></p>'
    )
    return _page(request, "Account", body)


async def up(request: Request) -> Response:
    # Rails 7.1's Rails::HealthController#show, word for word.
    return HTMLResponse('<!DOCTYPE html><html><body style="background-color: green"></body></html>')


_REPORTS = {"projects.csv", "tasks.csv"}


async def report(request: Request) -> Response:
    path: str = request.path_params["path"]
    if path not in _REPORTS:
        raise HTTPException(404)
    store = store_of(request)
    if path == "projects.csv":
        rows = [["id", "name", "owner", "tasks_count"]] + [
            [str(p.id), p.name, p.owner, str(len(store.tasks_of(p.id)))]
            for p in sorted(store.projects.values(), key=lambda p: p.id)
        ]
    else:
        rows = [["id", "project_id", "title", "done"]] + [
            [str(t.id), str(t.project_id), t.title, str(t.is_done).lower()] for t in store.tasks
        ]

    async def chunks() -> AsyncIterator[bytes]:
        # Streamed in a few slices with pauses, like a report built row by row from the database.
        for start in range(0, len(rows), 4):
            await asyncio.sleep(REPORT_CHUNK_DELAY_S)
            yield _csv(rows[start : start + 4])

    headers = {
        "content-disposition": f"attachment; filename=\"{path}\"; filename*=UTF-8''{path}",
        "cache-control": "no-cache",
        "x-accel-buffering": "no",
    }
    return StreamingResponse(chunks(), media_type="text/csv", headers=headers)


def _csv(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    # Ruby's CSV ends lines with "\n", not the RFC 4180 "\r\n" Python defaults to.
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode()


# ----------------------------------------------------------------------------- errors


def _invalid_authenticity_token(request: Request) -> Response:
    # ActionController::InvalidAuthenticityToken renders public/422.html in production.
    if _wants_json(request):
        return rails_error(422, "Unprocessable Entity")
    return HTMLResponse(
        "<!DOCTYPE html><html><head><title>The change you wanted was rejected (422)</title></head>"
        "<body><h1>The change you wanted was rejected.</h1>"
        "<p>Maybe you tried to change something you didn't have access to.</p></body></html>",
        status_code=422,
    )


async def _not_found(request: Request, exc: Exception) -> Response:
    if _wants_json(request):
        return rails_error(404, "Not Found")
    return HTMLResponse(
        "<!DOCTYPE html><html><head><title>The page you were looking for doesn't exist (404)"
        "</title></head><body><h1>The page you were looking for doesn't exist.</h1></body></html>",
        status_code=404,
    )


def create_legacy_app(secret_key_base: str | None = None) -> Starlette:
    """A fresh legacy app with its own seeded store; no I/O until a server runs it, except that
    with LEGACY_DATABASE_ENV set it writes the seed to that SQLite file, where every later
    project write goes too (databases.py).

    The session secret is `secret_key_base`, else the SECRET_KEY_BASE_ENV variable (the runner
    sets it, for this app and the gateway), else the demo's public DEMO_SECRET_KEY_BASE.
    """
    secret = secret_key_base or os.environ.get(SECRET_KEY_BASE_ENV) or DEMO_SECRET_KEY_BASE
    routes: list[BaseRoute] = [
        Route("/", home, methods=["GET"]),
        Route("/projects", projects_index, methods=["GET"]),
        Route("/projects/{id:int}", projects_show, methods=["GET"]),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/account", account, methods=["GET"]),
        Route("/reports/{path:path}", report, methods=["GET"]),
        Route("/up", up, methods=["GET"]),
        *api_routes(),
    ]
    middleware = [
        Middleware(RailsConventions),
        Middleware(RailsCookieStore, secret_key_base=secret),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={404: _not_found, 405: _not_found},
    )
    store = LegacyStore.from_seed()
    if database := os.environ.get(LEGACY_DATABASE_ENV):
        store.database = LegacyDatabase(Path(database))
        store.database.create(store.projects.values())
    app.state.store = store
    return app
