"""PostgreSQL's change stream for `data watch`: a logical replication slot with pgoutput, read
through SQL.

Why SQL and not the streaming replication protocol: psycopg 3 (the project's PostgreSQL driver)
has no replication connection (psycopg/psycopg#71), and psycopg2's would be a second driver for
one feature. `pg_logical_slot_peek_binary_changes` returns the same pgoutput messages over an
ordinary connection, without consuming them; `pg_replication_slot_advance` then confirms a
position only once the store kept the outcome of every change before it. The cost: each read
decodes again the changes after the slot's confirmed position (at most `max_lag_s` of them, as
keys are judged by then); the rows are streamed through a server-side cursor, so memory stays
bounded whatever the transaction's size.

Rules:
- The publication (`FOR TABLE` the watched tables) is created before the slot: pgoutput reads
  the publication as of each change, so one created later would not cover the slot's start.
- Names come from SLOT_PREFIX and the database's name, so `--drop-slot` drops exactly what
  this created.
- Needs `wal_level = logical`; otherwise WatchSetupError says how to set it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql

from strangler.config import hide_password
from strangler.data.pgoutput import (
    UNCHANGED,
    Begin,
    Commit,
    PgoutputDecoder,
    RowChange,
    Truncate,
    lsn_text,
    parse_lsn,
)
from strangler.data.plan import TablePlan
from strangler.data.recheck import key_of
from strangler.data.watch import COMMITS_PER_READ, Change, Committed, Event, Truncated
from strangler.errors import StranglerError

SLOT_PREFIX = "strangler_watch"
# Rows fetched from the server-side cursor at a time.
FETCH_ROWS = 2000


class WatchSetupError(StranglerError):
    """The legacy database can't be watched as it is configured; the message says how to fix."""


def slot_name(database: str) -> str:
    """`strangler_watch_<database>`, as a slot name may be spelled (lower case, digits and _,
    at most 63 characters)."""
    cleaned = re.sub(r"[^a-z0-9_]", "_", database.lower())
    name = f"{SLOT_PREFIX}_{cleaned}"
    if len(name) > 63 or cleaned != database:
        digest = hashlib.sha1(database.encode()).hexdigest()[:8]
        name = f"{SLOT_PREFIX}_{cleaned[:40]}_{digest}"
    return name


class PostgresChanges:
    """A slot's changes of the watched tables, from its confirmed position on."""

    def __init__(
        self,
        url: str,
        plans: Mapping[str, TablePlan],
        *,
        stored_position: str | None,
        create: bool = True,
    ) -> None:
        self.shown_url = hide_password(url)
        self.password = unquote(urlsplit(url).password or "")
        self.stream = self.stream_of(url)
        self.slot = self.publication = self.stream.partition(":")[2]
        self.conn = self._connect(url)
        self.plans = plans
        self.decoder = PgoutputDecoder()
        self._by_relation = {self._relation_of(plan): name for name, plan in plans.items()}
        self._done_lsn = 0  # final LSN of the last transaction read in full
        self._partial: tuple[int, int] | None = (
            None  # (final LSN, changes taken) of one read in part
        )
        self.position = ""
        self.at_end = False
        # What the user should know before the run starts (printed once).
        self.notes: list[str] = []
        if not create:
            return
        try:
            self._check_wal_level()
            self._check_identity()
            self._ensure_publication()
            confirmed, created = self._ensure_slot()
            if stored_position is not None:
                stored = parse_lsn(json.loads(stored_position)["lsn"])
                if created:
                    self.notes.append(
                        f"slot {self.slot} was gone (dropped outside strangler?) and is created "
                        f"anew at {lsn_text(confirmed)}: changes since {lsn_text(stored)} were "
                        "not checked; run `strangler data diff` for them"
                    )
                elif stored > confirmed:
                    self._advance(stored)
                    confirmed = stored
        except psycopg.Error as exc:
            self.close()
            raise self._error(exc) from exc
        except WatchSetupError:
            self.close()
            raise
        self.position = _position(confirmed)

    def __repr__(self) -> str:
        return f"<PostgresChanges {self.slot} at {self.position}>"

    @staticmethod
    def stream_of(url: str) -> str:
        """The store's name of the stream of the database `url` names."""
        database = urlsplit(url).path.lstrip("/")
        return f"postgresql:{slot_name(unquote(database))}"

    def _connect(self, url: str) -> psycopg.Connection[Any]:
        target = url.replace("postgresql+psycopg://", "postgresql://", 1)
        try:
            return psycopg.connect(target, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise WatchSetupError(
                f"legacy database ({self.shown_url}): {_first_line(exc)}"
            ) from exc

    def _error(self, exc: BaseException) -> WatchSetupError:
        detail = _first_line(exc)
        if self.password:
            detail = detail.replace(self.password, "***")
        return WatchSetupError(f"legacy database ({self.shown_url}): {detail}")

    @staticmethod
    def _relation_of(plan: TablePlan) -> tuple[str, str]:
        schema, _, name = plan.legacy.name.rpartition(".")
        return (schema or "public", name)

    def _check_wal_level(self) -> None:
        row = self.conn.execute("SHOW wal_level").fetchone()
        level = row[0] if row else "?"
        if level != "logical":
            raise WatchSetupError(
                f"legacy database ({self.shown_url}) has wal_level = {level}; `data watch` "
                "reads its changes through logical decoding, which needs wal_level = logical: "
                "run `ALTER SYSTEM SET wal_level = logical;` as a superuser and restart "
                "PostgreSQL (check max_replication_slots and max_wal_senders are at least 1)"
            )

    def _check_identity(self) -> None:
        """Deletes carry only the replica identity: the watched key must be in it."""
        for name, plan in sorted(self.plans.items()):
            schema, table = self._relation_of(plan)
            row = self.conn.execute(
                """SELECT c.relreplident,
                          ARRAY(SELECT a.attname::text FROM pg_index i
                                JOIN pg_attribute a ON a.attrelid = i.indrelid
                                 AND a.attnum = ANY(i.indkey)
                                WHERE i.indrelid = c.oid
                                  AND ((c.relreplident = 'd' AND i.indisprimary)
                                       OR (c.relreplident = 'i' AND i.indisreplident)))
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = %s AND c.relname = %s""",
                (schema, table),
            ).fetchone()
            if row is None:
                raise WatchSetupError(f"legacy database ({self.shown_url}) has no table {name!r}")
            identity, columns = row[0], set(row[1] or [])
            if identity == "f":
                continue
            missing = [key for key in plan.key_names if key not in columns]
            if missing:
                raise WatchSetupError(
                    f"table {name}: its replica identity ({identity!r}: "
                    f"{', '.join(sorted(columns)) or 'none'}) does not hold the key column(s) "
                    f"{', '.join(missing)}, so a delete would not say which row went; make the "
                    f"key the primary key, or run `ALTER TABLE {name} REPLICA IDENTITY FULL`"
                )

    def _tables_sql(self) -> sql.Composed:
        return sql.SQL(", ").join(
            sql.Identifier(*self._relation_of(plan)) for _, plan in sorted(self.plans.items())
        )

    def _ensure_publication(self) -> None:
        found = self.conn.execute(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
            (self.publication,),
        ).fetchall()
        exists = self.conn.execute(
            "SELECT 1 FROM pg_publication WHERE pubname = %s", (self.publication,)
        ).fetchone()
        wanted = {self._relation_of(plan) for plan in self.plans.values()}
        if exists is None:
            self.conn.execute(
                sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(
                    sql.Identifier(self.publication), self._tables_sql()
                )
            )
        elif {(row[0], row[1]) for row in found} != wanted:
            self.conn.execute(
                sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(
                    sql.Identifier(self.publication), self._tables_sql()
                )
            )

    def _ensure_slot(self) -> tuple[int, bool]:
        """The slot's confirmed position, and whether it was created now."""
        row = self.conn.execute(
            "SELECT confirmed_flush_lsn::text, plugin FROM pg_replication_slots "
            "WHERE slot_name = %s",
            (self.slot,),
        ).fetchone()
        created = row is None
        if row is None:
            row = self.conn.execute(
                "SELECT lsn::text, 'pgoutput' FROM "
                "pg_create_logical_replication_slot(%s, 'pgoutput')",
                (self.slot,),
            ).fetchone()
        assert row is not None  # a function call returns its row
        if row[1] != "pgoutput":
            raise WatchSetupError(
                f"slot {self.slot} exists with plugin {row[1]}, not pgoutput: drop it "
                "(`strangler data watch --drop-slot`) and start again"
            )
        return parse_lsn(str(row[0])), created

    def _advance(self, lsn: int) -> None:
        self.conn.execute(
            "SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (self.slot, lsn_text(lsn))
        )

    def read(self, limit: int) -> list[Event]:
        self.at_end = False
        events: list[Event] = []
        taken = 0
        current: Begin | None = None
        skip = base = in_transaction = 0
        try:
            with self.conn.transaction(), self.conn.cursor(name="strangler_watch") as cursor:
                cursor.itersize = FETCH_ROWS
                cursor.execute(
                    "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL, "
                    "'proto_version', '1', 'publication_names', %s)",
                    (self.slot, self.publication),
                )
                for (data,) in cursor:
                    message = self.decoder.decode(bytes(data))
                    if isinstance(message, Begin):
                        current, in_transaction = message, 0
                        if message.final_lsn <= self._done_lsn:
                            skip = -1  # read in full before
                        elif self._partial and self._partial[0] == message.final_lsn:
                            skip = self._partial[1]
                        else:
                            skip = 0
                        base = max(skip, 0)
                        continue
                    if current is None or skip < 0:
                        continue
                    if isinstance(message, Commit):
                        events.append(Committed(_position(message.end_lsn)))
                        self._done_lsn = current.final_lsn
                        self._partial = None
                        current = None
                        if taken >= limit or len(events) >= limit + COMMITS_PER_READ:
                            break
                        continue
                    if isinstance(message, Truncate):
                        events.extend(
                            Truncated(self._by_relation[(relation.schema, relation.name)])
                            for relation in message.relations
                            if (relation.schema, relation.name) in self._by_relation
                        )
                        continue
                    for change in self._changes(message, current):
                        if skip > 0:
                            skip -= 1
                            continue
                        if taken >= limit:
                            # The rest of this transaction is read next time.
                            self._partial = (current.final_lsn, base + in_transaction)
                            return events
                        events.append(change)
                        taken += 1
                        in_transaction += 1
                else:
                    self.at_end = True
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        return events

    def _changes(self, message: object, begin: Begin) -> list[Change]:
        if not isinstance(message, RowChange):
            return []
        name = self._by_relation.get((message.relation.schema, message.relation.name))
        if name is None:
            return []
        plan = self.plans[name]
        found: list[Change] = []
        for image in message.images:
            values = [image.get(column) for column in plan.key_names]
            if any(value is UNCHANGED for value in values):
                continue
            key = key_of(plan, values)
            if key is not None and all(c.key != key for c in found):
                found.append(Change(name, key, begin.committed_at))
        return found

    def confirm(self, position: str) -> None:
        try:
            self._advance(parse_lsn(json.loads(position)["lsn"]))
        except psycopg.Error as exc:
            raise self._error(exc) from exc

    def drop(self) -> list[str]:
        """Drop the slot and the publication this created; what was dropped."""
        dropped = []
        try:
            if self.conn.execute(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (self.slot,)
            ).fetchone():
                self.conn.execute("SELECT pg_drop_replication_slot(%s)", (self.slot,))
                dropped.append(f"replication slot {self.slot}")
            if self.conn.execute(
                "SELECT 1 FROM pg_publication WHERE pubname = %s", (self.publication,)
            ).fetchone():
                self.conn.execute(
                    sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(self.publication))
                )
                dropped.append(f"publication {self.publication}")
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        return dropped

    def close(self) -> None:
        self.conn.close()


def _position(lsn: int) -> str:
    return json.dumps({"lsn": lsn_text(lsn)})


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
