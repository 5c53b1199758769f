"""`strangler data watch` against real change streams: a private PostgreSQL (wal_level =
logical) and a private MariaDB (binlog in row format) as legacy, a PostgreSQL database as new.
The test plays the sync job: it writes legacy's change to new, or leaves it out.

What they check is what a user sees: the exit code, the run's JSON, the drift the store keeps,
the data gate's answer, and the slot on the server.
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from strangler.cli.main import app
from strangler.config import parse_config
from strangler.control.data_runs import DataRun
from strangler.control.service import ChangeRefused, ControlService
from strangler.control.stores import SqliteShadowStore
from tests import mariadb, postgres
from tests.integration.private_databases import (
    binlog_mariadb,
    create_mariadb_database,
    create_postgres_database,
    logical_postgres,
    mariadb_connect,
)

WATCH = """\
  watch: {lag_s: 0.2, max_lag_s: 1.0, poll_s: 0.1, max_pending: 50}
"""


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    with logical_postgres() as url:
        yield url


@pytest.fixture(scope="module")
def maria_server() -> Iterator[str]:
    with binlog_mariadb() as url:
        yield url


@dataclass
class Setup:
    engine: str
    legacy_url: str
    new_url: str
    legacy: Callable[[str], None]
    new: Callable[[str], None]
    config: Path
    store_path: Path

    def watch(self, *args: str) -> tuple[int, str]:
        code, out, _ = self.watch_streams(*args)
        return code, out

    def watch_streams(self, *args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(
            app, ["data", "watch", "--config", str(self.config), *args], catch_exceptions=False
        )
        return result.exit_code, result.stdout, result.stderr

    def watch_json(self) -> tuple[int, dict[str, Any]]:
        code, out = self.watch("--until-idle", "--json")
        assert code in (0, 1), out
        return code, json.loads(out)

    def drift(self) -> list[dict[str, Any]]:
        store = SqliteShadowStore(self.store_path)
        try:
            return [record.to_json() for record in store.drift("items")]
        finally:
            store.close()


@pytest.fixture(params=["postgresql", "mariadb"])
def setup(request: pytest.FixtureRequest, tmp_path: Path, pg_server: str) -> Iterator[Setup]:
    engine = request.param
    name = f"w{secrets.token_hex(4)}"
    new_url = create_postgres_database(pg_server, f"{name}_new")
    new_conn = psycopg.connect(new_url, autocommit=True)
    if engine == "postgresql":
        legacy_url = create_postgres_database(pg_server, f"{name}_legacy")
        legacy_pg = psycopg.connect(legacy_url, autocommit=True)
        legacy_pg.execute(
            "CREATE TABLE items (id bigint PRIMARY KEY, name text, qty integer, "
            "updated_at timestamp)"
        )

        def legacy(sql: str) -> None:
            legacy_pg.execute(sql)

        closers: list[Callable[[], None]] = [legacy_pg.close]
    else:
        maria = request.getfixturevalue("maria_server")
        legacy_url = create_mariadb_database(maria, f"{name}_legacy")
        legacy_my = mariadb_connect(legacy_url)
        with legacy_my.cursor() as cursor:
            cursor.execute(
                "CREATE TABLE items (id BIGINT PRIMARY KEY, name VARCHAR(100), qty INT, "
                "updated_at DATETIME(6)) ENGINE=InnoDB"
            )

        def legacy(sql: str) -> None:
            with legacy_my.cursor() as cursor:
                cursor.execute(sql)

        closers = [legacy_my.close]
    new_conn.execute(
        "CREATE TABLE items (id bigint PRIMARY KEY, name text, qty integer, updated_at timestamp)"
    )
    config = tmp_path / "strangler.yaml"
    store_path = tmp_path / "store.db"
    config.write_text(
        f"""\
listen: 127.0.0.1:0
backends:
  legacy: {{url: "http://127.0.0.1:3000"}}
  new: {{url: "http://127.0.0.1:8080"}}
routes:
  - name: items
    match: "GET /items"
    stage: canary
    canary: {{weight: 5, plan: {{steps: [5, 100], interval_s: 10, min_requests: 10}}}}
    shadow: {{redact: [qty]}}
store: {{path: {store_path}}}
data:
  legacy: {{url: "{legacy_url}"}}
  new: {{url: "{new_url}"}}
  min_age_s: 0
{WATCH}  tables:
    - {{name: items, key: id, routes: [items]}}
""",
        encoding="utf-8",
    )
    try:
        yield Setup(engine, legacy_url, new_url, legacy, new_conn.execute, config, store_path)
    finally:
        if engine == "postgresql":
            CliRunner().invoke(app, ["data", "watch", "--config", str(config), "--drop-slot"])
        for close in closers:
            close()
        new_conn.close()


def both(setup: Setup, sql: str) -> None:
    """A change the sync job applies: the same statement on legacy and on new."""
    setup.legacy(sql)
    setup.new(sql)


def test_changes_the_sync_job_missed_are_drift_and_a_restart_misses_none(setup: Setup) -> None:
    both(setup, "INSERT INTO items VALUES (1, 'one', 1, NULL), (2, 'two', 2, NULL), "
                "(3, 'three', 3, NULL)")  # fmt: skip
    # The first run starts at the stream's end: what happened before is data diff's job.
    code, first = setup.watch_json()
    assert (code, first["changes"]) == (0, 0)

    both(setup, "INSERT INTO items VALUES (4, 'four', 4, NULL)")
    both(setup, "UPDATE items SET name = 'uno' WHERE id = 1")
    # The sync job stopped writing one column: name, not qty.
    setup.legacy("UPDATE items SET name = 'deux', qty = 20 WHERE id = 2")
    setup.new("UPDATE items SET qty = 20 WHERE id = 2")
    setup.legacy("DELETE FROM items WHERE id = 3")  # never synced
    code, run = setup.watch_json()
    assert code == 1, run
    assert (run["changes"], run["checked"], run["drift_found"]) == (4, 4, 2)
    drift = {record["key"]: record for record in setup.drift()}
    assert set(drift) == {"2", "3"}
    assert (drift["2"]["kind"], drift["2"]["columns"]) == ("different", {"name": ["deux", "two"]})
    assert drift["3"]["kind"] == "missing_in_legacy"
    first_seen = drift["2"]["first_seen"]

    # Stopped; while it is down, one change is synced, one is not.
    both(setup, "UPDATE items SET qty = 10 WHERE id = 1")
    setup.legacy("INSERT INTO items VALUES (5, 'five', 5, NULL)")
    code, rerun = setup.watch_json()
    # Each change made while down checked once, none of the first run's again.
    assert (code, rerun["changes"], rerun["checked"], rerun["drift_found"]) == (1, 2, 2, 1)
    drift = {record["key"]: record for record in setup.drift()}
    assert set(drift) == {"2", "3", "5"}
    assert drift["5"]["kind"] == "missing_in_new"
    assert drift["2"]["first_seen"] == first_seen  # kept, not reported again

    # The redaction list of the routes hides qty's values.
    setup.legacy("UPDATE items SET qty = 99 WHERE id = 4")
    code, run = setup.watch_json()
    drift = {record["key"]: record for record in setup.drift()}
    assert drift["4"]["columns"] == {"qty": ["[FILTERED]", "[FILTERED]"]}

    # The sync job catches up: open drift is checked again and resolved.
    setup.new("UPDATE items SET name = 'deux' WHERE id = 2")
    setup.new("DELETE FROM items WHERE id = 3")
    setup.new("INSERT INTO items VALUES (5, 'five', 5, NULL)")
    setup.new("UPDATE items SET qty = 99 WHERE id = 4")
    code, run = setup.watch_json()
    assert (code, run["resolved"], run["checked"]) == (0, 4, 0)
    assert setup.drift() == []


def test_a_burst_larger_than_the_queue_is_read_in_parts(setup: Setup) -> None:
    code, _ = setup.watch_json()
    rows = ", ".join(f"({i}, 'item {i}', {i}, NULL)" for i in range(1, 301))
    setup.legacy(f"INSERT INTO items VALUES {rows}")  # one transaction of 300 rows
    setup.new(f"INSERT INTO items VALUES {rows}")
    setup.new("UPDATE items SET name = 'wrong' WHERE id = 150")
    code, run = setup.watch_json()
    assert code == 1
    assert (run["changes"], run["checked"], run["drift_found"]) == (300, 300, 1)
    # At most max_pending (50) keys waited at once: the rest waited in the database's log.
    assert run["pending_high_water"] <= 50
    assert [record["key"] for record in setup.drift()] == ["150"]
    # A truncate lists no keys: the watch says so and points at data diff.
    both(setup, "TRUNCATE TABLE items")
    code, _, err = setup.watch_streams("--until-idle")
    assert "truncated: items was emptied on legacy" in err


# The gate and the stop path read the store and run the engine-independent loop: one engine.
@pytest.mark.parametrize("setup", ["postgresql"], indirect=True)
def test_the_data_gate_holds_a_route_while_its_table_drifts(setup: Setup) -> None:
    setup.watch_json()
    setup.legacy("INSERT INTO items VALUES (7, 'seven', 7, NULL)")
    code, _ = setup.watch_json()
    assert code == 1
    store = SqliteShadowStore(setup.store_path)
    try:
        now = time.time()
        store.add_data_run(DataRun("items", now, 0.1, 1, 1, 0, 0, 0, complete=True))
        config = parse_config(setup.config.read_text(), str(setup.config))
        service = ControlService(store, config, clock=time.time)
        with pytest.raises(ChangeRefused) as refused:
            service.promote("items", actor="ana", reason="done")
        assert "table items (read or written by items): `data watch` found 1 key drifted " in (
            str(refused.value)
        )
        assert "(e.g. key 7)" in str(refused.value)
        forced = service.promote("items", actor="ana", reason="known lag", force=True)
        assert forced.after["weight_bp"] == 10_000
        assert forced.evidence is not None and forced.evidence["data_gate"]["forced"] is True
        assert "found 1 key drifted" in forced.evidence["data_gate"]["tables"][0]
        with pytest.raises(ChangeRefused, match="found 1 key drifted"):
            service.promote("items", actor="ana", reason="to new")
        setup.new("INSERT INTO items VALUES (7, 'seven', 7, NULL)")
        code, run = setup.watch_json()
        assert (code, run["resolved"]) == (0, 1)
        moved = service.promote("items", actor="ana", reason="data agrees")
        assert moved.after["stage"] == "new"
    finally:
        store.close()


@pytest.mark.parametrize("setup", ["postgresql"], indirect=True)
def test_a_running_watch_reports_drift_within_max_lag_and_stops_on_sigterm(
    setup: Setup,
) -> None:
    setup.watch_json()
    child = subprocess.Popen(
        [sys.executable, "-m", "strangler", "data", "watch", "--config", str(setup.config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stderr is not None
        assert "watching items" in child.stderr.readline()
        changed = time.time()
        setup.legacy("INSERT INTO items VALUES (8, 'eight', 8, NULL)")
        deadline = changed + 15
        while not setup.drift() and time.time() < deadline:
            time.sleep(0.05)
        drift = setup.drift()
        assert [record["key"] for record in drift] == ["8"]
        # Reported no sooner than max_lag_s after the change, and well within a minute.
        assert 1.0 <= drift[0]["first_seen"] - changed < 15
        child.send_signal(signal.SIGTERM)
        out, _ = child.communicate(timeout=30)
        assert child.returncode == 1, out
        assert "1 open drift" in out
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_drop_slot_removes_what_watch_created(setup: Setup) -> None:
    if setup.engine != "postgresql":
        code, out = setup.watch("--drop-slot")
        assert (code, out.startswith("dropped nothing on the server")) == (0, True)
        return
    setup.watch_json()
    with psycopg.connect(setup.legacy_url, autocommit=True) as conn:
        slots = conn.execute("SELECT slot_name FROM pg_replication_slots").fetchall()
        assert len(slots) == 1 and slots[0][0].startswith("strangler_watch_")
        # A slot dropped behind strangler's back: created anew, and the gap is said.
        conn.execute("SELECT pg_drop_replication_slot(%s)", (slots[0][0],))
        code, _, err = setup.watch_streams("--until-idle")
        assert code == 0 and f"warning: slot {slots[0][0]} was gone" in err
        code, out = setup.watch("--drop-slot")
        assert code == 0 and "replication slot strangler_watch_" in out
        assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)
    store = SqliteShadowStore(setup.store_path)
    try:
        assert store.watch_positions() == []
    finally:
        store.close()


def test_a_database_without_change_capture_is_refused_with_the_fix(tmp_path: Path) -> None:
    """The machine's shared servers run as a fresh install does: wal_level = replica, no
    binlog. `data watch` says so and how to change it (exit 2)."""
    pg_admin = postgres.require_server()
    my_admin = mariadb.require_server()
    pg_url = postgres.create_database(pg_admin)
    my_url = mariadb.create_database(my_admin)
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE items (id bigint PRIMARY KEY)")
            wal_level = conn.execute("SHOW wal_level").fetchone()
        with mariadb.connect(my_url) as conn, conn.cursor() as cursor:
            cursor.execute("CREATE TABLE items (id BIGINT PRIMARY KEY)")
            cursor.execute("SELECT @@log_bin")
            log_bin = cursor.fetchone()
        cases = []
        if wal_level != ("logical",):
            cases.append((pg_url, my_url, "ALTER SYSTEM SET wal_level = logical"))
        if log_bin != (1,):
            cases.append((my_url, pg_url, "binlog_format = ROW"))
        if not cases:
            pytest.skip("both shared servers capture changes already: nothing to refuse")
        for legacy, new, expected in cases:
            config = tmp_path / "strangler.yaml"
            config.write_text(
                f"""\
backends: {{legacy: {{url: "http://127.0.0.1:3000"}}}}
routes: [{{name: items, match: "GET /items"}}]
store: {{path: {tmp_path / "store.db"}}}
data:
  legacy: {{url: "{legacy}"}}
  new: {{url: "{new}"}}
  tables: [{{name: items, key: id}}]
""",
                encoding="utf-8",
            )
            result = CliRunner().invoke(app, ["data", "watch", "--config", str(config)])
            assert result.exit_code == 2, result.output
            assert expected in result.output
    finally:
        postgres.drop_database(pg_admin, pg_url)
        mariadb.drop_database(my_admin, my_url)


def test_until_idle_ends_while_other_tables_keep_changing(setup: Setup) -> None:
    setup.watch_json()
    setup.legacy("CREATE TABLE other (id integer PRIMARY KEY)")
    connect = (
        (lambda: psycopg.connect(setup.legacy_url, autocommit=True))
        if setup.engine == "postgresql"
        else (lambda: mariadb_connect(setup.legacy_url))
    )
    done = threading.Event()
    written = [0]

    def busy() -> None:
        conn: Any = connect()
        try:
            while not done.is_set():
                written[0] += 1
                conn.cursor().execute(f"INSERT INTO other VALUES ({written[0]})")
        finally:
            conn.close()

    writer = threading.Thread(target=busy)
    writer.start()
    try:
        both(setup, "INSERT INTO items VALUES (1, 'one', 1, NULL)")
        code, run = setup.watch_json()
        assert (code, run["checked"]) == (0, 1)
    finally:
        done.set()
        writer.join()
    assert written[0] > 0
