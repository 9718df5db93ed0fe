"""Runs of workflow templates: the run, its steps and its append-only event log."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stella.domain.workflow import RunState, StepState


@dataclass(frozen=True, slots=True)
class RunStep:
    """The state of one step inside one run."""

    run_id: uuid.UUID
    step_id: str
    position: int
    type: str
    state: StepState
    attempts: int
    failures: int
    pending_deps: int
    next_attempt_at: datetime | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    completed_seq: int | None
    outputs: dict[str, Any]
    error: str | None
    log: str = ""


@dataclass(frozen=True, slots=True)
class WorkflowRun:
    """One execution of one template version."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    workflow_id: uuid.UUID
    workflow_name: str
    workflow_version: int
    inputs: dict[str, Any]
    state: RunState
    cancel_requested: bool
    error: str | None
    created_at: datetime
    created_by_name: str
    correlation_id: str | None
    started_at: datetime | None
    finished_at: datetime | None
    last_seq: int
    steps_total: int
    steps_done: int
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    steps: tuple[RunStep, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One entry of a run's event log; `seq` is dense and increasing per run."""

    id: uuid.UUID
    run_id: uuid.UUID
    seq: int
    type: str
    step_id: str | None
    attempt: int | None
    message: str
    data: dict[str, Any]
    at: datetime
