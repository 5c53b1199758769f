"""`AdminResource`: the admin API for the commands that are not stage changes (`diffs`,
`progress`), with the same token (STRANGLER_ADMIN_TOKEN) and the same errors as the control
commands' RemoteClient: one ControlError line, exit 1 for the gateway's or the network's
failures, 2 for a refused request (an unknown route, a review without its reason).
"""

from __future__ import annotations

from typing import Any

import typer

from strangler.cli.control_client import ControlError, RemoteClient


class AdminResource(RemoteClient):
    """A running gateway's admin API, read (and reviewed) as JSON."""

    def get(self, path: str, **params: str | int) -> Any:
        return self._call("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._call("POST", path, json=body)


def admin_or_exit(url: str) -> AdminResource:
    """Connect (nothing is sent yet); a missing token exits 2 with the control commands' line."""
    try:
        return AdminResource(url)
    except ControlError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.code) from exc
