"""`strangler slo status` and `strangler slo export`: the config's SLOs as they stand, and for
tools outside the gateway.

Rules:
- `status` reads the config's store (the gateway's SLO monitor's evaluation when it is fresh,
  else one computed now from the stored counts, control/slo_status.py) or, with `--admin URL`,
  a running gateway's GET /api/v1/slos. Both doors give the same JSON, and the text is printed
  from it, so it reads the same whichever door was used. No `slos:`, or no SLO named NAME,
  exits 2; a store or gateway that can't be read exits 1.
- `export --prometheus` writes a Prometheus rule file (recording rules and multiwindow burn-rate
  alerts, observe/slo/rules.py); `--openslo` writes OpenSLO v1 YAML, one `SLO` document per
  SLO. Exactly one of the two. It reads only the config file and talks to no gateway or store;
  an unusable config, or an SLO Prometheus can't express, exits 2 with one line.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import orjson
import typer

from strangler.cli.control import AdminOption
from strangler.cli.control_client import ControlError
from strangler.cli.options import ConfigOption, JsonOption
from strangler.cli.tables import print_table
from strangler.config import Config, load_config
from strangler.control.slo_status import SloView, slo_views, unknown_slo
from strangler.errors import ConfigError, StranglerError
from strangler.observe.slo.evaluator import format_duration
from strangler.observe.slo.rules import render_openslo, render_prometheus

COMPUTED_NOTE = (
    "no gateway has evaluated this SLO recently: computed now from the stored counts; "
    "alert history needs a running gateway"
)

slo_app = typer.Typer(
    help="Service level objectives: budgets, alerts, export.",
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


@slo_app.command("status")
def status(
    name: Annotated[
        str | None, typer.Argument(metavar="[NAME]", help="One SLO; default: every one.")
    ] = None,
    config: ConfigOption = Path("strangler.yaml"),
    admin: AdminOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show each SLO's error budget, burn rates and alerts.

    Objective and window, good and bad answers, the budget left (% and the minutes of full
    outage it still allows), and per alert its burn rates now and its state.
    """
    slos = _fetch(admin, name) if admin else _local(config, name, time.time())
    if as_json:
        document = slos[0] if name is not None else {"slos": slos}
        typer.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    else:
        print_slos(slos)


def _local(path: Path, name: str | None, now: float) -> list[dict[str, Any]]:
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if not loaded.slos:
        typer.echo(f"error: {path} defines no slos:", err=True)
        raise typer.Exit(2)
    if name is not None and not any(slo.name == name for slo in loaded.slos):
        typer.echo(f"error: {unknown_slo(name, (slo.name for slo in loaded.slos))}", err=True)
        raise typer.Exit(2)
    try:
        views = _views(loaded, str(path), now)
    except StranglerError as exc:  # the store can't be reached or read
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    return [view.to_json() for view in views if name is None or view.slo.name == name]


def _views(config: Config, source: str, now: float) -> list[SloView]:
    from strangler.control.stores import open_store

    # Before the first run there is no store; reading must not create one.
    if config.store.url is None and not config.store.sqlite_path(source).exists():
        return slo_views(None, config, now)
    store = open_store(config.store, source)
    try:
        return slo_views(store, config, now)
    finally:
        store.close()


def _fetch(admin: str, name: str | None) -> list[dict[str, Any]]:
    from strangler.cli.admin_reads import admin_or_exit

    client = admin_or_exit(admin)
    try:
        if name is not None:
            return [client.get(f"/api/v1/slos/{quote(name, safe='')}")]
        slos: list[dict[str, Any]] = client.get("/api/v1/slos")["slos"]
    except ControlError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.code) from exc
    finally:
        client.close()
    if not slos:
        typer.echo(f"error: the gateway at {admin} has no slos: in its config", err=True)
        raise typer.Exit(2)
    return slos


def print_slos(slos: Sequence[dict[str, Any]]) -> None:
    """The text of `slo status`, from the JSON both doors give: one block per SLO."""
    for index, slo in enumerate(slos):
        if index:
            typer.echo("")
        _print_slo(slo)


def _print_slo(slo: dict[str, Any]) -> None:
    typer.echo(f"{slo['name']}: {slo['objective']:g} % over {format_duration(slo['window_s'])}")
    counted = [f"routes: {', '.join(slo['routes'])}"]
    if slo["side"] != "all":
        counted.append(f"answers from {slo['side']} only")
    if slo["latency_ms"] is not None:
        counted.append(f"slower than {slo['latency_ms']:g} ms is bad")
    typer.echo(f"  {'; '.join(counted)}")
    typer.echo(f"  good {slo['good']}, bad {slo['bad']}")
    typer.echo(f"  budget left: {budget_text(slo)}")
    alerts = slo["alerts"]
    if not alerts:
        typer.echo("  no alerts configured")
    else:
        typer.echo("")
        # The table's first column carries the block's indent.
        rows = [
            [
                f"  {alert['severity']}",
                f"{alert['burn']:g}",
                f"{format_duration(alert['long_s'])}/{format_duration(alert['short_s'])}",
                f"{alert['burn_long']:.2f}/{alert['burn_short']:.2f}",
                alert_state_text(alert, slo["min_requests"]),
            ]
            for alert in alerts
        ]
        print_table(["  severity", "burn", "windows", "burn now (long/short)", "state"], rows)
    if slo["source"] == "computed":
        typer.echo(f"  ({COMPUTED_NOTE})")


def budget_text(slo: dict[str, Any]) -> str:
    """The budget left, in % and in minutes of full outage; `exhausted` at or below 0."""
    pct = slo["budget_left_pct"]
    if slo["budget_exhausted"]:
        return f"exhausted ({pct:.1f} %: {100 - pct:.1f} % of the budget spent)"
    minutes = slo["outage_minutes_left"]
    if minutes is None:
        return f"{pct:.1f} % (no requests in the last hour to measure an outage by)"
    # Windows of seconds (tests, demos) leave fractions of a minute.
    return f"{pct:.1f} % ({minutes:.{1 if minutes < 10 else 0}f} min of full outage)"


def alert_state_text(alert: dict[str, Any], min_requests: int) -> str:
    """Firing since when, resolved when, or inactive; and whether too few requests keep it
    quiet."""
    match alert["state"]:
        case "firing":
            text = f"firing since {_moment(alert['fired_at'])}"
        case "resolved":
            text = f"resolved {_moment(alert['resolved_at'])}"
        case _:
            text = "inactive"
    if alert["low_traffic"]:
        quiet = f"quiet: low traffic ({alert['requests']} of {min_requests})"
        text = quiet if alert["state"] == "inactive" else f"{text}; {quiet}"
    return text


def _moment(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
