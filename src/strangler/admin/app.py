"""`create_admin_app`: the admin FastAPI app, one router per resource module.

Rules:
- The app holds no gateway state; it reads the `GatewayView` per request (see view.py).
- Every error is a problem+json answer (problems.py); nothing ever answers with a traceback.
- One URL per endpoint: no trailing-slash redirect (`redirect_slashes=False`). Starlette's
  redirect builds an absolute Location from the request's Host header, so a forged Host would
  send an admin's client (and, on a 307, its request body and credentials) to another host;
  and API clients mostly don't follow a redirect of a POST anyway. `/api/v1/routes/` is a 404
  problem whose detail names `/api/v1/routes` (problems.py).
- The OpenAPI document is served at /openapi.json. No /docs or /redoc: they load their
  JavaScript from a CDN, which an admin port on a private network should not depend on.
- Public, on purpose: /healthz and /readyz (probes), /.well-known/jwks.json (public keys only),
  /openapi.json, and the dashboard's static files at / and /assets/ (dashboard.py: they hold
  no data; the page logs in through the API like any client). Everything under /api/v1 is
  authenticated (auth.py); `POST /api/v1/session` (login) is the one exception, since it is
  how a browser gets its credentials.
- Resource routers (routes, stages, audit, verdicts, diffs, progress, series, slos, alerts and
  identity) mount under /api/v1 with their scope on the router,
  `dependencies=[Depends(require_read)]`, and take `principal: Principal = Depends(require_write)`
  on the operations that change state; they list `AUTH_RESPONSES` in `responses=`. They reach
  the store with `store: Store = Depends(store_dependency)`, the app's one StoreAccess
  (`app.state`).
"""

from __future__ import annotations

from fastapi import FastAPI

from strangler import __version__
from strangler.admin.auth import Authenticator
from strangler.admin.dashboard import install_dashboard
from strangler.admin.data import data_router
from strangler.admin.diffs import diffs_router
from strangler.admin.events import EventHub, events_router
from strangler.admin.health import health_router
from strangler.admin.identity import identity_router
from strangler.admin.jwks import JwksSource, jwks_router
from strangler.admin.login_throttle import LoginThrottle
from strangler.admin.metrics_route import metrics_router
from strangler.admin.problems import install_problem_handlers
from strangler.admin.progress import progress_router
from strangler.admin.rollouts import install_change_refused_handler, rollouts_router
from strangler.admin.series import series_router
from strangler.admin.session_routes import session_router
from strangler.admin.slos import slos_router
from strangler.admin.store_access import install_store_access
from strangler.admin.view import GatewayView


def create_admin_app(gateway: GatewayView) -> FastAPI:
    """The app for one gateway process; loads (or creates) the identity key ring now, if any.

    The control store is not opened here: the first request that needs it opens it.
    """
    app = FastAPI(
        title="strangler admin",
        version=__version__,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,
    )
    install_problem_handlers(app)
    store_access = install_store_access(app, gateway)
    install_change_refused_handler(app)
    app.state.authenticator = Authenticator(gateway)
    jwks_source = JwksSource()
    jwks_source.prime(gateway.snapshot.bridge)
    app.include_router(health_router(gateway))
    app.include_router(jwks_router(gateway, jwks_source))
    app.include_router(identity_router(gateway, jwks_source))
    app.include_router(session_router(gateway, LoginThrottle()))
    app.include_router(rollouts_router(gateway))
    app.include_router(diffs_router(gateway))
    app.include_router(progress_router(gateway))
    app.include_router(series_router(gateway))
    app.include_router(slos_router(gateway))
    app.include_router(data_router(gateway))
    app.include_router(metrics_router(gateway))
    app.include_router(events_router(gateway, EventHub(gateway, store_access)))
    install_dashboard(app)
    return app
