"""The data diff benchmark's tables: 1,000,000 Rails-like rows in MariaDB (legacy) and
PostgreSQL (new), loaded once and kept.

Legacy is `projects` in MariaDB's `strangler_bench`; new is three tables in PostgreSQL's
`strangler_bench`, one per case: `projects_same` (identical once normalized), `projects_few`
(FEW_CHANGED rows differ: updated, deleted and added) and `projects_many` (every tenth row's
budget differs). The rows are generated once in Python and loaded into both engines from the
same tab-separated file (LOAD DATA LOCAL INFILE, COPY), so "identical" is true by construction.

A marker table (`bench_marker`) on each side records the layout version and the row count: a
rerun with both markers in place loads nothing. Change LAYOUT when the tables change.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pymysql
from psycopg import sql

LAYOUT = "projects-v1"
DATABASE = "strangler_bench"
MYSQL_ADMIN = os.environ.get("STRANGLER_BENCH_MARIADB", "mysql://root@127.0.0.1:3306")
POSTGRES_ADMIN = os.environ.get(
    "STRANGLER_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
LEGACY_TABLE = "projects"
NEW_TABLES = {"same": "projects_same", "few": "projects_few", "many": "projects_many"}
# Case (b): this many rows differ: FEW_UPDATED changed, FEW_DELETED gone from new,
# FEW_ADDED only in new.
FEW_UPDATED, FEW_DELETED, FEW_ADDED = 80, 10, 10
FEW_CHANGED = FEW_UPDATED + FEW_DELETED + FEW_ADDED
# Case (c): every row whose id % MANY_MODULUS == MANY_REMAINDER has another budget (10 %).
MANY_MODULUS, MANY_REMAINDER = 10, 3
# The columns both sides share, Rails' names; `status` is a Rails integer enum on both sides.
COLUMNS = (
    "id", "account_id", "name", "notes", "status", "budget", "archived", "created_at",
    "updated_at",
)  # fmt: skip
_WORDS = ("alpha", "beta", "gamma", "delta", "orion", "atlas", "kepler", "vega", "lyra")
_START = datetime(2019, 3, 1, 8, 0, 0)


class LabError(Exception):
    """A database of the benchmark can't be reached or loaded."""


@dataclass(frozen=True, slots=True)
class Lab:
    """Where the benchmark's tables are; the URLs carry no password."""

    rows: int
    mysql_url: str
    postgres_url: str

    def expected_few(self) -> dict[str, set[int]]:
        """Case (b)'s differences by kind, as `few_changes` made them."""
        updated, deleted, added = few_changes(self.rows)
        return {"different": updated, "missing_in_new": deleted, "missing_in_legacy": added}

    def expected_many(self) -> set[int]:
        return {i for i in range(1, self.rows + 1) if i % MANY_MODULUS == MANY_REMAINDER}


def few_changes(rows: int) -> tuple[set[int], set[int], set[int]]:
    """Case (b)'s keys: (updated, deleted, added), spread over the whole key range."""
    rng = random.Random(20)
    picked = rng.sample(range(1, rows + 1), FEW_UPDATED + FEW_DELETED)
    added = {rows + 1 + i * 7 for i in range(FEW_ADDED)}
    return set(picked[:FEW_UPDATED]), set(picked[FEW_UPDATED:]), added


def write_rows(path: Path, rows: int) -> None:
    """The rows as tab-separated text both LOAD DATA and COPY read: \\N is NULL, and no value
    holds a tab, newline or backslash."""
    rng = random.Random(7)
    with path.open("w", encoding="utf-8", newline="\n") as out:
        for i in range(1, rows + 1):
            word = _WORDS[i % len(_WORDS)]
            notes = "\\N" if i % 5 == 0 else f"note {rng.getrandbits(40):x} für {word} ☃"
            created = _START + timedelta(seconds=i * 17, microseconds=(i * 7919) % 1_000_000)
            updated = created + timedelta(days=i % 400, microseconds=i % 1000)
            out.write(  # An en dash and an umlaut: text compares as UTF-8 on both sides.
                f"{i}\t{i % 997}\tProject {i} {word} – Zürich\t{notes}\t{i % 3}\t"  # noqa: RUF001
                f"{(i * 37) % 10_000_000 / 100:.2f}\t{int(i % 4 == 0)}\t"
                f"{created:%Y-%m-%d %H:%M:%S.%f}\t{updated:%Y-%m-%d %H:%M:%S.%f}\n"
            )


def _mysql(url: str, database: str | None = None) -> pymysql.Connection:
    parts = urlsplit(url)
    return pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        database=database,
        charset="utf8mb4",
        autocommit=True,
        local_infile=True,
        connect_timeout=5,
    )


def _postgres(url: str, database: str | None = None) -> psycopg.Connection[Any]:
    if database is not None:
        info = psycopg.conninfo.conninfo_to_dict(url)
        info["dbname"] = database
        url = psycopg.conninfo.make_conninfo(**info)
    return psycopg.connect(url, autocommit=True, connect_timeout=5)


def _without_password(url: str, database: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return f"{parts.scheme}://{user + '@' if user else ''}{netloc[2]}/{database}"


def _mysql_marker(rows: int) -> bool:
    with _mysql(MYSQL_ADMIN) as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{DATABASE}` CHARACTER SET utf8mb4")
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'bench_marker'",
            (DATABASE,),
        )
        if cursor.fetchone()[0] == 0:
            return False
        cursor.execute(f"SELECT layout, row_count FROM `{DATABASE}`.bench_marker")
        return cursor.fetchone() == (LAYOUT, rows)


def _postgres_marker(rows: int) -> bool:
    with _postgres(POSTGRES_ADMIN) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
        if found is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    with _postgres(POSTGRES_ADMIN, DATABASE) as conn:
        if conn.execute("SELECT to_regclass('bench_marker')").fetchone() == (None,):
            return False
        return conn.execute("SELECT layout, row_count FROM bench_marker").fetchone() == (
            LAYOUT,
            rows,
        )


def _load_mysql(data: Path, rows: int) -> None:
    with _mysql(MYSQL_ADMIN, DATABASE) as conn, conn.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_marker, projects")
        cursor.execute(
            """CREATE TABLE projects (id BIGINT NOT NULL PRIMARY KEY, account_id INT NOT NULL,
            name VARCHAR(200) NOT NULL, notes TEXT NULL, status TINYINT NOT NULL,
            budget DECIMAL(12,2) NOT NULL, archived TINYINT(1) NOT NULL,
            created_at DATETIME(6) NOT NULL, updated_at DATETIME(6) NOT NULL)
            ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""
        )
        cursor.execute(
            f"LOAD DATA LOCAL INFILE %s INTO TABLE projects CHARACTER SET utf8mb4 "
            f"FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' "
            f"({', '.join(COLUMNS)})",
            (str(data),),
        )
        cursor.execute("ANALYZE TABLE projects")
        cursor.fetchall()
        cursor.execute("CREATE TABLE bench_marker (layout VARCHAR(40), row_count BIGINT)")
        cursor.execute("INSERT INTO bench_marker VALUES (%s, %s)", (LAYOUT, rows))


def _load_postgres(data: Path, rows: int) -> None:
    same, few, many = NEW_TABLES["same"], NEW_TABLES["few"], NEW_TABLES["many"]
    with _postgres(POSTGRES_ADMIN, DATABASE) as conn:
        conn.execute(f"DROP TABLE IF EXISTS bench_marker, {same}, {few}, {many}")
        conn.execute(
            f"""CREATE TABLE {same} (id bigint NOT NULL PRIMARY KEY, account_id integer NOT NULL,
            name varchar(200) NOT NULL, notes text, status smallint NOT NULL,
            budget numeric(12,2) NOT NULL, archived boolean NOT NULL,
            created_at timestamp(6) NOT NULL, updated_at timestamp(6) NOT NULL)"""
        )
        with conn.cursor() as cursor:
            copy_sql = f"COPY {same} ({', '.join(COLUMNS)}) FROM STDIN"
            with cursor.copy(copy_sql) as copy, data.open("rb") as source:
                while chunk := source.read(1 << 20):
                    copy.write(chunk)
        for table in (few, many):
            conn.execute(f"CREATE TABLE {table} (LIKE {same} INCLUDING ALL)")
            conn.execute(f"INSERT INTO {table} SELECT * FROM {same}")
        updated, deleted, added = few_changes(rows)
        for index, key in enumerate(sorted(updated)):
            # Each kind of column changes somewhere: text, NULL, enum, decimal, boolean, time.
            change = (
                "name = name || ' (renamed)'",
                "notes = CASE WHEN notes IS NULL THEN 'now set' ELSE NULL END",
                "status = (status + 1) %% 3",
                "budget = budget + 0.01",
                "archived = NOT archived",
                "created_at = created_at + interval '1 microsecond'",
            )[index % 6]
            conn.execute(f"UPDATE {few} SET {change} WHERE id = %s", (key,))
        conn.execute(f"DELETE FROM {few} WHERE id = ANY(%s)", (sorted(deleted),))
        for key in sorted(added):
            conn.execute(
                f"INSERT INTO {few} SELECT %s, account_id, name, notes, status, budget, archived, "
                f"created_at, updated_at FROM {same} WHERE id = 1",
                (key,),
            )
        conn.execute(
            f"UPDATE {many} SET budget = budget + 1 WHERE id % {MANY_MODULUS} = {MANY_REMAINDER}"
        )
        for table in (same, few, many):
            # Vacuumed: a scan then reads no dead tuples and sets no hint bits mid-benchmark.
            conn.execute(f"VACUUM (ANALYZE, FREEZE) {table}")
        conn.execute("CREATE TABLE bench_marker (layout text, row_count bigint)")
        conn.execute("INSERT INTO bench_marker VALUES (%s, %s)", (LAYOUT, rows))


def prepare(rows: int, log: Any = print) -> Lab:
    """The benchmark's tables, loaded unless both markers say they already are."""
    try:
        loads = [
            load
            for load, is_ready in ((_load_mysql, _mysql_marker), (_load_postgres, _postgres_marker))
            if not is_ready(rows)
        ]
        if loads:
            started = time.monotonic()
            log(f"loading {rows:,} rows (once: a rerun finds them) ...")
            with tempfile.TemporaryDirectory(prefix="strangler-bench-data-") as folder:
                data = Path(folder) / "projects.tsv"
                write_rows(data, rows)
                for load in loads:
                    load(data, rows)
            log(f"loaded in {time.monotonic() - started:.0f} s")
    except (pymysql.Error, psycopg.Error, OSError) as exc:
        raise LabError(" ".join(str(exc).split())) from exc
    return Lab(
        rows,
        _without_password(MYSQL_ADMIN, DATABASE),
        _without_password(POSTGRES_ADMIN, DATABASE),
    )
