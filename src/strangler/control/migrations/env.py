"""Alembic environment for the shadow store schema (SQLite).

Run by `SqliteShadowStore` on open, never by hand in production. The store hands its own
connection over in `config.attributes["connection"]`, already inside a BEGIN IMMEDIATE
transaction, so two processes opening the same file migrate one after the other: the second
waits on the write lock, then finds the schema at head and does nothing.

For development (`alembic -c ... revision`), a `sqlalchemy.url` main option works too.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine


def _run(connection: Connection) -> None:
    # SQLite DDL is transactional when the driver does not commit behind our back (the store
    # runs pysqlite with isolation_level=None and issues BEGIN itself).
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
