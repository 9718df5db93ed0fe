"""Apply Alembic migrations programmatically (no alembic.ini needed in a user's checkout)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from stella.adapters.db.tables import POSTGRES_SCHEMA

_SCRIPT_LOCATION = str(Path(__file__).parent / "migrations")


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", _SCRIPT_LOCATION)
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to `revision`; creates the `release` schema on PostgreSQL first."""
    config = _config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {POSTGRES_SCHEMA}"))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect() as connection:
        opts = (
            {"version_table_schema": POSTGRES_SCHEMA} if engine.dialect.name == "postgresql" else {}
        )
        return MigrationContext.configure(connection, opts=opts).get_current_revision()


def head_revision() -> str | None:
    """The newest revision shipped with this version of Stella."""
    return ScriptDirectory.from_config(_config()).get_current_head()
