"""`strangler slo export`: the config's SLOs for tools outside the gateway.

Rules:
- `--prometheus` writes a Prometheus rule file (recording rules and multiwindow burn-rate alerts,
  observe/slo/rules.py); `--openslo` writes OpenSLO v1 YAML, one `SLO` document per SLO. Exactly
  one of the two.
- Reads only the config file (found as every command finds it); talks to no gateway or store.
  An unusable config, or an SLO Prometheus can't express, exits 2 with one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from strangler.cli.options import ConfigOption
from strangler.config import load_config
from strangler.errors import ConfigError
from strangler.observe.slo.rules import render_openslo, render_prometheus

slo_app = typer.Typer(
    help="Service level objectives, for Prometheus or OpenSLO.",
    no_args_is_help=True,
    add_completion=False,
)


@slo_app.command("export")
def export(
    config: ConfigOption = Path("strangler.yaml"),
    prometheus: Annotated[
        bool, typer.Option("--prometheus", help="Prometheus recording and alerting rules.")
    ] = False,
    openslo: Annotated[bool, typer.Option("--openslo", help="OpenSLO v1 YAML.")] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="Write here instead of stdout."),
    ] = None,
) -> None:
    """Write the config's SLOs as Prometheus rules or OpenSLO.

    --prometheus: recording rules and multiwindow burn-rate alerts (promtool checks them);
    --openslo: OpenSLO v1 YAML, one SLO document per SLO.
    """
    if prometheus == openslo:
        typer.echo("error: pass exactly one of --prometheus and --openslo", err=True)
        raise typer.Exit(2)
    try:
        loaded = load_config(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if not loaded.slos:
        typer.echo(f"error: {config} defines no slos:", err=True)
        raise typer.Exit(2)
    try:
        text = render_prometheus(loaded) if prometheus else render_openslo(loaded)
    except ValueError as exc:  # an SLO Prometheus can't count (latency below every bucket)
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        typer.echo(f"error: cannot write {output}: {exc.strerror}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"wrote {output}", err=True)
