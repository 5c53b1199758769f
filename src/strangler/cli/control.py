"""`strangler promote|rollback|pause|resume|reset|drill|status|audit|export` and `strangler
rollout status|weight`: read and steer the control state, locally or through `--admin URL`.

Rule: wherever a route's stage or weight comes from a runtime override rather than the YAML,
the output marks it (`canary*`) and says who set it and how to let the YAML stand again.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from strangler.cli.control_client import ControlClient, ControlError, LocalClient, open_client
from strangler.cli.options import ConfigOption, JsonOption
from strangler.cli.tables import print_table

rollout_app = typer.Typer(help="Canary rollouts: status and weight.", no_args_is_help=True)

AdminOption = Annotated[
    str | None,
    typer.Option(
        "--admin",
        envvar="STRANGLER_ADMIN_URL",
        metavar="URL",
        help="A running gateway's admin URL (token in STRANGLER_ADMIN_TOKEN); default: act on "
        "the config's store directly.",
    ),
]
ReasonOption = Annotated[
    str, typer.Option("--reason", "-r", metavar="TEXT", help="Why (goes to the audit log).")
]


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


# How a change reads in the past tense, by its action; the analyzer's own actions read as-is.
_DONE = {
    "promote": "promoted",
    "rollback": "rolled back",
    "pause": "paused",
    "resume": "resumed",
    "set_weight": "set the weight of",
}


def _report_change(change: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _echo_json(change)
        return
    before, after, unit = change["before"], change["after"], change["unit"]
    by = f"by {change['actor']}, state version {change['version']}"
    if change["action"] in ("drill", "drill_clear"):
        what = (
            f"drill on {unit}: {fault_text(after['fault'])} until {_when(after['expires_at'])}"
            if after
            else f"cleared the drill of {unit} ({fault_text(before['fault'])})"
        )
        typer.echo(f"{what} ({by}); every worker follows within a second")
        return
    if change["action"] == "reset":
        dropped = (change.get("evidence") or {}).get("dropped") or {}
        setter = f", set by {dropped['actor']}" if dropped.get("actor") else ""
        yaml = f"the YAML ({_stage_text(after)})" if after.get("stage") else "the YAML"
        typer.echo(
            f"reset {unit}: dropped the runtime override ({_stage_text(before)}{setter}); "
            f"{yaml} is in force again ({by}); every worker follows within a second"
        )
        return
    done = _DONE.get(change["action"], change["action"])
    typer.echo(
        f"{done} {unit}: {_stage_text(before)} → {_stage_text(after)} "
        f"({by}); every worker follows within a second"
    )


def fault_text(fault: Mapping[str, Any]) -> str:
    """A fault as `faults:` spells it, in words: "abort 50 % (503), delay 10 % by 300 ms on
    new"."""
    parts = []
    abort, delay = fault.get("abort"), fault.get("delay")
    if abort:
        parts.append(f"abort {abort['percent']:g} % ({abort.get('status', 503)})")
    if delay:
        parts.append(f"delay {delay['percent']:g} % by {delay['ms']} ms")
    text = ", ".join(parts) + f" on {fault.get('side', 'new')}"
    if fault.get("only_when_header"):
        text += f" when asked with {fault['only_when_header']}"
    return text


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)?")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """`60s`, `5m`, `1h`, `1.5m` or plain seconds, in seconds; typer.BadParameter if not."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise typer.BadParameter(f"expected a duration like 60s, 5m or 1h, got {text!r}")
    return float(match[1]) * _UNIT_S[match[2] or "s"]


def override_notes(overridden: Iterable[tuple[str, str, Mapping[str, Any]]]) -> list[str]:
    """The footnote of a starred stage: per unit (name, the YAML's stage, its override as
    `Override.to_json` has it), who set the override, when, and how to let the YAML stand."""
    notes: list[str] = []
    seen: set[str] = set()
    for unit, yaml_stage, override in overridden:
        if unit in seen:
            continue
        seen.add(unit)
        why = f" ({override['reason']!r})" if override.get("reason") else ""
        notes.append(
            f"* {unit}: runtime override by {override.get('actor') or 'unknown'} "
            f"{_when(override.get('updated_at'))}{why}; the YAML says {yaml_stage}: "
            f"`strangler reset {unit} -r why` lets the YAML stand"
        )
    return notes


def _change(
    name: str, action: str, body: dict[str, Any], config: Path, admin: str | None, as_json: bool
) -> None:
    with _client(config, admin) as client:
        _report_change(client.change(name, action, body), as_json)


def promote(
    route: Annotated[str, typer.Argument(metavar="ROUTE", help="A route or rollout group.")],
    reason: ReasonOption,
    weight: Annotated[
        float | None, typer.Option(help="Canary weight (%) to move to; default: the next step.")
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Promote although the evidence gate or an SLO's budget gate is closed (audited).",
        ),
    ] = False,
    config: ConfigOption = Path("strangler.yaml"),
    admin: AdminOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move a route one stage on.

    legacy -> shadow -> canary (the plan's steps) -> new -> retired. Leaving shadow needs the
    evidence gate (shadow parity), and past shadow every SLO with a budget_gate over the route needs
    that much error budget left, unless --force.
    """
    body = {"reason": reason, "weight": weight, "force": force}
    _change(route, "promote", body, config, admin, as_json)


def _simple_change(action: str, help_text: str) -> Callable[..., None]:
    """A command that changes a unit with nothing but a reason (rollback, pause, resume,
    reset)."""

    def command(
        route: Annotated[str, typer.Argument(metavar="ROUTE", help="A route or rollout group.")],
        reason: ReasonOption,
        config: ConfigOption = Path("strangler.yaml"),
        admin: AdminOption = None,
        as_json: JsonOption = False,
    ) -> None:
        _change(route, action, {"reason": reason}, config, admin, as_json)

    command.__name__ = action
    command.__doc__ = help_text
    return command


def rollback(
    route: Annotated[str, typer.Argument(metavar="ROUTE", help="A route or rollout group.")],
    reason: ReasonOption,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Roll back a retired route too (legacy must still have its code; audited).",
        ),
    ] = False,
    config: ConfigOption = Path("strangler.yaml"),
    admin: AdminOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send everyone back to legacy at once, from any stage.

    Every worker follows within a second. The route stays on legacy (a runtime override)
    until promoted again or `strangler reset` lets the YAML stand. A retired route is refused
    unless --force: legacy may no longer have its code.
    """
    _change(route, "rollback", {"reason": reason, "force": force}, config, admin, as_json)


def drill(
    route: Annotated[str, typer.Argument(metavar="ROUTE", help="A route or rollout group.")],
    reason: ReasonOption,
    abort: Annotated[
        float | None,
        typer.Option("--abort", metavar="PCT", min=0, max=100, help="Answer PCT % with --status."),
    ] = None,
    status_code: Annotated[
        int, typer.Option("--status", min=400, max=599, help="The aborted answers' status.")
    ] = 503,
    delay_ms: Annotated[
        int | None,
        typer.Option("--delay-ms", metavar="MS", min=1, max=60_000, help="Hold requests MS ms."),
    ] = None,
    delay_percent: Annotated[
        float,
        typer.Option(
            "--delay-percent", metavar="PCT", min=0, max=100, help="Share of requests delayed."
        ),
    ] = 100.0,
    side: Annotated[
        str, typer.Option("--side", help="The side whose answers suffer: new, legacy or both.")
    ] = "new",
    for_: Annotated[
        str | None,
        typer.Option("--for", metavar="DURATION", help="How long, e.g. 60s, 5m (required)."),
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="End the drill in force now.")] = False,
    config: ConfigOption = Path("strangler.yaml"),
    admin: AdminOption = None,
    as_json: JsonOption = False,
) -> None:
    """Inject faults into a route's answers for a while: a drill.

    Aborted requests get --status (problem+json) without reaching the backend; delayed ones
    wait --delay-ms first. They are counted, logged and judged like real failures, so a drill
    on a canary's new side shows whether the analyzer rolls it back. Audited; every worker
    follows within a second, and the drill ends by itself after --for.
    """
    body: dict[str, Any] = {"reason": reason, "clear": clear}
    if not clear:
        if abort is None and delay_ms is None:
            raise typer.BadParameter("give --abort PCT, --delay-ms MS (or both), or --clear")
        if for_ is None:
            raise typer.BadParameter("a drill needs --for DURATION (it ends by itself)")
        fault: dict[str, Any] = {"side": side}
        if abort is not None:
            fault["abort"] = {"percent": abort, "status": status_code}
        if delay_ms is not None:
            fault["delay"] = {"percent": delay_percent, "ms": delay_ms}
        body.update(fault=fault, for_s=parse_duration(for_))
    _change(route, "drill", body, config, admin, as_json)


reset = _simple_change(
    "reset",
    "Let the YAML stand again: drop a route's runtime override.\n\n"
    "The YAML's stage and weight are in force again in every worker within a second, and the "
    "audit log keeps what was dropped. For a route of a rollout group, the whole group. To "
    "keep an override instead, write it into the file with `strangler export`.",
)
pause = _simple_change("pause", "Stop the analyzer moving a canary; its weight stays.")
resume = _simple_change(
    "resume", "Let the analyzer move a paused canary again.\n\nIts current step starts over."
)


@rollout_app.command("weight")
def weight(
    route: Annotated[
        str, typer.Argument(metavar="ROUTE", help="A route or rollout group in stage canary.")
    ],
    value: Annotated[float, typer.Argument(metavar="PERCENT", help="The weight, 0 to 100 (%).")],
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


def backend_rows(backends: dict[str, Any]) -> list[list[str]]:
    """One row per server of each balanced backend, as the gateway's workers see it."""
    rows = []
    for name, backend in sorted(backends.items()):
        healthy = f"{name} ({backend.get('healthy', 0)} healthy)"
        for index, server in enumerate(backend.get("servers", [])):
            state = server["state"]
            workers = server.get("workers")
            if state == "mixed" and isinstance(workers, dict):
                state += " (" + ", ".join(f"{k} {v}" for k, v in sorted(workers.items())) + ")"
            rows.append(
                [
                    healthy if index == 0 else "",
                    server["server"],
                    state,
                    _when(server.get("ejected_until")),
                    str(server.get("active_requests", "-")),
                    str(server.get("weight", 1)),
                ]
            )
    return rows


def status(
    config: ConfigOption = Path("strangler.yaml"),
    admin: AdminOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show every route's stage in force and its figures.

    Stage and weight (starred when a runtime override sets them), the share answered by new
    over the last hour, shadow parity, and the last canary verdict.
    """
    with _client(config, admin) as client:
        report = client.status()
        base = client.base if isinstance(client, LocalClient) else None
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
    notes = override_notes(
        (item["unit"], item["yaml_stage"], item.get("override") or {})
        for item in report["routes"]
        if item["overridden"]
    )
    typer.echo("")
    for note in notes:
        typer.echo(note)
    typer.echo(f"state version {report['state_version']} (changes: `strangler audit`)")
    backends = report.get("backends")
    if backends:
        typer.echo("")
        print_table(
            ["BACKEND", "SERVER", "STATE", "EJECTED UNTIL", "ACTIVE", "WEIGHT"],
            backend_rows(backends),
        )
    elif base is not None and any(b.is_balanced for b in base.backends.values()):
        # Servers' health lives in the running gateway, not in the store.
        typer.echo("servers' health: `strangler status --admin URL` asks the running gateway")
    if report["orphaned_overrides"]:
        typer.echo(
            f"overrides for units no longer in the YAML (they change nothing; "
            f"`strangler reset UNIT -r why` drops one): {', '.join(report['orphaned_overrides'])}"
        )


@rollout_app.command("status")
def rollout_status(
    route: Annotated[
        str | None, typer.Argument(metavar="ROUTE", help="A route or rollout group.")
    ] = None,
    config: ConfigOption = Path("strangler.yaml"),
    admin: AdminOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one rollout in detail, or every route.

    A rollout's stage and step, the evidence gate that blocks it, and its verdicts with their
    numbers; without ROUTE, what `strangler status` shows.
    """
    if route is None:
        status(config, admin, as_json)
        return
    with _client(config, admin) as client:
        report = client.rollout(route)
    if as_json:
        _echo_json(report)
        return
    weight = f" at {report['weight']:g} %" if report["stage"] == "canary" else ""
    star = "*" if report["overridden"] else ""
    typer.echo(
        f"{report['unit']}: stage {report['stage']}{star}{weight} (yaml: {report['yaml_stage']})"
    )
    if report["overridden"]:
        for note in override_notes([(report["unit"], report["yaml_stage"], report["override"])]):
            typer.echo(note)
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
        ["VERSION", "AT", "ROUTE", "ACTOR", "ACTION", "FROM", "TO", "WHY"],
        [
            [
                str(c["version"]),
                _when(c["at"]),
                c["unit"],
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
    route: Annotated[
        str | None,
        typer.Argument(
            metavar="ROUTE", help="A route or rollout group (its group's changes); default: all."
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=1000, help="Show at most this many changes, newest first.")
    ] = 50,
    config: ConfigOption = Path("strangler.yaml"),
    admin: AdminOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the changes of stage and weight, newest first.

    Who changed which route, when, from what to what, and why.
    """
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
    admin: AdminOption = None,
) -> None:
    """Print the config with the runtime overrides written in.

    Comments and layout are kept. This is how what a rollout reached is kept: review and
    commit the file. The other way back to one source of truth is `strangler reset ROUTE -r
    why`, which drops an override and lets the file stand.
    """
    from strangler.cli.export import ExportError, export_yaml, write_atomically
    from strangler.config import load_config
    from strangler.errors import ConfigError

    try:
        text = config.read_text(encoding="utf-8")
        base = load_config(config)
    except (OSError, ConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    with _client(config, admin) as client:
        overrides = client.overrides()
    try:
        text = export_yaml(text, base, overrides, str(config))
    except ExportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if output is None:
        typer.echo(text, nl=False)
        return
    write_atomically(output, text)
    typer.echo(f"wrote {output}", err=True)


def register(app: typer.Typer) -> None:
    for command in (promote, rollback, pause, resume, reset, drill, status, audit, export):
        app.command()(command)
    app.add_typer(rollout_app, name="rollout")
