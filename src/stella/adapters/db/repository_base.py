"""Shared mechanics of the SQL repositories: lookups by id or name, keyset pages, errors."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    CursorResult,
    Executable,
    Row,
    RowMapping,
    Select,
    Table,
    insert,
    update,
)
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError

from stella.domain.errors import Conflict, StorageUnavailable, ValidationFailed
from stella.domain.pagination import Page, PageRequest, encode_cursor

E = TypeVar("E")
T = TypeVar("T")


def parse_uuid(ref: str) -> uuid.UUID | None:
    """`ref` as a UUID, or None when it is a slug or name."""
    try:
        return uuid.UUID(ref)
    except ValueError:
        return None


def execute(conn: Connection, statement: Executable) -> CursorResult[Any]:
    """Run a statement, translating driver errors into Stella's error tree."""
    try:
        return conn.execute(statement)
    except IntegrityError as exc:
        msg = "this conflicts with an existing record (duplicate name, slug or order)"
        raise Conflict(msg) from exc
    except DataError as exc:
        # e.g. a number beyond PostgreSQL's integer range that no validator bounded
        raise ValidationFailed.single(
            "request", "a value is out of the range Stella stores"
        ) from exc
    except OperationalError as exc:
        if _is_connection_error(exc):
            msg = "the database is unavailable; retry shortly"
            raise StorageUnavailable(msg) from exc
        raise


def _is_connection_error(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return exc.connection_invalidated or any(
        word in text for word in ("connection", "could not connect", "server closed", "terminating")
    )


class SqlRepository(ABC, Generic[E]):
    """Base for one table holding one tenant-owned entity type."""

    table: Table
    ref_column: str | None = "name"  # matched when a reference is not a UUID
    order_column: str = "id"
    descending: bool = True

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    @abstractmethod
    def _to_domain(self, row: Row[Any]) -> E:
        """Map a row of `table` to the domain entity."""

    @abstractmethod
    def _to_row(self, entity: E) -> dict[str, Any]:
        """Map the entity to the column values of `table`."""

    def add(self, entity: E) -> None:
        execute(self._conn, insert(self.table).values(self._to_row(entity)))

    def update(self, entity: E) -> None:
        row = self._to_row(entity)
        execute(self._conn, update(self.table).where(self.table.c.id == row["id"]).values(row))

    def _ref_condition(self, ref: str) -> ColumnElement[bool] | None:
        as_uuid = parse_uuid(ref)
        if as_uuid is not None:
            return self.table.c.id == as_uuid
        if self.ref_column is None:
            return None
        return self.table.c[self.ref_column] == ref

    def get(self, tenant_id: uuid.UUID, ref: str) -> E | None:
        condition = self._ref_condition(ref)
        if condition is None:
            return None
        stmt = self.table.select().where(self.table.c.tenant_id == tenant_id, condition)
        row = execute(self._conn, stmt).first()
        return None if row is None else self._to_domain(row)

    def _fetch_page(
        self, stmt: Select[Any], page: PageRequest
    ) -> tuple[list[Row[Any]], str | None]:
        column = self.table.c[self.order_column]
        if page.after is not None:
            after: Any = page.after
            if self.order_column == "id":
                after = parse_uuid(str(page.after)) or uuid.UUID(int=0)
            stmt = stmt.where(column < after if self.descending else column > after)
        stmt = stmt.order_by(column.desc() if self.descending else column.asc())
        rows = list(execute(self._conn, stmt.limit(page.limit + 1)).all())
        more = len(rows) > page.limit
        rows = rows[: page.limit]
        next_cursor = None
        if more:
            last = rows[-1]._mapping[column.name]
            next_cursor = encode_cursor(str(last) if isinstance(last, uuid.UUID) else last)
        return rows, next_cursor

    def _paged(self, stmt: Select[Any], page: PageRequest) -> Page[E]:
        rows, next_cursor = self._fetch_page(stmt, page)
        return Page([self._to_domain(row) for row in rows], next_cursor)


IN_LIST_CHUNK = 1000


def chunked(values: Sequence[T], size: int = IN_LIST_CHUNK) -> Iterator[Sequence[T]]:
    """Slices for `IN (...)` lists: one bound parameter per value, and both databases cap how
    many one statement may carry (SQLite 32,766, PostgreSQL 65,535), which a month's export or
    a whole chain's verification can exceed."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def mapping(row: Row[Any]) -> RowMapping:
    """Column-name access to a row."""
    return row._mapping
