"""SQL repositories for workflow templates, runs (read side and creation) and run events."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from sqlalchemy import Row, insert, select

from stella.adapters.db import tables as t
from stella.adapters.db.repository_base import SqlRepository, execute, mapping
from stella.domain.pagination import Page, PageRequest
from stella.domain.workflow import (
    InputSpec,
    OnFailure,
    RetryPolicy,
    RunState,
    StepSpec,
    StepState,
    WorkflowTemplate,
)
from stella.domain.workflow_runs import RunEvent, RunStep, WorkflowRun


def step_to_json(step: StepSpec) -> dict[str, Any]:
    """The stored form of a step (durations in milliseconds)."""
    return {
        "id": step.id,
        "name": step.name,
        "type": step.type,
        "config": step.config,
        "depends_on": list(step.depends_on),
        "timeout_ms": None if step.timeout is None else int(step.timeout.total_seconds() * 1000),
        "retry": {
            "max_attempts": step.retry.max_attempts,
            "backoff_ms": int(step.retry.backoff.total_seconds() * 1000),
            "max_backoff_ms": int(step.retry.max_backoff.total_seconds() * 1000),
        },
        "rollback": step.rollback,
        "when": step.when,
    }


def step_from_json(data: dict[str, Any]) -> StepSpec:
    retry = data["retry"]
    timeout = data["timeout_ms"]
    return StepSpec(
        id=data["id"],
        name=data.get("name"),
        type=data["type"],
        config=data["config"],
        depends_on=tuple(data["depends_on"]),
        timeout=None if timeout is None else timedelta(milliseconds=timeout),
        retry=RetryPolicy(
            retry["max_attempts"],
            timedelta(milliseconds=retry["backoff_ms"]),
            timedelta(milliseconds=retry["max_backoff_ms"]),
        ),
        rollback=data["rollback"],
        when=data["when"],
    )


class SqlWorkflowRepository(SqlRepository[WorkflowTemplate]):
    table = t.workflows
    ref_column = None

    def _to_domain(self, row: Row[Any]) -> WorkflowTemplate:
        m = dict(mapping(row))
        m["inputs"] = tuple(InputSpec(**i) for i in m["inputs"])
        m["steps"] = tuple(step_from_json(s) for s in m["steps"])
        m["on_failure"] = OnFailure(m["on_failure"])
        return WorkflowTemplate(**m)

    def _to_row(self, entity: WorkflowTemplate) -> dict[str, Any]:
        row = asdict(entity)
        row.pop("_index")
        row["inputs"] = [asdict(i) for i in entity.inputs]
        row["steps"] = [step_to_json(s) for s in entity.steps]
        return row

    def latest(self, tenant_id: uuid.UUID, name: str) -> WorkflowTemplate | None:
        stmt = (
            self.table.select()
            .where(self.table.c.tenant_id == tenant_id, self.table.c.name == name)
            .order_by(self.table.c.version.desc())
            .limit(1)
        )
        row = execute(self._conn, stmt).first()
        return None if row is None else self._to_domain(row)

    def version(self, tenant_id: uuid.UUID, name: str, version: int) -> WorkflowTemplate | None:
        c = self.table.c
        stmt = self.table.select().where(
            c.tenant_id == tenant_id, c.name == name, c.version == version
        )
        row = execute(self._conn, stmt).first()
        return None if row is None else self._to_domain(row)

    def by_id(self, id_: uuid.UUID) -> WorkflowTemplate | None:
        row = execute(self._conn, self.table.select().where(self.table.c.id == id_)).first()
        return None if row is None else self._to_domain(row)

    def page(
        self, tenant_id: uuid.UUID, page: PageRequest, name: str | None = None
    ) -> Page[WorkflowTemplate]:
        stmt = self.table.select().where(self.table.c.tenant_id == tenant_id)
        if name is not None:
            stmt = stmt.where(self.table.c.name == name)
        return self._paged(stmt, page)


def run_from_row(row: Row[Any], steps: tuple[RunStep, ...] = ()) -> WorkflowRun:
    m = dict(mapping(row))
    m["state"] = RunState(m["state"])
    return WorkflowRun(**m, steps=steps)


def step_from_row(row: Row[Any]) -> RunStep:
    m = dict(mapping(row))
    m["state"] = StepState(m["state"])
    return RunStep(**m)


def event_from_row(row: Row[Any]) -> RunEvent:
    return RunEvent(**mapping(row))


class SqlRunRepository(SqlRepository[WorkflowRun]):
    table = t.workflow_runs
    ref_column = None

    def _to_domain(self, row: Row[Any]) -> WorkflowRun:
        return run_from_row(row)

    def _to_row(self, entity: WorkflowRun) -> dict[str, Any]:
        row = asdict(entity)
        row.pop("steps")
        return row

    def tenant_of(self, run_id: uuid.UUID) -> uuid.UUID | None:
        """The tenant a run belongs to (steps know their run id only)."""
        stmt = select(self.table.c.tenant_id).where(self.table.c.id == run_id)
        value = execute(self._conn, stmt).scalar()
        return value if isinstance(value, uuid.UUID) else None

    def create(self, run: WorkflowRun, events: list[RunEvent]) -> None:
        """Insert a run with its steps and first events."""
        self.add(run)
        steps = [asdict(s) for s in run.steps]
        execute(self._conn, insert(t.workflow_run_steps).values(steps))
        execute(self._conn, insert(t.workflow_run_events).values([asdict(e) for e in events]))

    def get_with_steps(self, tenant_id: uuid.UUID, run_id: uuid.UUID) -> WorkflowRun | None:
        stmt = self.table.select().where(
            self.table.c.tenant_id == tenant_id, self.table.c.id == run_id
        )
        row = execute(self._conn, stmt).first()
        if row is None:
            return None
        s = t.workflow_run_steps
        steps = execute(self._conn, s.select().where(s.c.run_id == run_id).order_by(s.c.position))
        return run_from_row(row, tuple(step_from_row(r) for r in steps))

    def page(
        self,
        tenant_id: uuid.UUID,
        page: PageRequest,
        workflow: str | None = None,
        state: RunState | None = None,
    ) -> Page[WorkflowRun]:
        stmt = self.table.select().where(self.table.c.tenant_id == tenant_id)
        if workflow is not None:
            stmt = stmt.where(self.table.c.workflow_name == workflow)
        if state is not None:
            stmt = stmt.where(self.table.c.state == state.value)
        return self._paged(stmt, page)

    def events(self, run_id: uuid.UUID, after_seq: int, limit: int) -> list[RunEvent]:
        e = t.workflow_run_events
        stmt = (
            select(e)
            .where(e.c.run_id == run_id, e.c.seq > after_seq)
            .order_by(e.c.seq)
            .limit(limit)
        )
        return [event_from_row(r) for r in execute(self._conn, stmt)]
