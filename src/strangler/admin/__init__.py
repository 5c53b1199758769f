"""The admin listener: a small FastAPI app beside the data plane (health, the identity JWKS).

`create_admin_app` builds the app over a `GatewayView`; `AdminServer` serves it on an event loop
that already runs (one worker's), `AdminThread` on a loop of its own (the supervisor's thread).
"""

from strangler.admin.app import create_admin_app
from strangler.admin.server import (
    ADMIN_LINE_PREFIX,
    AdminServer,
    AdminThread,
    admin_line,
    bind_admin_socket,
)
from strangler.admin.view import GatewayView

__all__ = [
    "ADMIN_LINE_PREFIX",
    "AdminServer",
    "AdminThread",
    "GatewayView",
    "admin_line",
    "bind_admin_socket",
    "create_admin_app",
]
