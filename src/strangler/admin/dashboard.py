"""The dashboard's static files: the single-page app at `/`, its hashed assets under `/assets/`,
and the security headers every admin answer carries.

Rules:
- The files are built from `dashboard/` by `make setup` into `static/` next to this module (the
  wheel ships them as package data); a checkout that was never built answers `/` with a 404
  problem that says how to build it, and the API works as before.
- Content-Security-Policy allows scripts, styles, images and fetches from this origin only: no
  inline script, no eval, no CDN, and no framing (clickjacking a Promote button). React sets
  style through the CSSOM, which `style-src 'self'` does not block.
- `X-Content-Type-Options: nosniff` on every answer, API included: a JSON body must never be
  sniffed into a script or a page.
- Assets are named by their content hash (Vite), so they are cached for a year and `immutable`;
  `index.html` names the current ones and is `no-cache` (revalidated on every load), so a new
  build is picked up on the next reload.
- The app routes in the URL fragment (`/#/routes/x`): the server only ever serves `/`, never a
  catch-all that would turn a mistyped API path into an HTML page.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter, FastAPI
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC_DIR = Path(__file__).resolve().parent / "static"
ASSETS_PATH = "/assets"
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
_SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
ASSET_CACHE = "public, max-age=31536000, immutable"
INDEX_CACHE = "no-cache"


class SecurityHeaders:
    """ASGI middleware: adds the security headers to every response head it has not set."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(item for item in _SECURITY_HEADERS if item[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _HashedAssets(StaticFiles):
    """StaticFiles whose answers may be cached forever: every name carries its content hash."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = ASSET_CACHE
        return response


def dashboard_router(static_dir: Path = STATIC_DIR) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    def index() -> FileResponse:
        page = static_dir / "index.html"
        if not page.is_file():
            raise HTTPException(
                404,
                "the dashboard is not built: run `make setup` in the checkout (it needs Node.js "
                "and npm), or install strangler from a wheel",
            )
        return FileResponse(page, headers={"Cache-Control": INDEX_CACHE})

    return router


def install_dashboard(app: FastAPI, static_dir: Path = STATIC_DIR) -> None:
    """Serve the built dashboard at `/` and its assets, and add the security headers."""
    app.include_router(dashboard_router(static_dir))
    # check_dir=False: an unbuilt checkout still starts; its asset paths are plain 404s.
    app.mount(ASSETS_PATH, _HashedAssets(directory=static_dir / "assets", check_dir=False))
    app.add_middleware(SecurityHeaders)
