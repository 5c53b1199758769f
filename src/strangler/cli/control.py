"""`strangler promote|rollback|pause|resume|status|audit|export` and `strangler rollout
status|weight`: read and steer the control state, locally or through `--admin URL`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from strangler.cli.control_client import ControlClient, ControlError, open_client
from strangler.cli.options import ConfigOption, JsonOption
from strangler.cli.tables import print_table

rollout_app = typer.Typer(help="Canary rollouts: status and weight.", no_args_is_help=True)

AdminOption = Annotated[
    str | None,
    typer.Option(
        "--admin",
        envvar="STRANGLER_ADMIN_URL",
        help="A running gateway's admin URL (token in STRANGLER_ADMIN_TOKEN); default: act on "
        "the config's store directly.",
    ),
]
ReasonOption = Annotated[str, typer.Option("--reason", "-r", help="Why (goes to the audit log).")]


@contextmanager
def _client(config: Path, admin: str | None) -> Iterator[ControlClient]:
    try:
        client = open_client(config, admin)
    except ControlError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.code) from exc
    try:
        yield client
    except ControlError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.code) from exc
    finally:
        client.close()


def _echo_json(value: object) -> None:
    typer.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def _stage_text(state: dict[str, Any]) -> str:
    stage = str(state.get("stage") or "")
    weight = state.get("weight_bp")
    if stage == "canary" and isinstance(weight, int):
        return f"canary {weight / 100:g} %"
    return stage or "(yaml)"


def _report_change(change: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _echo_json(change)
        return
    before, after = change["before"], change["after"]
    typer.echo(
        f"{change['unit']}: {_stage_text(before)} -> {_stage_text(after)} "
        f"({change['action']} by {change['actor']}, state version {change['version']}); "
        "every worker follows within a second"
    )


def _change(
    name: str, action: str, body: dict[str, Any], config: Path, admin: str | None, as_json: bool
) -> None:
    with _client(config, admin) as client:
        _report_change(client.change(name, action, body), as_json)


def promote(
    route: Annotated[str, typer.Argument(help="A route or rollout group.")],
    reason: ReasonOption,
    weight: Annotated[
        float | None, typer.Option(help="Canary weight (%) to move to; default: the next step.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Leave shadow although the evidence gate is closed.")
    ] = False,
    config: ConfigOption = Path("strangler.yaml"),
    admin: AdminOption = None,
    as_json: JsonOption = False,
) -> None:
    """One step on: legacy -> shadow -> canary (plan steps) -> new."""
    body = {"reason": reason, "weight": weight, "force": force}
    _change(route, "promote", body, config, admin, as_json)


def _simple_change(action: str, help_text: str) -> Callable[..., None]:
    """A command that changes a unit with nothing but a reason (rollback, pause, resume)."""

    def command(
        route: Annotated[str, typer.Argument(help="A route or rollout group.")],
        reason: ReasonOption,
        config: ConfigOption = Path("strangler.yaml"),
        admin: AdminOption = None,
        as_json: JsonOption = False,
    ) -> None:
        _change(route, action, {"reason": reason}, config, admin, as_json)

    command.__name__ = action
    command.__doc__ = help_text
    return command


rollback = _simple_change("rollback", "Everyone back on legacy, at once (every worker within 1 s).")
pause = _simple_change("pause", "Stop the analyzer moving a canary; its weight stays.")
resume = _simple_change(
    "resume", "Let the analyzer move a paused canary again (its step starts over)."
)


@rollout_app.command("weight")
def weight(
    route: Annotated[str, typer.Argument(help="A route or rollout group in stage canary.")],
    value: Annotated[float, typer.Argument(help="The weight, 0 to 100 (%).")],
    reason: ReasonOption,
    config: ConfigOption = Path("strangler.yaml"),
    admin: AdminOption = None,
    as_json: JsonOption = False,
) -> None:
    """Set a canary's weight, up or down."""
    _change(route, "weight", {"reason": reason, "weight": value}, config, admin, as_json)


def _pct(value: object) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:.2%}"


def _when(at: object) -> str:
    if not isinstance(at, int | float):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def status(
    config: ConfigOption = Path("strangler.yaml"),
    admin: AdminOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every route: stage, weight, share answered by new (last hour), parity, last verdict."""
    with _client(config, admin) as client:
        report = client.status()
    if as_json:
        _echo_json(report)
        return
    rows = []
    for item in report["routes"]:
        stage = item["stage"] + ("*" if item["overridden"] else "")
        weight = "-" if item["weight"] is None else f"{item['weight']:g} %"
        verdict = item.get("last_verdict")
        last = "-" if not verdict else f"{verdict['outcome']} ({verdict['action']})"
        parity = "-"
        if item["parity"] is not None:
            parity = f"{item['parity']:.2%} (low {item['parity_low']:.2%}, n={item['compared']})"
        rows.append(
            [
                item["route"],
                stage,
                weight,
                item["status"] or "-",
                _pct(item["share_new_hour"]),
                parity,
                last,
            ]
        )
    print_table(["ROUTE", "STAGE", "WEIGHT", "ROLLOUT", "NEW (1H)", "PARITY", "LAST VERDICT"], rows)
    typer.echo(
        f"\n* set at runtime (see `strangler audit`); state version {report['state_version']}"
    )
    if report["orphaned_overrides"]:
        typer.echo(f"overrides for units no longer in the YAML: {report['orphaned_overrides']}")


@rollout_app.command("status")
def rollout_status(
    route: Annotated[str | None, typer.Argument(help="A route or rollout group.")] = None,
    config: ConfigOption = Path("strangler.yaml"),
    admin: AdminOption = None,
    as_json: JsonOption = False,
) -> None:
    """A rollout: its step, the gate that blocks it, and its verdicts with their numbers."""
    if route is None:
        status(config, admin, as_json)
        return
    with _client(config, admin) as client:
        report = client.rollout(route)
    if as_json:
        _echo_json(report)
        return
    weight = f" at {report['weight']:g} %" if report["stage"] == "canary" else ""
    typer.echo(f"{report['unit']}: stage {report['stage']}{weight} (yaml: {report['yaml_stage']})")
    typer.echo(f"routes: {', '.join(report['routes'])}")
    if report["status"]:
        typer.echo(f"rollout: {report['status']}; steps {report['steps']} %")
    gate = report.get("gate")
    if gate is not None:
        verdict = "passes" if gate["passed"] else "blocks"
        typer.echo(f"evidence gate {verdict}: {gate['reason']}")
    if report["blocked_by"] and gate is None:
        typer.echo(f"blocked by: {report['blocked_by']}")
    if report["verdicts"]:
        typer.echo("\nverdicts (newest first):")
        print_table(
            ["ENDED", "WEIGHT", "OUTCOME", "ACTION", "NUMBERS"],
            [
                [
                    _when(v["ended_at"]),
                    f"{v['weight_bp'] / 100:g} %",
                    v["outcome"],
                    v["action"],
                    str(v["verdict"].get("summary", "")),
                ]
                for v in report["verdicts"]
            ],
        )
    if report["audit"]:
        typer.echo("\nchanges (newest first):")
        _print_audit(report["audit"])


def _print_audit(entries: list[dict[str, Any]]) -> None:
    print_table(
        ["VERSION", "AT", "ACTOR", "ACTION", "FROM", "TO", "WHY"],
        [
            [
                str(c["version"]),
                _when(c["at"]),
                c["actor"],
                c["action"],
                _stage_text(c["before"]),
                _stage_text(c["after"]),
                c["reason"],
            ]
            for c in entries
        ],
    )


def audit(
    route: Annotated[str | None, typer.Argument(help="A rollout unit; default: all.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    config: ConfigOption = Path("strangler.yaml"),
    admin: AdminOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every change of stage or weight: who, when, from, to, and why."""
    with _client(config, admin) as client:
        entries = client.audit(route, limit)
    if as_json:
        _echo_json(entries)
        return
    _print_audit(entries)


def export(
    config: ConfigOption = Path("strangler.yaml"),
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (may be the config itself).")
    ] = None,
) -> None:
    """Print the config with the runtime overrides written into it (comments kept)."""
    from strangler.cli.control_client import LocalClient
    from strangler.cli.export import ExportError, export_yaml, write_atomically

    try:
        client = LocalClient(config)
    except ControlError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.code) from exc
    try:
        text = export_yaml(
            config.read_text(encoding="utf-8"),
            client.base,
            client.store.overrides(),
            str(config),
        )
    except ExportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        client.close()
    if output is None:
        typer.echo(text, nl=False)
        return
    write_atomically(output, text)
    typer.echo(f"wrote {output}", err=True)


def register(app: typer.Typer) -> None:
    for command in (promote, rollback, pause, resume, status, audit, export):
        app.command()(command)
    app.add_typer(rollout_app, name="rollout")
