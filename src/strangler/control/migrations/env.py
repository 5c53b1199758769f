"""Alembic environment for the shadow store schema (SQLite and PostgreSQL).

Run by the store adapters on open (`strangler.control.stores.schema.upgrade`), never by hand in
production. The adapter hands its own connection over in `config.attributes["connection"]`,
already inside a transaction that keeps other processes out: BEGIN IMMEDIATE on SQLite, an
advisory transaction lock on PostgreSQL. Two processes opening the same store therefore migrate
one after the other: the second waits, then finds the schema at head and does nothing. Alembic
sees that transaction is the caller's and leaves its commit to the caller.

Revisions must run on both dialects: `op.batch_alter_table` for column changes (it recreates the
table on SQLite and emits plain ALTER TABLE on PostgreSQL), and a dialect check where one of them
needs nothing (v0005).

For development (`alembic -c ... revision`), a `sqlalchemy.url` main option works too.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine


def _run(connection: Connection) -> None:
    # DDL is transactional on PostgreSQL, and on SQLite when the driver does not commit behind
    # our back (the SQLite adapter runs pysqlite with isolation_level=None and issues BEGIN).
    context.configure(connection=connection, target_metadata=None, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    given = context.config.attributes.get("connection")
    if isinstance(given, Connection):
        _run(given)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("shadow store migrations need a connection or sqlalchemy.url")
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()


_main()
