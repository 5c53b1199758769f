"""`strangler keys show|rotate`: the Ed25519 key ring that signs the new backend's identity tokens.

Rules:
- Both commands need `rails:` in the config (the keys sign the Rails bridge's tokens only);
  without it they exit 2. They read the config with `load_config`, not the snapshot, so the
  Rails secret_key_base need not be set where they run; `identity.keys_path` is taken relative
  to the config file's folder, as the gateway takes it.
- Nothing here prints a private key: `show` prints kids, states and times, and with --json the
  JWK Set the gateway publishes (public keys only).
- `show` never creates the ring; `rotate` creates it first if it is missing (with the
  configured token ttl, as the gateway would), then rotates under the ring's lock. Running
  workers see the new file within about a second by themselves: no reload, no restart.
- Exit codes: 0 done, 1 the ring can't be used or rotated yet (the message says how long to
  wait), 2 the config can't be used.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import typer

from strangler.cli.options import ConfigOption, JsonOption
from strangler.cli.tables import print_table
from strangler.config import IdentityConfig, load_config
from strangler.errors import ConfigError
from strangler.identity.tokens import KeyRingError, KeyRingFile, KeyState, rotate_key_ring
from strangler.runtime.snapshot_build import identity_keys_path

keys_app = typer.Typer(
    help="The keys that sign identity tokens for the new backend.",
    no_args_is_help=True,
    add_completion=False,
)


def _identity_or_exit(config_path: Path) -> tuple[Path, IdentityConfig]:
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if config.rails is None:
        error = ConfigError(
            str(config_path),
            None,
            "rails",
            "not configured: identity keys sign the Rails bridge's tokens, so `strangler keys` "
            "needs a `rails:` section (and optionally `identity:`)",
        )
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2)
    return identity_keys_path(config, str(config_path)), config.identity


def _when(moment: float | None) -> str:
    if moment is None:
        return "-"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@keys_app.command("show")
def show(config: ConfigOption = Path("strangler.yaml"), as_json: JsonOption = False) -> None:
    """Show each key's kid and state, and when it changed.

    Published, activated, retired and unpublished; with --json, the JWK Set the gateway serves.
    """
    path, identity = _identity_or_exit(config)
    if not path.exists():
        typer.echo(
            f"error: no key ring at {path} yet: the gateway creates it when it starts with "
            "`rails:` configured",
            err=True,
        )
        raise typer.Exit(1)
    try:
        ring = KeyRingFile(path, max_token_ttl_s=identity.ttl_s).ring
    except KeyRingError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    now = time.time()
    upcoming = ring.next_key()
    can_activate_at = None if upcoming is None else upcoming.published_at + ring.publish_ahead_s
    if as_json:
        document = {
            "path": str(path),
            "max_token_ttl_s": ring.max_token_ttl_s,
            "publish_ahead_s": ring.publish_ahead_s,
            "grace_s": ring.grace_s,
            "next_can_activate_at": can_activate_at,
            "keys": [
                {
                    "kid": key.kid,
                    "state": ring.state_at(key, now).value,
                    "published_at": key.published_at,
                    "activated_at": key.activated_at,
                    "retired_at": key.retired_at,
                    "unpublished_at": ring.removal_time(key),
                }
                for key in ring.keys
            ],
            "jwks": ring.jwks(now),
        }
        typer.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
        return
    typer.echo(
        f"key ring {path}: tokens live {ring.max_token_ttl_s:g} s; a next key is published "
        f"{ring.publish_ahead_s:g} s before it may sign; a retired key stays published "
        f"{ring.max_token_ttl_s + ring.grace_s:g} s\n"
    )
    rows = [
        [
            key.kid,
            ring.state_at(key, now).value,
            _when(key.published_at),
            _when(key.activated_at),
            _when(key.retired_at),
            _when(ring.removal_time(key)),
        ]
        for key in ring.keys
    ]
    print_table(["KID", "STATE", "PUBLISHED", "ACTIVATED", "RETIRED", "UNPUBLISHED"], rows)
    if can_activate_at is not None:
        when = "now" if can_activate_at <= now else f"from {_when(can_activate_at)}"
        typer.echo(f"\n`strangler keys rotate` can activate the next key {when}.")


@keys_app.command("rotate")
def rotate(config: ConfigOption = Path("strangler.yaml")) -> None:
    """Activate the next key and retire the active one.

    A new next key is published at once; running workers follow within about a second.
    """
    path, identity = _identity_or_exit(config)
    try:
        # Load, or create with the configured ttl as the gateway would; then rotate the file.
        KeyRingFile(path, max_token_ttl_s=identity.ttl_s)
        ring = rotate_key_ring(path, time.time())
    except KeyRingError as exc:  # RotationTooEarly too: its message says how long to wait
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    now = time.time()
    typer.echo(f"rotated {path}:")
    for key in ring.keys:
        state = ring.state_at(key, now)
        if state is KeyState.RETIRED:
            note = f"  (published until {_when(ring.removal_time(key))})"
        elif state is KeyState.NEXT:
            note = f"  (may sign from {_when(key.published_at + ring.publish_ahead_s)})"
        else:
            note = ""
        if state is not KeyState.REMOVED:
            typer.echo(f"  {state.value:<8} {key.kid}{note}")
    typer.echo("Running gateway workers pick up the new key within about a second.")
