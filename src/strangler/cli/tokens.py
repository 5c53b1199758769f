"""`strangler token create|list|revoke|hash-password`: credentials of the admin API.

Rules:
- A token is printed once, by `create`, and never again: the store keeps only its SHA-256.
  `list` shows ids, names, scopes and times, never a token or a hash.
- The commands read the config with `load_config`, not the snapshot, so the Rails secret need
  not be set where they run; the store is the one the gateway uses (`store:`, relative paths
  from the config file's folder). A running gateway sees a new or revoked token at once: it
  looks tokens up in the store on every request.
- `hash-password` touches nothing: it prints the `password_hash` of an `admin.users` entry.
- Exit codes: 0 done, 1 the store can't be reached, 2 unusable config or arguments (an unknown
  token id included).
"""

from __future__ import annotations

import getpass
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import orjson
import typer

from strangler.cli.options import ConfigOption, JsonOption
from strangler.cli.tables import print_table
from strangler.config import Config, load_config
from strangler.control.state import Store, TokenRecord
from strangler.errors import ConfigError, StranglerError

token_app = typer.Typer(
    help="Admin API credentials: tokens and password hashes.",
    no_args_is_help=True,
    add_completion=False,
)

_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SCOPES = ("read", "write")


def _config_or_exit(config_path: Path) -> Config:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@contextmanager
def _store(config_path: Path) -> Iterator[Store]:
    """The gateway's store, created if missing; closed afterwards.

    An unusable config exits 2; a store that can't be opened or used exits 1, with one line.
    """
    config = _config_or_exit(config_path)
    from strangler.control.stores import open_store

    try:
        store = open_store(config.store, str(config_path))
        try:
            yield store
        finally:
            store.close()
    except StranglerError as exc:  # StoreUnavailable: the database can't be reached or used
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


def _has_store(config_path: Path) -> bool:
    """False when the store is a SQLite file nobody created yet: reading it needs no file."""
    config = _config_or_exit(config_path)
    return config.store.url is not None or config.store.sqlite_path(config_path).exists()


def _when(moment: float | None) -> str:
    if moment is None:
        return "-"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return "unknown"


def create_token(config_path: Path, name: str, scope: str, created_by: str) -> tuple[str, str]:
    """Store a new token; (its id, the token). What `token create` runs, for tests too."""
    from strangler.admin.auth import Scope, new_token

    token, record = new_token(name, Scope(scope), created_by, time.time())
    with _store(config_path) as store:
        store.add_token(record)
    return record.id, token


@token_app.command("create")
def create(
    name: Annotated[
        str, typer.Option(metavar="NAME", help="What the token is for, e.g. ci or dashboard.")
    ],
    scope: Annotated[
        str, typer.Option(metavar="SCOPE", help="read (look) or write (also change).")
    ] = "read",
    config: ConfigOption = Path("strangler.yaml"),
    as_json: JsonOption = False,
) -> None:
    """Create a token and print it, once: only its hash is stored."""
    if scope not in _SCOPES:
        typer.echo("error: --scope must be read or write", err=True)
        raise typer.Exit(2)
    if not _NAME.match(name):
        typer.echo("error: --name must be 1-64 letters, digits, '.', '_' or '-'", err=True)
        raise typer.Exit(2)
    token_id, token = create_token(config, name, scope, _os_user())
    if as_json:
        document = {"id": token_id, "name": name, "scope": scope, "token": token}
        typer.echo(orjson.dumps(document).decode())
        return
    typer.echo(f"created token {token_id} ({name}, scope {scope}):")
    typer.echo(token)
    typer.echo("It is shown only once: only its hash is stored. Keep it somewhere safe now.")
    typer.echo("Send it as `Authorization: Bearer <token>`;")
    typer.echo(f"`strangler token revoke {token_id}` ends it.")


def _row(record: TokenRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "name": record.name,
        "scope": record.scope,
        "created_at": record.created_at,
        "created_by": record.created_by,
        "last_used_at": record.last_used_at,
        "revoked_at": record.revoked_at,
    }


@token_app.command("list")
def list_tokens(config: ConfigOption = Path("strangler.yaml"), as_json: JsonOption = False) -> None:
    """List the tokens (ids, names and scopes; never a token).

    Also when each was created and last used, and whether it is revoked.
    """
    records: list[TokenRecord] = []
    if _has_store(config):
        with _store(config) as store:
            records = store.tokens()
    if as_json:
        typer.echo(orjson.dumps([_row(r) for r in records], option=orjson.OPT_INDENT_2).decode())
        return
    if not records:
        typer.echo("no tokens yet: `strangler token create --name NAME --scope read|write`")
        return
    rows = [
        [
            r.id,
            r.name,
            r.scope,
            f"{_when(r.created_at)} by {r.created_by}",
            _when(r.last_used_at),
            _when(r.revoked_at),
        ]
        for r in records
    ]
    print_table(["ID", "NAME", "SCOPE", "CREATED", "LAST USED", "REVOKED"], rows)


@token_app.command("revoke")
def revoke(
    token_id: Annotated[str, typer.Argument(metavar="ID", help="The token's id (tok_...).")],
    config: ConfigOption = Path("strangler.yaml"),
) -> None:
    """Revoke a token: requests that send it get 401 from now on."""
    known: dict[str, TokenRecord] = {}
    if _has_store(config):
        with _store(config) as store:
            if store.revoke_token(token_id, time.time()):
                typer.echo(f"revoked {token_id}")
                return
            known = {r.id: r for r in store.tokens()}
    record = known.get(token_id)
    if record is None:
        typer.echo(f"error: no token with id {token_id!r} (see `strangler token list`)", err=True)
        raise typer.Exit(2)
    typer.echo(f"{token_id} was already revoked at {_when(record.revoked_at)}")


@token_app.command("hash-password")
def hash_password() -> None:
    """Print the hash of a password, for admin.users.

    Asks for the password twice; the hash goes in `admin.users[].password_hash`.
    """
    from strangler.admin.auth import hash_password as scrypt_hash

    # The prompts go to stderr, so stdout is the hash alone (`... > hash.txt` works).
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    if not password:
        typer.echo("error: the password is empty", err=True)
        raise typer.Exit(2)
    typer.echo(scrypt_hash(password))
