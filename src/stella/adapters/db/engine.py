"""Engine construction for SQLite (WAL, embedded default) and PostgreSQL (schema `release`)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from stella.adapters.db.tables import POSTGRES_SCHEMA


def make_engine(url: str, pool_size: int = 10) -> Engine:
    """An engine for `url`; PostgreSQL statements are routed to the `release` schema."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _configure_sqlite)
        # Let SQLAlchemy emit BEGIN itself: pysqlite's own implicit transactions would let
        # two writers both read before either writes, which breaks serialised updates.
        event.listen(engine, "begin", _begin_sqlite)
        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        execution_options={"schema_translate_map": {None: POSTGRES_SCHEMA}},
    )


READ_ONLY_OPTION = "stella_read_only"


def _begin_sqlite(conn: Connection) -> None:
    # Writers take the write lock up front; readers stay concurrent under WAL.
    read_only = conn.get_execution_options().get(READ_ONLY_OPTION, False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _configure_sqlite(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # transactions are begun explicitly (see above)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
