"""`strangler`: the command line. Errors become exit codes here and nowhere else.

Exit codes: 0 ok, 1 runtime failure (e.g. the port is taken, the store can't be reached),
2 unusable config or arguments.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from strangler.cli.canary import canary_app
from strangler.cli.control import AdminOption
from strangler.cli.control import register as register_control_commands
from strangler.cli.data import data_app
from strangler.cli.keys import keys_app
from strangler.cli.observability import observability_app
from strangler.cli.options import ConfigOption, OptionalConfigOption, default_config
from strangler.cli.routes import read_overrides, routes
from strangler.cli.slo import slo_app
from strangler.cli.tokens import token_app
from strangler.config import Config
from strangler.errors import ConfigError, StranglerError
from strangler.runtime.snapshot import Snapshot
from strangler.runtime.snapshot_build import load_snapshot

app = typer.Typer(
    no_args_is_help=True,
    add_completion=True,
    # Plain help, as click prints it: typer's rich panels print a type after every flag
    # (`--json <bool>`, `--help <bool>`) and keep the docstrings' line breaks in the command list.
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    from strangler import __version__, native

    try:
        installed = version("strangler")
    except PackageNotFoundError:  # run from a source tree that was never installed
        installed = __version__
    # The hot path's status is known once its modules are imported (the build is loaded whole).
    import strangler.proxy.server  # noqa: F401

    typer.echo(f"strangler {installed}")
    typer.echo(native.describe())
    raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            help="Print the version and whether the hot path is compiled, and exit.",
        ),
    ] = False,
) -> None:
    """strangler: move traffic from a legacy app to its replacement, route by route.

    Every command that reads the config finds it with --config FILE, else $STRANGLER_CONFIG,
    else ./strangler.yaml.
    """


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
        stream=sys.stderr,
    )
    if level.lower() != "debug":
        # Alembic narrates every migration step and plugin at INFO on each store open.
        logging.getLogger("alembic").setLevel(logging.WARNING)


@app.command()
def run(
    config: ConfigOption = Path("strangler.yaml"),
    workers: Annotated[
        int, typer.Option(metavar="N", min=1, max=256, help="Worker processes.")
    ] = 1,
    watch: Annotated[bool, typer.Option(help="Reload when the config file changes.")] = False,
    log_level: Annotated[
        str, typer.Option(metavar="LEVEL", help="debug, info, warning or error.")
    ] = "info",
) -> None:
    """Run the gateway.

    SIGHUP reloads the config; SIGTERM drains the connections and exits.
    """
    from strangler.runtime.supervisor import run as run_gateway

    _setup_logging(log_level)
    try:
        code = run_gateway(str(config), workers=workers, watch=watch)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except StranglerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    raise typer.Exit(code)


def _load_or_exit(path: Path) -> Snapshot:
    try:
        return load_snapshot(path)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command("check-config")
def check_config(
    ctx: typer.Context,
    path: Annotated[
        Path | None,
        typer.Argument(metavar="FILE", help="The config file to check; default: --config's."),
    ] = None,
    config: OptionalConfigOption = None,
) -> None:
    """Check a config file the way the gateway loads it.

    Prints FILE:LINE: field: problem for what is wrong and exits 2 when the file is unusable.
    """
    if path is not None and config is not None:
        source = ctx.get_parameter_source("config")
        # FILE outranks $STRANGLER_CONFIG, as --config does; two files typed is a mistake.
        if source is not None and source.name == "COMMANDLINE" and path != config:
            typer.echo(f"error: two config files given ({path} and {config}): name one", err=True)
            raise typer.Exit(2)
    path = path or config or default_config()
    snapshot = _load_or_exit(path)
    typer.echo(
        f"{path}: ok ({len(snapshot.backends)} backends, {len(snapshot.table)} routes, "
        f"default backend {snapshot.config.default!r})"
    )
    if snapshot.config.new_backend is None:
        typer.echo(
            "note: no new backend yet; every route stays on legacy until a backend named `new` "
            "is added (or `new_backend:` names one)"
        )
    _warn_override_conflicts(path, snapshot.config)


def _warn_override_conflicts(path: Path, config: Config) -> None:
    """What the file says that a runtime override in the store keeps from taking effect."""
    from strangler.control.effective import override_conflicts

    overrides, problem = read_overrides(path, config, None)
    if problem is not None:
        typer.echo(f"warning: runtime overrides not checked ({problem})", err=True)
    for line in override_conflicts(None, config, overrides):
        typer.echo(f"warning: {line}", err=True)


# The route table in force lives in cli/routes.py (it reads the runtime overrides too).
app.command()(routes)


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="The gateway's port.")] = 8000,
    legacy_port: Annotated[int, typer.Option(help="The legacy demo app's port.")] = 3000,
    new_port: Annotated[int, typer.Option(help="The new demo app's port.")] = 8080,
    admin_port: Annotated[int, typer.Option(help="The gateway's admin port (JWKS).")] = 9900,
    rate: Annotated[float, typer.Option(help="Generated requests per second.")] = 5.0,
    api_rate: Annotated[
        float, typer.Option(help="Extra reads/s of the canary route, from 500 clients.")
    ] = 40.0,
    chaos: Annotated[
        str | None,
        typer.Option(
            help="Start the new app ok, slow or fail (default: $STRANGLER_DEMO_NEW_CHAOS)."
        ),
    ] = None,
) -> None:
    """Run the bundled demo apps behind the gateway.

    The legacy app and the new app run behind a real gateway, with traffic flowing, a shadowed
    route, a canary that promotes itself and a chaos switch to make it roll back.
    """
    try:
        # The demo extra's one package: the demo apps' forms need it, the gateway never does.
        import python_multipart  # noqa: F401
    except ImportError:
        typer.echo("error: the demo needs its extra: pip install 'strangler[demo]'", err=True)
        raise typer.Exit(2) from None
    from strangler.demo.new_app import ChaosMode
    from strangler.demo.runner import run_demo

    if chaos is not None and chaos not in ("ok", "slow", "fail"):
        typer.echo("error: --chaos must be ok, slow or fail", err=True)
        raise typer.Exit(2)
    raise typer.Exit(
        run_demo(
            gateway_port=port,
            legacy_port=legacy_port,
            new_port=new_port,
            rate_per_s=rate,
            admin_port=admin_port,
            api_rate_per_s=api_rate,
            chaos=None if chaos is None else ChaosMode(chaos),
        )
    )


@app.command()
def diffs(
    args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="ROUTE | accept|noise ROUTE PATH",
            help="Nothing (every shadowed route), ROUTE (where its answers differ), or "
            "`accept`/`noise ROUTE PATH` (review a difference path).",
        ),
    ] = None,
    config: ConfigOption = Path("strangler.yaml"),
    admin: AdminOption = None,
    examples: Annotated[
        bool, typer.Option("--examples", help="With ROUTE: the values seen on each side.")
    ] = False,
    reason: Annotated[
        str | None,
        typer.Option(
            "--reason", "-r", metavar="TEXT", help="Why (required for accept; kept with it)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show where the new backend's answers differ from legacy's.

    Without ROUTE: the parity of every shadowed route. With ROUTE: the paths where its answers
    differ, or with --examples the values seen there. `accept` and `noise` review a path.
    """
    from strangler.cli.diffs import run as run_diffs

    snapshot = None if admin else _load_or_exit(config)
    code = run_diffs(
        args or [],
        snapshot,
        admin=admin or None,
        examples=examples,
        reason=reason,
        as_json=as_json,
    )
    raise typer.Exit(code)


@contextmanager
def _store_errors() -> Iterator[None]:
    """A store that can't be reached or read (StoreUnavailable) exits 1 with one line."""
    try:
        yield
    except StranglerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command("import-routes")
def import_routes(
    routes_file: Annotated[
        Path,
        typer.Argument(
            metavar="ROUTES_FILE", help="The output of `bin/rails routes` (or `--expanded`)."
        ),
    ],
    config: ConfigOption = Path("strangler.yaml"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report; write nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Add a Rails app's routes to the config, in stage legacy.

    They go after the routes already in the file, whose comments and layout are kept.
    """
    from strangler.cli.import_routes import import_routes as run_import

    raise typer.Exit(run_import(routes_file, config, dry_run=dry_run, as_json=as_json))


@app.command()
def progress(
    config: ConfigOption = Path("strangler.yaml"),
    admin: AdminOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    days: Annotated[
        int,
        typer.Option(
            "--days",
            min=1,
            max=366,
            help="Legacy can be switched off after this many days without an answer from it.",
        ),
    ] = 7,
) -> None:
    """Show where the migration stands, route by route.

    Routes by stage, the share answered by new over the last hour and day, per route what
    stands between it and its next stage, and whether legacy can be switched off (no route
    left on it and no answer from it in the last --days days).
    """
    from strangler.cli.progress import show_progress

    snapshot = None if admin else _load_or_exit(config)
    with _store_errors():
        code = show_progress(snapshot, as_json=as_json, admin=admin or None, days=days)
    raise typer.Exit(code)


register_control_commands(app)
app.add_typer(keys_app, name="keys")
app.add_typer(token_app, name="token")
app.add_typer(canary_app, name="canary")
app.add_typer(observability_app, name="observability")
app.add_typer(slo_app, name="slo")
app.add_typer(data_app, name="data")


def main() -> None:
    # The same name in usage lines and completion scripts, also under `python -m strangler`.
    app(prog_name="strangler")
