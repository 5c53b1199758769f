"""Options shared by several command groups, so each sub-app spells them the same way.

Rules:
- Every command that reads the config takes `--config/-c FILE` through ConfigOption; without
  it the file is $STRANGLER_CONFIG, else ./strangler.yaml. When none of the three names a file,
  the command exits 2 with one line that lists them, before it does anything.
- A command that can read from a running gateway instead (`--admin URL`, or
  $STRANGLER_ADMIN_URL) needs no config file at all, so the check is skipped when it has one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

CONFIG_ENV = "STRANGLER_CONFIG"
DEFAULT_CONFIG = Path("strangler.yaml")
NO_CONFIG = f"no config: pass --config FILE, set {CONFIG_ENV}, or create ./{DEFAULT_CONFIG}"


def _admin_is_given(ctx: typer.Context) -> bool:
    """Whether the command was told to read a running gateway (`--admin`, or its env var).

    Click processes the options typed on the command line before the ones left to their
    default, so an `--admin URL` that was typed is in `ctx.params` by the time the config's
    callback runs; one from the environment is not yet, and is read from there.
    """
    for param in ctx.command.params:
        if param.name == "admin":
            return bool(ctx.params.get("admin") or param.resolve_envvar_value(ctx))
    return False


def exit_without_config() -> None:
    """The one way every command says that it found no config file (exit 2)."""
    typer.echo(f"error: {NO_CONFIG}", err=True)
    raise typer.Exit(2)


def default_config() -> Path:
    """./strangler.yaml when it exists; otherwise the command exits 2 (NO_CONFIG)."""
    if not DEFAULT_CONFIG.exists():
        exit_without_config()
    return DEFAULT_CONFIG


def _found_config(ctx: typer.Context, param: typer.CallbackParam, value: Path) -> Path:
    if ctx.resilient_parsing or param.name is None:  # shell completion: never exit
        return value
    source = ctx.get_parameter_source(param.name)
    # The enum's name, not the enum: typer vendors click since 0.26, so which module defines
    # ParameterSource depends on the version installed.
    origin = "" if source is None else source.name
    if origin == "ENVIRONMENT" and not value.is_file():
        typer.echo(f"error: {CONFIG_ENV} names {value}, which is not a file", err=True)
        raise typer.Exit(2)
    if origin in ("DEFAULT", "DEFAULT_MAP") and not value.exists() and not _admin_is_given(ctx):
        exit_without_config()
    return value


ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        metavar="FILE",
        envvar=CONFIG_ENV,
        show_default=False,
        show_envvar=False,
        callback=_found_config,
        help=f"The gateway's YAML config file; default: ${CONFIG_ENV}, else ./{DEFAULT_CONFIG}.",
    ),
]
# For a command that also takes the file as an argument (`check-config FILE`): None when neither
# --config nor the environment names one, and the command picks (see `default_config`).
OptionalConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        metavar="FILE",
        envvar=CONFIG_ENV,
        show_envvar=False,
        help=f"The gateway's YAML config file; default: ${CONFIG_ENV}, else ./{DEFAULT_CONFIG}.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
