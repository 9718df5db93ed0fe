"""Wires adapters into services: the one place that picks implementations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine

from stella.adapters.db.engine import make_engine
from stella.adapters.db.unit_of_work import SqlAlchemyUnitOfWork
from stella.adapters.registry.connectors import connector_factory
from stella.adapters.secrets import resolve_secret
from stella.config import Settings
from stella.services.ports import (
    Clock,
    RegistryConnectorFactory,
    SecretResolver,
    UnitOfWork,
    UnitOfWorkFactory,
)


def utc_now() -> datetime:
    """The production clock."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Container:
    """Everything an entry point needs to call services."""

    settings: Settings
    engine: Engine
    uow: UnitOfWorkFactory
    read_uow: UnitOfWorkFactory
    connectors: RegistryConnectorFactory
    clock: Clock
    resolve_secret: SecretResolver


def build_container(settings: Settings, engine: Engine | None = None) -> Container:
    """Build the production wiring for `settings` (an engine may be shared, e.g. in tests)."""
    db = engine or make_engine(settings.resolved_database_url, settings.db_pool_size)

    def uow() -> UnitOfWork:
        return SqlAlchemyUnitOfWork(db)

    def read_uow() -> UnitOfWork:
        return SqlAlchemyUnitOfWork(db, read_only=True)

    return Container(
        settings=settings,
        engine=db,
        uow=uow,
        read_uow=read_uow,
        connectors=connector_factory(settings.registry_timeout_seconds),
        clock=utc_now,
        resolve_secret=resolve_secret,
    )
