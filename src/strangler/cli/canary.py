"""`strangler canary sign`: the headers a tester sends to force a canary route's side.

The secret is read from the environment variable the config names (`canary.override.secret_env`),
exactly as the gateway reads it; it is never printed. The signature covers the side, the path
(without its query) and the expiry, so it works for that path only, until then.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import orjson
import typer

from strangler.cli.options import ConfigOption
from strangler.config import load_config
from strangler.errors import ConfigError
from strangler.routing.canary import sign_override

canary_app = typer.Typer(help="Canary helpers for testers.", no_args_is_help=True)


@canary_app.command("sign")
def sign(
    path: Annotated[
        str, typer.Argument(metavar="PATH", help="The request path, e.g. /api/projects/1.")
    ],
    config: ConfigOption = Path("strangler.yaml"),
    side: Annotated[str, typer.Option(metavar="SIDE", help="new or legacy.")] = "new",
    ttl_s: Annotated[
        int, typer.Option("--ttl-s", metavar="SECONDS", min=1, help="Seconds it stays valid.")
    ] = 3600,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print the headers that send a request for PATH to one side.

    X-Strangler-Backend and X-Strangler-Signature: an override signed with the secret the config
    names, valid for PATH until --ttl-s runs out.
    """
    try:
        settings = load_config(config).canary.override
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if side not in ("new", "legacy"):
        typer.echo("error: --side must be new or legacy", err=True)
        raise typer.Exit(2)
    if settings.secret_env is None:
        typer.echo("error: canary.override.secret_env is not set in the config", err=True)
        raise typer.Exit(2)
    secret = os.environ.get(settings.secret_env, "").encode()
    if not secret:
        typer.echo(f"error: environment variable {settings.secret_env} is not set", err=True)
        raise typer.Exit(2)
    if ttl_s > settings.max_ttl_s:
        typer.echo(
            f"error: --ttl-s {ttl_s} is longer than canary.override.max_ttl_s "
            f"({settings.max_ttl_s:g}): the gateway would refuse it",
            err=True,
        )
        raise typer.Exit(2)
    bare_path = path.split("?", 1)[0]
    signature = sign_override(secret, side, bare_path, int(time.time()) + ttl_s)
    if as_json:
        headers = {"X-Strangler-Backend": side, "X-Strangler-Signature": signature}
        typer.echo(orjson.dumps(headers).decode())
        return
    typer.echo(f"X-Strangler-Backend: {side}")
    typer.echo(f"X-Strangler-Signature: {signature}")
