"""MySQL/MariaDB's change stream for `data watch`: the binary log in row format, read with
python-mysql-replication (as a replica would, by file and position).

Each read opens a non-blocking dump from the end of the last transaction read in full, takes the
row events of the watched tables up to the room it is given, and stops at the end of the log;
the position kept in the store is the end of a transaction whose keys are all handled. A
transaction read in part is read again from its start and its first changes skipped.

Rules:
- Needs `log_bin` on and `binlog_format = ROW`; otherwise WatchSetupError says how to set it.
- Nothing is created on the server: `--drop-slot` only forgets the stored position.
- The user needs REPLICATION SLAVE and REPLICATION CLIENT (and SELECT on the tables).
- Column names come from the log with binlog_row_metadata = FULL (MariaDB 10.5+, MySQL 8.0.14+),
  otherwise from information_schema, once per process.
"""

from __future__ import annotations

import json
import logging
import os
import re
import zlib
from collections.abc import Mapping
from typing import Any

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import QueryEvent, XidEvent
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent
from sqlalchemy.engine import make_url

from strangler.config import hide_password
from strangler.data.engines import _with_mysql_password
from strangler.data.plan import TablePlan
from strangler.data.recheck import key_of
from strangler.data.watch import COMMITS_PER_READ, Change, Committed, Event, Truncated
from strangler.data.watch_postgres import WatchSetupError

_ROW_EVENTS = (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent)
# The server's error when a dump asks for a position its binary log no longer has.
_ER_MASTER_FATAL_READING_BINLOG = 1236
# TRUNCATE is logged as a statement even in row format: it lists no keys.
_TRUNCATE = re.compile(r"\s*TRUNCATE\s+(?:TABLE\s+)?(?:`?(\w+)`?\.)?`?(\w+)`?", re.IGNORECASE)


class BinlogChanges:
    """The binlog's changes of the watched tables, from a confirmed position on."""

    def __init__(
        self, url: str, plans: Mapping[str, TablePlan], *, stored_position: str | None
    ) -> None:
        self.shown_url = hide_password(url)
        parsed = _with_mysql_password(make_url(url).set(drivername="mysql+pymysql"))
        self.database = str(parsed.database)
        self.settings: dict[str, Any] = {
            "host": parsed.host or "127.0.0.1",
            "port": parsed.port or 3306,
            "user": parsed.username or "root",
            "password": parsed.password or "",
            "charset": "utf8mb4",
            "connect_timeout": 10,
        }
        self.stream = self.stream_of(url)
        self.plans = plans
        self._by_table: dict[tuple[str, str], str] = {}
        for name, plan in plans.items():
            schema, _, table = plan.legacy.name.rpartition(".")
            self._by_table[(schema or self.database, table)] = name
        # A replica's server id must be unique among the server's replicas: this process's.
        self.server_id = 0x5A000000 + (
            zlib.crc32(f"{self.stream}:{os.getpid()}".encode()) & 0xFFFFFF
        )
        # python-mysql-replication logs a warning per stream when the server does not log
        # column names (binlog_row_metadata): it reads them from information_schema then.
        logging.getLogger("pymysqlreplication").setLevel(logging.ERROR)
        try:
            self._check_server()
            if stored_position is not None:
                found = json.loads(stored_position)
                self._file, self._pos = str(found["file"]), int(found["pos"])
            else:
                self._file, self._pos = self._log_end()
        except pymysql.Error as exc:
            raise self._error(exc) from exc
        self._partial = 0  # changes taken of the transaction starting at (_file, _pos)
        self.notes: list[str] = []
        self.at_end = False
        self.position = _position(self._file, self._pos)

    @staticmethod
    def stream_of(url: str) -> str:
        """The store's name of the stream of the database `url` names."""
        parsed = make_url(url)
        return f"mysql:{parsed.host or '127.0.0.1'}:{parsed.port or 3306}/{parsed.database}"

    def __repr__(self) -> str:
        return f"<BinlogChanges {self.stream} at {self._file}:{self._pos}>"

    def _error(self, exc: BaseException) -> WatchSetupError:
        detail = " ".join(str(exc).split())[:300]
        password = self.settings.get("password")
        if password:
            detail = detail.replace(str(password), "***")
        return WatchSetupError(f"legacy database ({self.shown_url}): {detail}")

    def _query(self, sql: str) -> tuple[Any, ...] | None:
        with pymysql.connect(**self.settings) as conn, conn.cursor() as cursor:
            cursor.execute(sql)
            row: tuple[Any, ...] | None = cursor.fetchone()
            return row

    def _check_server(self) -> None:
        row = self._query("SELECT @@log_bin, @@binlog_format")
        log_bin, binlog_format = row if row is not None else (0, "?")
        if not int(log_bin) or str(binlog_format).upper() != "ROW":
            state = "off" if not int(log_bin) else f"on, binlog_format = {binlog_format}"
            raise WatchSetupError(
                f"legacy database ({self.shown_url}) has its binary log {state}; `data watch` "
                "reads row changes from it, which needs log_bin on and binlog_format = ROW: "
                "set `log_bin`, `binlog_format = ROW` and `server_id = 1` under [mysqld] in "
                "the server's configuration and restart it"
            )

    def _log_end(self) -> tuple[str, int]:
        for statement in ("SHOW BINARY LOG STATUS", "SHOW MASTER STATUS"):
            try:
                row = self._query(statement)
            except pymysql.err.ProgrammingError:
                continue
            if row:
                return str(row[0]), int(row[1])
        raise WatchSetupError(f"legacy database ({self.shown_url}) reports no binary log position")

    def read(self, limit: int) -> list[Event]:
        self.at_end = False
        events: list[Event] = []
        taken = in_transaction = 0
        skip = self._partial
        stream = BinLogStreamReader(
            connection_settings=dict(self.settings),
            server_id=self.server_id,
            resume_stream=True,
            log_file=self._file,
            log_pos=self._pos,
            blocking=False,
            only_events=[*_ROW_EVENTS, XidEvent, QueryEvent],
            enable_logging=False,
            # Without binlog_row_metadata = FULL the log has no column names: the reader takes
            # them from information_schema once per process (so restart the watch after an
            # ALTER TABLE of a watched table).
            use_column_name_cache=True,
        )
        try:
            for event in stream:
                if isinstance(event, QueryEvent) and event.query.strip().upper() == "BEGIN":
                    continue
                if isinstance(event, QueryEvent):
                    events.extend(self._truncated(event))
                if isinstance(event, XidEvent | QueryEvent):
                    # The end of a transaction (a commit, or a DDL statement's own).
                    self._file, self._pos = str(stream.log_file), int(stream.log_pos)
                    self._partial = skip = in_transaction = 0
                    events.append(Committed(_position(self._file, self._pos)))
                    if taken >= limit or len(events) >= limit + COMMITS_PER_READ:
                        break
                    continue
                for change in self._changes(event):
                    if skip > 0:
                        skip -= 1
                        continue
                    if taken >= limit:
                        self._partial += in_transaction
                        return events
                    events.append(change)
                    taken += 1
                    in_transaction += 1
            else:
                self.at_end = True
        except pymysql.Error as exc:
            if exc.args and exc.args[0] == _ER_MASTER_FATAL_READING_BINLOG:
                raise WatchSetupError(
                    f"legacy database ({self.shown_url}) no longer has its binary log at the "
                    f"kept position {self._file}:{self._pos} (purged?): run `strangler data "
                    "diff`, then `strangler data watch --drop-slot` to start again at the end "
                    f"({' '.join(str(exc).split())[:200]})"
                ) from exc
            raise self._error(exc) from exc
        finally:
            stream.close()
        return events

    def _changes(self, event: Any) -> list[Change]:
        if not isinstance(event, _ROW_EVENTS):
            return []
        name = self._by_table.get((str(event.schema), str(event.table)))
        if name is None:
            return []
        plan = self.plans[name]
        found: list[Change] = []
        for row in event.rows:
            images = (
                [row["before_values"], row["after_values"]]
                if isinstance(event, UpdateRowsEvent)
                else [row["values"]]
            )
            for image in images:
                key = key_of(plan, [_column(image, column) for column in plan.key_names])
                if key is not None and all(change.key != key for change in found[-2:]):
                    found.append(Change(name, key, float(event.timestamp)))
        return found

    def _truncated(self, event: Any) -> list[Truncated]:
        found = _TRUNCATE.match(event.query)
        if found is None:
            return []
        schema = found.group(1) or _text(event.schema) or self.database
        name = self._by_table.get((schema, found.group(2)))
        return [] if name is None else [Truncated(name)]

    def confirm(self, position: str) -> None:
        """Nothing to tell the server: the store keeps the position."""

    def drop(self) -> list[str]:
        return []

    def close(self) -> None:
        """Each read opens and closes its own connection."""


def _column(image: Mapping[str, Any], name: str) -> Any:
    if name in image:
        return image[name]
    for column, value in image.items():
        if column.lower() == name.lower():
            return value
    return None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


def _position(file: str, pos: int) -> str:
    return json.dumps({"file": file, "pos": pos})
