"""`strangler data diff` against real databases: MariaDB as legacy, PostgreSQL as new (and a
SQLite file once). One database per engine for the module; each test makes its own tables.

What they check is what a user sees: the exit code, the JSON document, the store's summary.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
from typer.testing import CliRunner

from strangler.cli.data import exit_code
from strangler.cli.main import app
from strangler.config import load_config
from strangler.control.stores import SqliteShadowStore
from strangler.data.diff import Limits, Progress
from strangler.data.run import run_diff, select_tables
from tests import mariadb, postgres

ROWS = 3000


@dataclass
class Databases:
    mysql_url: str
    pg_url: str
    mysql: pymysql.Connection
    pg: psycopg.Connection[Any]

    def legacy(self, sql: str) -> None:
        with self.mysql.cursor() as cursor:
            cursor.execute(sql)

    def new(self, sql: str) -> None:
        self.pg.execute(sql)


@pytest.fixture(scope="module")
def dbs() -> Iterator[Databases]:
    mysql_admin = mariadb.require_server()
    pg_admin = postgres.require_server()
    mysql_url = mariadb.create_database(mysql_admin)
    pg_url = postgres.create_database(pg_admin)
    mysql_conn = mariadb.connect(mysql_url)
    pg_conn = psycopg.connect(pg_url, autocommit=True)
    try:
        yield Databases(mysql_url, pg_url, mysql_conn, pg_conn)
    finally:
        mysql_conn.close()
        pg_conn.close()
        mariadb.drop_database(mysql_admin, mysql_url)
        postgres.drop_database(pg_admin, pg_url)


def projects(dbs: Databases, rows: int = ROWS) -> str:
    """A Rails-style table on both sides, equal once normalized: integer enum -> text, DECIMAL
    scale 4 -> numeric scale 2, DATETIME -> timestamptz and timestamp, TINYINT(1) -> boolean,
    DOUBLE, UTF-8 text, NULLs, a renamed column, one left out and one ignored."""
    name = f"projects_{secrets.token_hex(3)}"
    dbs.legacy(
        f"""CREATE TABLE {name} (id BIGINT PRIMARY KEY, account_id INT NOT NULL,
        name VARCHAR(200) NOT NULL, status TINYINT NOT NULL, budget DECIMAL(12,4),
        archived TINYINT(1) NOT NULL, notes TEXT NULL, score DOUBLE, api_token VARCHAR(64),
        created_at DATETIME(6) NOT NULL, updated_at DATETIME(6) NOT NULL,
        lock_version INT NOT NULL DEFAULT 0, legacy_flags INT)"""
    )
    dbs.legacy(
        f"""INSERT INTO {name} SELECT seq, seq % 97, CONCAT('Projet n°', seq, ' ☃ 東京'), seq % 2,
        seq * 1.25, seq % 3 = 0, IF(seq % 5 = 0, NULL, CONCAT('note ', seq)), seq / 8,
        CONCAT('tok-', seq),
        TIMESTAMP('2020-01-01') + INTERVAL seq SECOND + INTERVAL (seq * 7919 % 1000000) MICROSECOND,
        TIMESTAMP('2021-01-01') + INTERVAL seq MINUTE, seq % 7, 42
        FROM seq_1_to_{max(rows, 1)} WHERE seq <= {rows}"""
    )
    dbs.new(
        f"""CREATE TABLE {name} (id bigint PRIMARY KEY, account_id integer NOT NULL,
        title text NOT NULL, status text NOT NULL, budget numeric(12,2), archived boolean NOT NULL,
        notes text, score double precision, api_token text, created_at timestamptz NOT NULL,
        updated_at timestamp NOT NULL, lock_version integer)"""
    )
    dbs.new(
        f"""INSERT INTO {name} SELECT s, s % 97, 'Projet n°' || s || ' ☃ 東京',
        CASE s % 2 WHEN 0 THEN 'active' ELSE 'archived' END, s * 1.25, s % 3 = 0,
        CASE WHEN s % 5 = 0 THEN NULL ELSE 'note ' || s END, s / 8.0, 'tok-' || s,
        (timestamp '2020-01-01' + s * interval '1 second'
          + (s * 7919 % 1000000) * interval '1 microsecond') AT TIME ZONE 'UTC',
        timestamp '2021-01-01' + s * interval '1 minute', 0 FROM generate_series(1, {rows}) s"""
    )
    return name


PROJECT_SETTINGS = """\
      columns: {name: title, legacy_flags: "-"}
      transform: {status: {map: {0: active, 1: archived}}}
      ignore: [lock_version]
"""


def write_config(
    tmp_path: Path,
    legacy_url: str,
    new_url: str,
    tables: str,
    *,
    extra: str = "",
) -> Path:
    path = tmp_path / "strangler.yaml"
    path.write_text(
        f"""\
backends: {{legacy: {{url: "http://127.0.0.1:3000"}}}}
routes:
  - {{name: projects.index, match: "GET /projects"}}
store: {{path: {tmp_path / "store.db"}}}
data:
  legacy: {{url: "{legacy_url}"}}
  new: {{url: "{new_url}"}}
  min_age_s: 0
{extra}  tables:
{tables}""",
        encoding="utf-8",
    )
    return path


def project_config(
    tmp_path: Path, dbs: Databases, name: str, *, settings: str = "", key: str = "id"
) -> Path:
    table = f"    - name: {name}\n      key: {key}\n{settings or PROJECT_SETTINGS}"
    return write_config(tmp_path, dbs.mysql_url, dbs.pg_url, table)


def diff(config: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    result = CliRunner().invoke(app, ["data", "diff", "--config", str(config), "--json", *args])
    document = json.loads(result.stdout) if result.stdout.strip() else {}
    return result.exit_code, document, result.stderr


def stored(config: Path) -> dict[str, Any]:
    store = SqliteShadowStore(config.parent / "store.db")
    try:
        return {name: status.last for name, status in store.data_statuses().items()}
    finally:
        store.close()


def test_equal_tables_exit_0_with_every_normalization_applied(
    dbs: Databases, tmp_path: Path
) -> None:
    name = projects(dbs)
    config = project_config(tmp_path, dbs, name)
    code, document, stderr = diff(config)
    assert (code, stderr) == (0, "")
    (table,) = document["tables"]
    assert set(table) == {
        "name", "rows_legacy", "rows_new", "missing_in_new", "missing_in_legacy", "different",
        "samples", "seconds", "complete",
    }  # fmt: skip
    assert {k: v for k, v in table.items() if k != "seconds"} == {
        "name": name,
        "rows_legacy": ROWS,
        "rows_new": ROWS,
        "missing_in_new": 0,
        "missing_in_legacy": 0,
        "different": 0,
        "samples": {"missing_in_new": [], "missing_in_legacy": [], "different": []},
        "complete": True,
    }
    run = stored(config)[name]
    assert (run.rows_legacy, run.differences, run.complete) == (ROWS, 0, True)


def test_differences_at_the_first_and_last_key_are_counted_exactly(
    dbs: Databases, tmp_path: Path
) -> None:
    name = projects(dbs)
    dbs.new(f"UPDATE {name} SET budget = budget + 0.01 WHERE id = 1")
    dbs.new(f"DELETE FROM {name} WHERE id = {ROWS}")
    dbs.new(
        f"INSERT INTO {name} SELECT id + 100000, account_id, title, status, budget, archived, "
        f"notes, score, api_token, created_at, updated_at, 0 FROM {name} WHERE id = 2"
    )
    dbs.new(f"UPDATE {name} SET created_at = created_at + interval '1 microsecond' WHERE id = 1500")
    dbs.new(f"UPDATE {name} SET status = 'archived' WHERE id = 2000")
    dbs.new(f"UPDATE {name} SET api_token = 'tok-leaked', notes = NULL WHERE id = 2501")
    dbs.legacy(f"UPDATE {name} SET lock_version = 99, legacy_flags = 7 WHERE id = 10")
    code, document, _ = diff(project_config(tmp_path, dbs, name))
    assert code == 1
    (table,) = document["tables"]
    assert (table["missing_in_new"], table["missing_in_legacy"], table["different"]) == (1, 1, 4)
    assert table["samples"]["missing_in_new"] == [ROWS]
    assert table["samples"]["missing_in_legacy"] == [100002]
    assert table["samples"]["different"] == [
        {"key": 1, "columns": {"budget": ["1.25", "1.26"]}},
        {
            "key": 1500,
            "columns": {"created_at": ["2020-01-01 00:25:00.878500", "2020-01-01 00:25:00.878501"]},
        },
        {"key": 2000, "columns": {"status": ["active", "archived"]}},
        {
            "key": 2501,
            "columns": {"notes": ["note 2501", None], "api_token": ["[FILTERED]", "[FILTERED]"]},
        },
    ]
    assert table["complete"] is True


def test_max_differences_stops_with_an_honest_partial_result(
    dbs: Databases, tmp_path: Path
) -> None:
    name = projects(dbs)
    dbs.new(f"UPDATE {name} SET account_id = account_id + 1 WHERE id % 50 = 0")
    config = project_config(tmp_path, dbs, name)
    code, document, _ = diff(config, "--max-differences", "5")
    (table,) = document["tables"]
    assert (code, table["different"], table["complete"]) == (1, 5, False)
    assert len(table["samples"]["different"]) == 5
    assert stored(config)[name].complete is False
    code, document, _ = diff(config)
    assert (document["tables"][0]["different"], document["tables"][0]["complete"]) == (60, True)


@pytest.mark.parametrize("kind", ["text", "composite"])
def test_text_and_composite_keys_split_in_byte_order(
    dbs: Databases, tmp_path: Path, kind: str
) -> None:
    name = f"keyed_{secrets.token_hex(3)}"
    # Keys whose order differs by collation: upper/lower case, accents, CJK.
    slug = "CONCAT(ELT(1 + seq % 4, 'a', 'B', 'é', '東'), '-', LPAD(seq, 5, '0'))"
    pg_slug = "(ARRAY['a','B','é','東'])[1 + s % 4] || '-' || lpad(s::text, 5, '0')"
    if kind == "text":
        dbs.legacy(f"CREATE TABLE {name} (slug VARCHAR(40) PRIMARY KEY, n INT)")
        dbs.legacy(f"INSERT INTO {name} SELECT {slug}, seq FROM seq_1_to_{ROWS}")
        dbs.new(f"CREATE TABLE {name} (slug text PRIMARY KEY, n integer)")
        dbs.new(f"INSERT INTO {name} SELECT {pg_slug}, s FROM generate_series(1, {ROWS}) s")
        key, first, last = "slug", "B-00001", "東-02999"
        where_first, where_last = f"slug = '{first}'", f"slug = '{last}'"
    else:
        dbs.legacy(f"CREATE TABLE {name} (t VARCHAR(40), n INT, v INT, PRIMARY KEY (t, n))")
        dbs.legacy(f"INSERT INTO {name} SELECT ELT(1 + seq % 3, 'x', 'Y', 'ü'), seq, seq "
                   f"FROM seq_1_to_{ROWS}")  # fmt: skip
        dbs.new(f"CREATE TABLE {name} (t text, n integer, v integer, PRIMARY KEY (t, n))")
        dbs.new(f"INSERT INTO {name} SELECT (ARRAY['x','Y','ü'])[1 + s % 3], s, s "
                f"FROM generate_series(1, {ROWS}) s")  # fmt: skip
        key, first, last = "[t, n]", ["Y", 1], ["ü", 2999]
        where_first, where_last = "t = 'Y' AND n = 1", "t = 'ü' AND n = 2999"
    config = project_config(tmp_path, dbs, name, settings="\n", key=key)
    assert diff(config)[0] == 0
    dbs.new(f"DELETE FROM {name} WHERE {where_first}")
    dbs.new(f"UPDATE {name} SET n = n + 1 WHERE {where_last}" if kind == "text" else
            f"UPDATE {name} SET v = 0 WHERE {where_last}")  # fmt: skip
    code, document, _ = diff(config)
    (table,) = document["tables"]
    assert code == 1
    assert table["samples"]["missing_in_new"] == [first]
    column = "n" if kind == "text" else "v"
    assert table["samples"]["different"] == [
        {"key": last, "columns": {column: ["2999", "3000" if kind == "text" else "0"]}}
    ]


def test_empty_tables_are_equal(dbs: Databases, tmp_path: Path) -> None:
    name = projects(dbs, rows=0)
    code, document, _ = diff(project_config(tmp_path, dbs, name))
    assert code == 0
    assert (document["tables"][0]["rows_legacy"], document["tables"][0]["rows_new"]) == (0, 0)


def test_a_table_only_on_one_side_exits_2_naming_it(dbs: Databases, tmp_path: Path) -> None:
    name = f"ghosts_{secrets.token_hex(3)}"
    dbs.legacy(f"CREATE TABLE {name} (id INT PRIMARY KEY)")
    config = project_config(tmp_path, dbs, name, settings="\n")
    code, document, _ = diff(config)
    assert code == 2
    (error,) = document["errors"]
    assert error["table"] == name
    assert "new database (postgresql://" in error["error"]
    assert f"has no table '{name}'" in error["error"]
    assert stored(config) == {}


def test_a_column_mapping_typo_exits_2_naming_the_column(dbs: Databases, tmp_path: Path) -> None:
    name = projects(dbs, rows=10)
    settings = PROJECT_SETTINGS.replace("name: title", "name: titel")
    result = CliRunner().invoke(
        app,
        ["data", "diff", "--config", str(project_config(tmp_path, dbs, name, settings=settings))],
    )
    assert result.exit_code == 2
    assert "'titel'" in result.stderr
    assert f"new table {name} does not have" in result.stderr


@pytest.mark.parametrize("side", ["legacy", "new"])
def test_a_connection_killed_mid_run_fails_the_table_and_records_nothing(
    dbs: Databases, tmp_path: Path, side: str
) -> None:
    name = projects(dbs)
    dbs.new(f"UPDATE {name} SET account_id = 0 WHERE id % 100 = 0")
    config = load_config(project_config(tmp_path, dbs, name))
    assert config.data is not None
    killed: list[int] = []

    def kill_sessions(progress: Progress) -> None:
        # After the first step: the diff's pooled connections are open, and more queries follow.
        if killed:
            return
        if side == "legacy":
            killed.extend(_kill_mariadb_sessions(dbs))
        else:
            rows = dbs.pg.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
            killed.extend(1 for _ in rows)

    recorded: list[str] = []
    outcome = run_diff(
        config.data,
        tmp_path / "strangler.yaml",
        select_tables(config.data, []),
        Limits(),
        on_progress=kill_sessions,
        record=lambda result: recorded.append(result.name),
    )
    assert killed
    assert exit_code(outcome) == 2
    assert outcome.results == [] and recorded == []
    ((table, reason),) = outcome.errors
    assert table == name
    if side == "legacy":
        assert reason.startswith("legacy database (mysql://root@127.0.0.1:3306/")
        assert "Lost connection" in reason or "gone away" in reason
    else:
        assert reason.startswith("new database (postgresql://postgres@127.0.0.1:5432/")
        assert "terminat" in reason or "closed" in reason


def _kill_mariadb_sessions(dbs: Databases) -> list[int]:
    """KILL every session on the test database but the fixture's own."""
    database = dbs.mysql_url.rsplit("/", 1)[1]
    killed = []
    with mariadb.connect() as admin, admin.cursor() as cursor:
        cursor.execute(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
            (database,),
        )
        for (session,) in cursor.fetchall():
            if session != dbs.mysql.thread_id():
                cursor.execute(f"KILL {int(session)}")
                killed.append(int(session))
    return killed


def test_a_sqlite_legacy_against_postgresql(dbs: Databases, tmp_path: Path) -> None:
    name = f"people_{secrets.token_hex(3)}"
    path = tmp_path / "legacy.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, email TEXT, admin BOOLEAN, "
            "balance NUMERIC(10,2), seen_at DATETIME)"
        )
        conn.executemany(
            f"INSERT INTO {name} VALUES (?, ?, ?, ?, ?)",
            [(n, f"ü{n}@example.com", n % 2, f"{n}.50", f"2024-05-01 10:00:{n % 60:02d}.25")
             for n in range(1, 1501)],
        )  # fmt: skip
    dbs.new(
        f"CREATE TABLE {name} (id bigint PRIMARY KEY, email text, admin boolean, "
        "balance numeric(10,3), seen_at timestamptz)"
    )
    dbs.new(
        f"INSERT INTO {name} SELECT n, 'ü' || n || '@example.com', n % 2 = 1, n + 0.5, "
        "timestamptz '2024-05-01 10:00:00+00' + (n % 60) * interval '1 second' "
        "+ interval '250 milliseconds' FROM generate_series(1, 1500) n"
    )
    config = write_config(
        tmp_path, "sqlite:///legacy.db", dbs.pg_url, f"    - name: {name}\n      key: id\n"
    )
    code, document, stderr = diff(config)
    assert (code, stderr, document["tables"][0]["rows_new"]) == (0, "", 1500)
    dbs.new(f"UPDATE {name} SET admin = NOT admin WHERE id = 1500")
    code, document, _ = diff(config)
    assert document["tables"][0]["samples"]["different"] == [
        {"key": 1500, "columns": {"admin": ["0", "1"]}}
    ]


def test_rows_younger_than_min_age_are_not_judged_yet(dbs: Databases, tmp_path: Path) -> None:
    name = projects(dbs, rows=100)
    dbs.legacy(f"UPDATE {name} SET notes = 'edited', updated_at = UTC_TIMESTAMP(6) WHERE id = 7")
    config = project_config(tmp_path, dbs, name)
    config.write_text(config.read_text().replace("min_age_s: 0", "min_age_s: 600"))
    code, document, _ = diff(config)
    assert (code, document["tables"][0]["different"]) == (0, 0)


def test_transforms_filters_and_a_legacy_time_zone(dbs: Databases, tmp_path: Path) -> None:
    name = f"orders_{secrets.token_hex(3)}"
    # Legacy: prices with 3 places, `paid` as a plain INT, local times at +02:00, soft deletes.
    dbs.legacy(
        f"CREATE TABLE {name} (id INT PRIMARY KEY, price DECIMAL(10,3), paid INT, "
        "placed_at DATETIME, deleted_at DATETIME NULL)"
    )
    dbs.legacy(
        f"INSERT INTO {name} SELECT seq, seq + 0.005, seq % 2, "
        "TIMESTAMP('2024-03-31 02:30:00') + INTERVAL seq HOUR, "
        f"IF(seq % 10 = 0, NOW(), NULL) FROM seq_1_to_{ROWS}"
    )
    # New: prices rounded to cents, a boolean, UTC instants, and archived rows of its own.
    dbs.new(
        f"CREATE TABLE {name} (id integer PRIMARY KEY, price numeric(10,2), paid boolean, "
        "placed_at timestamptz, archived boolean NOT NULL DEFAULT false)"
    )
    dbs.new(
        f"INSERT INTO {name} (id, price, paid, placed_at) SELECT s, s + 0.01, s % 2 = 1, "
        "timestamptz '2024-03-31 00:30:00+00' + s * interval '1 hour' "
        f"FROM generate_series(1, {ROWS}) s WHERE s % 10 <> 0"
    )
    dbs.new(f"INSERT INTO {name} (id, archived) VALUES ({ROWS + 1}, true)")
    table = f"""\
    - name: {name}
      key: id
      columns: {{deleted_at: "-"}}
      transform: {{price: {{decimal: 2}}, paid: {{bool: true}}}}
      where: "deleted_at IS NULL"
      new_where: "NOT archived"
"""
    config = write_config(
        tmp_path, dbs.mysql_url, dbs.pg_url, table, extra='  legacy_timezone: "+02:00"\n'
    )
    code, document, stderr = diff(config)
    assert (code, stderr, document["errors"]) == (0, "", [])
    assert document["tables"][0]["rows_legacy"] == ROWS - ROWS // 10


def test_same_scale_decimals_and_microsecond_times_compare_as_printed(
    dbs: Databases, tmp_path: Path
) -> None:
    # DECIMAL(10,2) on both sides and DATETIME(6) vs timestamp(6): the spellings that skip the
    # trimming and formatting, with values whose text is easy to get wrong.
    name = f"ledger_{secrets.token_hex(3)}"
    dbs.legacy(f"CREATE TABLE {name} (id INT PRIMARY KEY, amount DECIMAL(10,2), at DATETIME(6))")
    dbs.new(f"CREATE TABLE {name} (id integer PRIMARY KEY, amount numeric(10,2), at timestamp(6))")
    values = (
        "(1, 12.50, '2024-01-01 00:00:00'), (2, -0.50, '1999-12-31 23:59:59.999999'), "
        "(3, 0, '2024-02-29 12:00:00.5'), (4, NULL, NULL), (5, 99999999.99, '0999-01-01 00:00:01')"
    )
    dbs.legacy(f"INSERT INTO {name} VALUES {values}")
    dbs.new(f"INSERT INTO {name} VALUES {values}")
    config = write_config(tmp_path, dbs.mysql_url, dbs.pg_url, f"    - {{name: {name}, key: id}}\n")
    code, document, stderr = diff(config)
    assert (code, stderr, document["tables"][0]["rows_new"]) == (0, "", 5)
    dbs.new(f"UPDATE {name} SET amount = 12.51, at = at + interval '1 microsecond' WHERE id = 1")
    code, document, _ = diff(config)
    assert code == 1
    assert document["tables"][0]["samples"]["different"] == [
        {
            "key": 1,
            "columns": {
                "amount": ["12.50", "12.51"],
                "at": ["2024-01-01 00:00:00.000000", "2024-01-01 00:00:00.000001"],
            },
        }
    ]


def test_max_seconds_stops_and_is_not_a_pass(dbs: Databases, tmp_path: Path) -> None:
    name = projects(dbs)
    code, document, _ = diff(project_config(tmp_path, dbs, name), "--max-seconds", "0.001")
    (table,) = document["tables"]
    assert (code, table["complete"], table["different"]) == (1, False, 0)


def test_the_text_report(dbs: Databases, tmp_path: Path) -> None:
    name = projects(dbs, rows=50)
    dbs.new(f"DELETE FROM {name} WHERE id = 3")
    dbs.new(f"UPDATE {name} SET title = 'Renamed' WHERE id = 4")
    config = project_config(tmp_path, dbs, name)
    result = CliRunner().invoke(app, ["data", "diff", name, "--config", str(config)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "TABLE", "ROWS", "LEGACY", "ROWS", "NEW", "MISSING", "IN", "NEW", "MISSING", "IN",
        "LEGACY", "DIFFERENT", "SECONDS", "COMPLETE",
    ]  # fmt: skip
    assert lines[1].split()[:6] == [name, "50", "49", "1", "0", "1"]
    assert f"{name}: missing in new: 3" in lines
    assert f'{name}: different at 4: name: "Projet n°4 ☃ 東京" (legacy) != "Renamed" (new)' in lines
    unknown = CliRunner().invoke(app, ["data", "diff", "nope", "--config", str(config)])
    assert unknown.exit_code == 2
    assert "no table 'nope' under data.tables" in unknown.stderr


def test_a_refused_password_is_never_shown(dbs: Databases, tmp_path: Path) -> None:
    name = projects(dbs, rows=5)
    wrong = dbs.mysql_url.replace("://root@", "://root:s3cr3t-pw@")
    config = write_config(tmp_path, wrong, dbs.pg_url, f"    - name: {name}\n      key: id\n")
    result = CliRunner().invoke(app, ["data", "diff", "--config", str(config)])
    assert result.exit_code == 2
    assert "Access denied" in result.stderr
    assert "root:***@" in result.stderr
    assert "s3cr3t" not in result.stderr + result.stdout


def test_mapped_values_with_quotes_and_backslashes(dbs: Databases, tmp_path: Path) -> None:
    name = f"kinds_{secrets.token_hex(3)}"
    dbs.legacy(f"CREATE TABLE {name} (id INT PRIMARY KEY, kind INT)")
    dbs.legacy(f"INSERT INTO {name} VALUES (1, 0), (2, 1), (3, 2), (4, 3)")
    dbs.new(f"CREATE TABLE {name} (id integer PRIMARY KEY, kind text)")
    dbs.new(f"""INSERT INTO {name} VALUES (1, 'it''s'), (2, 'a\\b'), (3, 'ü ☃'), (4, '3')""")
    table = f"""\
    - name: {name}
      key: id
      transform: {{kind: {{map: {{0: "it's", 1: 'a\\b', 2: "ü ☃"}}}}}}
"""
    code, document, stderr = diff(write_config(tmp_path, dbs.mysql_url, dbs.pg_url, table))
    assert (code, stderr, document["errors"]) == (0, "", [])


@pytest.mark.parametrize(
    ("extra", "settings", "message"),
    [
        (
            '  legacy_timezone: "Europe/Paris"\n',
            "",
            "does not know time zone 'Europe/Paris'",
        ),
        ("", '      where: "no_such_column = 1"\n', "Unknown column 'no_such_column'"),
    ],
)
def test_what_the_legacy_database_refuses_is_named(
    dbs: Databases, tmp_path: Path, extra: str, settings: str, message: str
) -> None:
    with mariadb.connect() as conn, conn.cursor() as cursor:
        cursor.execute("SELECT CONVERT_TZ('2000-01-01', 'Europe/Paris', '+00:00')")
        if extra and cursor.fetchone()[0] is not None:
            pytest.skip("this MariaDB has its time zone tables loaded")
    name = projects(dbs, rows=10)
    table = f"    - name: {name}\n      key: id\n{PROJECT_SETTINGS}{settings}"
    config = write_config(tmp_path, dbs.mysql_url, dbs.pg_url, table, extra=extra)
    code, document, _ = diff(config)
    assert code == 2
    (error,) = document["errors"]
    assert error["error"].startswith("legacy database (mysql://")
    assert message in error["error"]
