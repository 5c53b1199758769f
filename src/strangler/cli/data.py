"""`strangler data diff`: prove that the new database holds what the legacy one holds.

Rules:
- Exit 0 when every table is shown equal, 1 when differences were found (or a cap stopped a
  table before it was shown equal), 2 when something could not run (an unusable config, a
  table or column that does not exist, a database that can't be reached or dropped the
  connection, a store that can't record): the reason is printed.
- Each table's summary goes to the store as soon as that table is done; a table that failed
  writes nothing, so the data gate keeps reading its last good run.
- A progress bar goes to stderr on a terminal only; `--json` prints nothing but the document.
- Sample values are redacted with the shadow redaction lists (`shadow.redact` of every route):
  a secret column's values are never printed.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from strangler.cli.options import ConfigOption, JsonOption
from strangler.cli.tables import print_table
from strangler.config import DEFAULT_REDACT, Config, DataConfig, DataTableConfig, load_config
from strangler.control.data_runs import DataRun
from strangler.data.bisect import DiffKind
from strangler.data.diff import Limits, Progress, TableResult
from strangler.data.run import RunOutcome, run_diff, select_tables
from strangler.errors import ConfigError, StranglerError

data_app = typer.Typer(
    help="Data parity: compare the legacy and new databases' tables.",
    no_args_is_help=True,
    add_completion=False,
)

EXIT_EQUAL, EXIT_DIFFERENT, EXIT_FAILED = 0, 1, 2
# Samples printed per kind in the text output (--json has every one found).
SHOWN_SAMPLES = 10


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_FAILED)


def _data_section(
    config: Path, tables: list[str] | None, purpose: str
) -> tuple[Config, DataConfig, list[DataTableConfig]]:
    """The config, its `data:` section and the tables chosen on the command line; exit 2 with
    the reason when the config does not load, has no `data:` or names an unknown table."""
    try:
        loaded = load_config(config)
    except ConfigError as exc:
        raise _fail(str(exc)) from exc
    if loaded.data is None:
        raise _fail(f"{config} has no `data:` section (the databases and tables to {purpose})")
    data = loaded.data
    try:
        chosen = select_tables(data, tables or [])
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    return loaded, data, chosen


@data_app.command("diff")
def diff(
    tables: Annotated[
        list[str] | None,
        typer.Argument(metavar="[TABLE...]", help="Tables under data.tables; default: all."),
    ] = None,
    config: ConfigOption = Path("strangler.yaml"),
    as_json: JsonOption = False,
    max_differences: Annotated[
        int,
        typer.Option(
            "--max-differences", metavar="N", min=1, help="Stop a table after N differences."
        ),
    ] = 1000,
    max_seconds: Annotated[
        float | None,
        typer.Option("--max-seconds", metavar="S", min=0.001, help="Stop a table after S s."),
    ] = None,
) -> None:
    """Compare the legacy and new databases' tables by checksum bisection.

    Exits 0 when they are equal, 1 when differences were found, 2 when the diff could not run.
    """
    loaded, data, chosen = _data_section(config, tables, "compare")
    from strangler.control.stores import open_store

    try:
        store = open_store(loaded.store, str(config))
    except StranglerError as exc:
        raise _fail(f"cannot open the store to record the results: {exc}") from exc
    limits = Limits(
        max_differences=max_differences,
        max_seconds=max_seconds,
        min_age_s=data.min_age_s,
    )

    def record(result: TableResult) -> None:
        store.add_data_run(
            DataRun(
                table=result.name,
                finished_at=time.time(),
                seconds=result.seconds,
                rows_legacy=result.rows_legacy,
                rows_new=result.rows_new,
                missing_in_new=result.count(DiffKind.MISSING_IN_NEW),
                missing_in_legacy=result.count(DiffKind.MISSING_IN_LEGACY),
                different=result.count(DiffKind.DIFFERENT),
                complete=result.complete,
            )
        )

    try:
        with _progress_bar(enabled=not as_json and sys.stderr.isatty()) as on_progress:
            outcome = run_diff(data, config, chosen, limits, on_progress=on_progress, record=record)
    except StranglerError as exc:  # the store refused a summary
        raise _fail(f"cannot record the results: {exc}") from exc
    finally:
        store.close()
    redact = redactor_of(loaded)
    if as_json:
        document = {
            "tables": [result.to_json(redact) for result in outcome.results],
            "errors": [{"table": name, "error": reason} for name, reason in outcome.errors],
        }
        typer.echo(json.dumps(document, ensure_ascii=False))
    else:
        _print_outcome(outcome, redact)
    raise typer.Exit(exit_code(outcome))


def exit_code(outcome: RunOutcome) -> int:
    """0 only when every table was shown equal: a run stopped at a cap has not shown it."""
    if outcome.errors:
        return EXIT_FAILED
    if any(not (result.is_equal and result.complete) for result in outcome.results):
        return EXIT_DIFFERENT
    return EXIT_EQUAL


def redactor_of(config: Config) -> Callable[[str, str | None], str | None]:
    """`redact(column, value)`: the routes' shadow redaction lists applied to sample values,
    by column name (the whole value) and by value shape (tokens, credentials in text)."""
    from strangler.shadow.redact import FILTERED, Redactor

    filters = {item for route in config.routes for item in route.shadow.redact}
    redactor = Redactor(sorted(filters) if filters else DEFAULT_REDACT)

    def redact(column: str, value: str | None) -> str | None:
        if value is None:
            return None
        return FILTERED if redactor.is_secret(column) else redactor.text(value)

    return redact


@contextmanager
def _progress_bar(*, enabled: bool) -> Iterator[Callable[[Progress], None] | None]:
    """Rows checked of the estimate, their rate and the differences so far, on stderr."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    bar = Bar(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} rows/s, {task.fields[differences]} differences"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    tasks: dict[str, Any] = {}
    started: dict[str, float] = {}

    def update(progress: Progress) -> None:
        if progress.table not in tasks:
            started[progress.table] = time.monotonic()
            tasks[progress.table] = bar.add_task(progress.table, rate=0, differences=0, total=None)
        elapsed = max(1e-3, time.monotonic() - started[progress.table])
        bar.update(
            tasks[progress.table],
            completed=progress.rows_checked,
            total=progress.rows_estimated,
            rate=f"{progress.rows_checked / elapsed:,.0f}",
            differences=progress.differences,
        )

    with bar:
        yield update


def _print_outcome(outcome: RunOutcome, redact: Callable[[str, str | None], str | None]) -> None:
    if outcome.results:
        print_table(
            ["TABLE", "ROWS LEGACY", "ROWS NEW", "MISSING IN NEW", "MISSING IN LEGACY",
             "DIFFERENT", "SECONDS", "COMPLETE"],
            [
                [
                    r.name, str(r.rows_legacy), str(r.rows_new),
                    str(r.count(DiffKind.MISSING_IN_NEW)), str(r.count(DiffKind.MISSING_IN_LEGACY)),
                    str(r.count(DiffKind.DIFFERENT)), f"{r.seconds:.2f}",
                    "yes" if r.complete else "no (stopped at a cap: counts are lower bounds)",
                ]
                for r in outcome.results
            ],
        )  # fmt: skip
    for result in outcome.results:
        samples = result.to_json(redact)["samples"]
        for kind in ("missing_in_new", "missing_in_legacy"):
            keys = samples[kind]
            if keys:
                shown = ", ".join(
                    json.dumps(key, ensure_ascii=False) for key in keys[:SHOWN_SAMPLES]
                )
                more = (
                    f" (and {len(keys) - SHOWN_SAMPLES} more)" if len(keys) > SHOWN_SAMPLES else ""
                )
                typer.echo(f"{result.name}: {kind.replace('_', ' ')}: {shown}{more}")
        for sample in samples["different"][:SHOWN_SAMPLES]:
            changes = "; ".join(
                f"{column}: {json.dumps(before, ensure_ascii=False)} (legacy) != "
                f"{json.dumps(after, ensure_ascii=False)} (new)"
                for column, (before, after) in sample["columns"].items()
            )
            key = json.dumps(sample["key"], ensure_ascii=False)
            typer.echo(f"{result.name}: different at {key}: {changes}")
        if result.deferred:
            typer.echo(
                f"{result.name}: {result.deferred} differing rows updated in the last "
                "min_age_s were not judged (replication lag); the next run checks them"
            )
    for name, reason in outcome.errors:
        typer.echo(f"error: table {name}: {reason}", err=True)


@data_app.command("watch")
def watch(
    config: ConfigOption = Path("strangler.yaml"),
    tables: Annotated[
        list[str] | None,
        typer.Option("--table", metavar="TABLE", help="Watch this table only (repeatable)."),
    ] = None,
    until_idle: Annotated[
        bool,
        typer.Option(
            "--until-idle",
            help="Stop once every change committed so far is judged (for cron and tests).",
        ),
    ] = False,
    drop_slot: Annotated[
        bool,
        typer.Option(
            "--drop-slot",
            help="Drop the replication slot and publication this created, forget the position.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Check each key legacy's changes touch on new.

    A key still different `data.watch.max_lag_s` after its change is drift: kept in the store,
    shown by `progress` and GET /api/v1/data, and it holds the data gate. Runs until Ctrl-C or
    SIGTERM (or, with --until-idle, until caught up). Exits 0 when no drift is open, 1 when
    some is, 2 when it could not run.
    """
    import signal
    import threading

    from strangler.control.stores import open_store
    from strangler.data.engines import DataSourceError, open_database
    from strangler.data.plan import DataPlanError, build_plan
    from strangler.data.watch import Watcher
    from strangler.data.watch_postgres import WatchSetupError

    loaded, data, chosen = _data_section(config, tables, "watch")
    scheme = data.legacy.url.partition(":")[0].partition("+")[0]
    if scheme not in ("postgresql", "mysql"):
        raise _fail(
            "data watch follows a PostgreSQL (logical replication) or MySQL/MariaDB (binlog) "
            f"legacy database; data.legacy.url is {scheme}://"
        )
    try:
        store = open_store(loaded.store, str(config))
    except StranglerError as exc:
        raise _fail(f"cannot open the store: {exc}") from exc
    legacy = new = None
    source: Any = None
    try:
        legacy = open_database("legacy", data.legacy.url, source=config, pool_size=2)
        new = open_database("new", data.new.url, source=config, pool_size=2)
        plans = {table.name: build_plan(table, data, legacy, new) for table in chosen}
        stored = None
        if scheme == "postgresql":
            from strangler.data.watch_postgres import PostgresChanges

            probe = PostgresChanges.stream_of(data.legacy.url)
        else:
            from strangler.data.watch_binlog import BinlogChanges

            probe = BinlogChanges.stream_of(data.legacy.url)
        if not drop_slot:
            found = store.watch_position(probe)
            stored = found.position if found is not None else None
        if scheme == "postgresql":
            source = PostgresChanges(
                data.legacy.url, plans, stored_position=stored, create=not drop_slot
            )
        else:
            source = BinlogChanges(data.legacy.url, plans, stored_position=stored)
        if drop_slot:
            dropped = source.drop()
            store.forget_watch(source.stream)
            what = ", ".join(dropped) if dropped else "nothing on the server"
            typer.echo(f"dropped {what}; forgot the position of {source.stream}")
            store.close()
            raise typer.Exit(0)
        stop = threading.Event()
        previous = {
            signum: signal.signal(signum, lambda _signum, _frame: stop.set())
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        watcher = Watcher(
            source,
            plans,
            store,
            data.watch,
            redactor_of(loaded),
            echo=lambda line: typer.echo(line, err=True),
        )
        if not as_json:
            typer.echo(
                f"watching {', '.join(plans)} from {source.stream} at {source.position}", err=True
            )
        for note in source.notes:
            typer.echo(f"warning: {note}", err=True)
        try:
            summary = watcher.run(stop, until_idle=until_idle)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    except (DataSourceError, DataPlanError, WatchSetupError) as exc:
        raise _fail(str(exc)) from exc
    except StranglerError as exc:  # the store refused
        raise _fail(f"cannot record the watch: {exc}") from exc
    finally:
        if source is not None:
            source.close()
        for db in (legacy, new):
            if db is not None:
                db.close()
    statuses = store.watch_statuses()
    store.close()
    open_drift = sum(statuses[name].open_drift for name in plans if name in statuses)
    if as_json:
        document = summary.to_json()
        document["open_drift"] = open_drift
        typer.echo(json.dumps(document, ensure_ascii=False))
    else:
        typer.echo(
            f"{summary.changes} changes read, {summary.checked} keys checked, "
            f"{summary.drift_found} drifted, {summary.resolved} resolved; "
            f"{open_drift} open drift; confirmed at {summary.position}"
        )
    raise typer.Exit(EXIT_DIFFERENT if open_drift else EXIT_EQUAL)
