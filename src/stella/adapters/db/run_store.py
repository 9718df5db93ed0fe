"""Transactions of the workflow engine, each holding the lock of one run.

Every change to a run (claiming a step, recording a result, cancelling) happens inside
`lock_*`, which locks the run row first: on PostgreSQL with `SELECT … FOR UPDATE` (claims use
`SKIP LOCKED`, so workers never wait for each other's runs); on SQLite the write transaction
(`BEGIN IMMEDIATE`) serialises everything. Event sequence numbers come from the locked run row,
so a run's event log is dense and ordered.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, exists, func, insert, or_, select, update

from stella.adapters.db import tables as t
from stella.adapters.db.engine import READ_ONLY_OPTION
from stella.adapters.db.repository_base import execute
from stella.adapters.db.workflow_repositories import run_from_row, step_from_row
from stella.domain.errors import StorageUnavailable
from stella.domain.ids import new_id
from stella.domain.workflow import RunState, StepState
from stella.domain.workflow_runs import RunEvent, RunStep, WorkflowRun
from stella.services.workflow_ports import RunLock

_R = t.workflow_runs
_S = t.workflow_run_steps
_OPEN_STEP_STATES = (StepState.PENDING.value, StepState.READY.value, StepState.WAITING.value)


class SqlRunTransaction:
    """The locked run and the operations the engine performs on it."""

    def __init__(self, conn: Connection, run: WorkflowRun) -> None:
        self._conn = conn
        self.run = run
        self._run_changes: dict[str, Any] = {}

    def _step_where(self, step_id: str) -> Any:
        return and_(_S.c.run_id == self.run.id, _S.c.step_id == step_id)

    def step(self, step_id: str) -> RunStep:
        row = execute(self._conn, _S.select().where(self._step_where(step_id))).one()
        return step_from_row(row)

    def steps(self, step_ids: list[str]) -> dict[str, RunStep]:
        if not step_ids:
            return {}
        stmt = _S.select().where(_S.c.run_id == self.run.id, _S.c.step_id.in_(step_ids))
        return {s.step_id: s for s in map(step_from_row, execute(self._conn, stmt))}

    def first_ready(self, now: datetime) -> RunStep | None:
        stmt = (
            _S.select()
            .where(
                _S.c.run_id == self.run.id,
                _S.c.state == StepState.READY.value,
                _S.c.next_attempt_at <= now,
            )
            .order_by(_S.c.position)
            .limit(1)
        )
        row = execute(self._conn, stmt).first()
        return None if row is None else step_from_row(row)

    def update_step(self, step_id: str, **values: Any) -> None:
        if "state" in values:
            values["state"] = StepState(values["state"]).value
        execute(self._conn, update(_S).where(self._step_where(step_id)).values(**values))

    def open_step_ids(self) -> list[str]:
        stmt = select(_S.c.step_id).where(
            _S.c.run_id == self.run.id, _S.c.state.in_(_OPEN_STEP_STATES)
        )
        return sorted(r[0] for r in execute(self._conn, stmt))

    def release_dependents(self, step_ids: list[str]) -> list[str]:
        """One dependency of each of `step_ids` is done; return those now free to run."""
        if not step_ids:
            return []
        where = and_(_S.c.run_id == self.run.id, _S.c.step_id.in_(step_ids))
        execute(self._conn, update(_S).where(where).values(pending_deps=_S.c.pending_deps - 1))
        stmt = (
            select(_S.c.step_id)
            .where(where, _S.c.pending_deps == 0, _S.c.state == StepState.PENDING.value)
            .order_by(_S.c.position)
        )
        return [r[0] for r in execute(self._conn, stmt)]

    def count_in_states(self, states: tuple[StepState, ...]) -> int:
        stmt = select(func.count()).where(
            _S.c.run_id == self.run.id, _S.c.state.in_([s.value for s in states])
        )
        return int(execute(self._conn, stmt).scalar_one())

    def rollback_candidates(self, step_ids: list[str]) -> list[RunStep]:
        """Succeeded steps among `step_ids` not yet rolled back, newest completion first."""
        if not step_ids:
            return []
        stmt = (
            _S.select()
            .where(
                _S.c.run_id == self.run.id,
                _S.c.step_id.in_(step_ids),
                _S.c.state == StepState.SUCCEEDED.value,
                _S.c.error.is_(None),
            )
            .order_by(_S.c.completed_seq.desc())
        )
        return [step_from_row(r) for r in execute(self._conn, stmt)]

    def rollback_failures(self, step_ids: list[str]) -> int:
        """Succeeded steps among `step_ids` whose rollback failed (their error says so)."""
        if not step_ids:
            return 0
        stmt = select(func.count()).where(
            _S.c.run_id == self.run.id,
            _S.c.step_id.in_(step_ids),
            _S.c.state == StepState.SUCCEEDED.value,
            _S.c.error.is_not(None),
        )
        return int(execute(self._conn, stmt).scalar_one())

    def update_run(self, **values: Any) -> None:
        """Change run fields; written once, by `flush`, when the transaction ends."""
        if "state" in values:
            values["state"] = RunState(values["state"])
        self._run_changes.update(values)
        self.run = replace(self.run, **values)

    def flush(self) -> None:
        if self._run_changes:
            values = dict(self._run_changes)
            if "state" in values:
                values["state"] = values["state"].value
            execute(self._conn, update(_R).where(_R.c.id == self.run.id).values(**values))
            self._run_changes.clear()

    def event(
        self,
        type_: str,
        message: str,
        at: datetime,
        step_id: str | None = None,
        attempt: int | None = None,
        data: dict[str, Any] | None = None,
    ) -> int:
        """Append an event; returns its sequence number."""
        seq = self.run.last_seq + 1
        event = RunEvent(
            new_id(), self.run.id, seq, type_, step_id, attempt, message, data or {}, at
        )
        execute(self._conn, insert(t.workflow_run_events).values(asdict(event)))
        self.update_run(last_seq=seq)
        return seq


class SqlRunStore:
    """Opens the engine's run-locking transactions on one engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    @contextmanager
    def _transaction(self, read_only: bool = False) -> Iterator[Connection]:
        try:
            conn = self._engine.connect()
        except Exception as exc:
            msg = "the database is unavailable"
            raise StorageUnavailable(msg) from exc
        if read_only:
            conn = conn.execution_options(**{READ_ONLY_OPTION: True})
        try:
            with conn.begin():
                yield conn
        finally:
            conn.close()

    def _anything(self, stmt: Any) -> bool:
        """A read-only look first: an idle SQLite worker then never takes the write lock."""
        with self._transaction(read_only=True) as conn:
            return execute(conn, stmt.limit(1)).first() is not None

    @contextmanager
    def _locked(self, stmt: Any, skip_locked: bool) -> Iterator[SqlRunTransaction | None]:
        if skip_locked and not self._postgres and not self._anything(stmt):
            yield None
            return
        locked = stmt.limit(1).with_for_update(of=_R, skip_locked=skip_locked and self._postgres)
        with self._transaction() as conn:
            row = execute(conn, locked).first()
            tx = None if row is None else SqlRunTransaction(conn, run_from_row(row))
            yield tx
            if tx is not None:
                tx.flush()

    @contextmanager
    def create(self, run: WorkflowRun) -> Iterator[SqlRunTransaction | None]:
        """Insert a run and its steps, and hand the new run over still locked."""
        with self._transaction() as conn:
            row = asdict(run)
            steps = row.pop("steps")
            execute(conn, insert(_R).values(row))
            execute(conn, insert(_S).values(steps))
            tx = SqlRunTransaction(conn, replace(run, steps=()))
            yield tx
            tx.flush()

    def lock_run(self, run_id: uuid.UUID) -> RunLock:
        """The run with this id, locked (waiting for other holders)."""
        return self._locked(select(_R).where(_R.c.id == run_id), skip_locked=False)

    def lock_next_ready(self, now: datetime) -> RunLock:
        """The oldest running run with a step due now, skipping runs other workers hold."""
        due = exists().where(
            _S.c.run_id == _R.c.id,
            _S.c.state == StepState.READY.value,
            _S.c.next_attempt_at <= now,
        )
        stmt = (
            select(_R)
            .where(_R.c.state == RunState.RUNNING.value, _R.c.cancel_requested.is_(False), due)
            .order_by(_R.c.id)
        )
        return self._locked(stmt, skip_locked=True)

    def lock_next_rollback(self, now: datetime) -> RunLock:
        """A run waiting to be rolled back: no step running, and its rollback lease free."""
        running = exists().where(_S.c.run_id == _R.c.id, _S.c.state == StepState.RUNNING.value)
        stmt = (
            select(_R)
            .where(
                _R.c.state == RunState.ROLLING_BACK.value,
                ~running,
                or_(_R.c.lease_owner.is_(None), _R.c.lease_expires_at < now),
            )
            .order_by(_R.c.id)
        )
        return self._locked(stmt, skip_locked=True)

    def overdue(self, now: datetime) -> list[tuple[uuid.UUID, str]]:
        """Steps whose lease expired (worker gone) or whose wait deadline passed."""
        stmt = select(_S.c.run_id, _S.c.step_id).where(
            or_(
                and_(_S.c.state == StepState.RUNNING.value, _S.c.lease_expires_at < now),
                and_(_S.c.state == StepState.WAITING.value, _S.c.next_attempt_at < now),
            )
        )
        with self._transaction(read_only=True) as conn:
            return [(r._mapping["run_id"], r._mapping["step_id"]) for r in execute(conn, stmt)]

    def renew(
        self, run_id: uuid.UUID, step_id: str | None, owner: str, expires: datetime
    ) -> tuple[bool, bool]:
        """Extend a lease; returns (still ours, cancellation requested)."""
        with self._transaction() as conn:
            if step_id is None:
                where = and_(_R.c.id == run_id, _R.c.lease_owner == owner)
                result = execute(conn, update(_R).where(where).values(lease_expires_at=expires))
            else:
                where = and_(
                    _S.c.run_id == run_id,
                    _S.c.step_id == step_id,
                    _S.c.lease_owner == owner,
                    _S.c.state == StepState.RUNNING.value,
                )
                result = execute(conn, update(_S).where(where).values(lease_expires_at=expires))
            cancel = execute(conn, select(_R.c.cancel_requested).where(_R.c.id == run_id)).scalar()
            return result.rowcount == 1, bool(cancel)
