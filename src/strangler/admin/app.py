"""`create_admin_app`: the admin FastAPI app, one router per resource module.

Rules:
- The app holds no gateway state; it reads the `GatewayView` per request (see view.py).
- Every error is a problem+json answer (problems.py); nothing ever answers with a traceback.
- The OpenAPI document is served at /openapi.json. No /docs or /redoc: they load their
  JavaScript from a CDN, which an admin port on a private network should not depend on.
- Today's endpoints are public (health, the JWKS); the authenticated admin API comes with the
  control plane and mounts here.
"""

from __future__ import annotations

from fastapi import FastAPI

from strangler import __version__
from strangler.admin.health import health_router
from strangler.admin.jwks import JwksSource, jwks_router
from strangler.admin.problems import install_problem_handlers
from strangler.admin.view import GatewayView


def create_admin_app(gateway: GatewayView) -> FastAPI:
    """The app for one gateway process; loads (or creates) the identity key ring now, if any."""
    app = FastAPI(
        title="strangler admin",
        version=__version__,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    install_problem_handlers(app)
    jwks_source = JwksSource()
    jwks_source.prime(gateway.snapshot.bridge)
    app.include_router(health_router(gateway))
    app.include_router(jwks_router(gateway, jwks_source))
    return app
