"""/api/v1/workflows and /api/v1/workflow-runs (with a server-sent-events stream)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi import Path as FastPath
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from stella.adapters.db.workflow_repositories import step_to_json
from stella.api.deps import ContainerDep, Ctx, Page
from stella.api.schemas import ListOf
from stella.domain.errors import FieldError, NotFound, ValidationFailed
from stella.domain.pagination import encode_cursor
from stella.domain.workflow import RunState, WorkflowTemplate
from stella.domain.workflow_runs import RunEvent, RunStep, WorkflowRun
from stella.services import workflows as svc
from stella.services.specs import RunSpec, WorkflowSpec

router = APIRouter(tags=["workflows"])
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")
STREAM_MAX_SECONDS = 3600


class WorkflowOut(BaseModel):
    id: str
    name: str
    version: int
    description: str
    on_failure: str
    inputs: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    digest: str
    created_at: datetime
    created_by_name: str

    @classmethod
    def of(cls, t: WorkflowTemplate) -> WorkflowOut:
        return cls(
            id=str(t.id),
            name=t.name,
            version=t.version,
            description=t.description,
            on_failure=t.on_failure,
            digest=t.digest,
            created_at=t.created_at,
            created_by_name=t.created_by_name,
            inputs=[
                {
                    "name": i.name,
                    "type": i.type,
                    "required": i.required,
                    "default": i.default,
                    "description": i.description,
                }
                for i in t.inputs
            ],
            steps=[step_to_json(s) for s in t.steps],
        )


class RunStepOut(BaseModel):
    id: str
    type: str
    state: str
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    outputs: dict[str, Any]
    error: str | None

    @classmethod
    def of(cls, s: RunStep) -> RunStepOut:
        return cls(
            id=s.step_id,
            type=s.type,
            state=s.state,
            attempts=s.attempts,
            started_at=s.started_at,
            finished_at=s.finished_at,
            outputs=s.outputs,
            error=s.error,
        )


class RunStepDetailOut(RunStepOut):
    log: str
    next_attempt_at: datetime | None
    lease_owner: str | None


class RunSummaryOut(BaseModel):
    """A run without its steps (list view)."""

    id: str
    workflow: str
    version: int
    state: str
    inputs: dict[str, Any]
    error: str | None
    cancel_requested: bool
    created_at: datetime
    created_by_name: str
    started_at: datetime | None
    finished_at: datetime | None
    steps_total: int
    steps_done: int

    @classmethod
    def summary(cls, r: WorkflowRun) -> RunSummaryOut:
        return RunSummaryOut(**_run_fields(r))


class RunOut(RunSummaryOut):
    steps: list[RunStepOut]

    @classmethod
    def of(cls, r: WorkflowRun) -> RunOut:
        return cls(**_run_fields(r), steps=[RunStepOut.of(s) for s in r.steps])


def _run_fields(r: WorkflowRun) -> dict[str, Any]:
    return {
        "id": str(r.id),
        "workflow": r.workflow_name,
        "version": r.workflow_version,
        "state": r.state,
        "inputs": r.inputs,
        "error": r.error,
        "cancel_requested": r.cancel_requested,
        "created_at": r.created_at,
        "created_by_name": r.created_by_name,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "steps_total": r.steps_total,
        "steps_done": r.steps_done,
    }


class RunEventOut(BaseModel):
    seq: int
    type: str
    step_id: str | None
    attempt: int | None
    message: str
    data: dict[str, Any]
    at: datetime

    @classmethod
    def of(cls, e: RunEvent) -> RunEventOut:
        return cls(
            seq=e.seq,
            type=e.type,
            step_id=e.step_id,
            attempt=e.attempt,
            message=e.message,
            data=e.data,
            at=e.at,
        )


class Decision(BaseModel):
    model_config = {"extra": "forbid"}
    comment: str = Field(default="", max_length=2000)
    reason: str = Field(default="", max_length=2000)


def _parse_workflow(raw: bytes, content_type: str) -> WorkflowSpec:
    try:
        if content_type.split(";")[0].strip() in YAML_TYPES:
            data = yaml.safe_load(raw)
        else:
            data = json.loads(raw or b"null")
    except (ValueError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0]
        raise ValidationFailed.single("body", f"not valid YAML/JSON: {first}") from None
    try:
        return WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        errors = [
            FieldError(
                ".".join(str(p) for p in e["loc"]) or "body",
                "unknown field" if e["type"] == "extra_forbidden" else e["msg"],
            )
            for e in exc.errors()
        ]
        raise ValidationFailed.of(errors) from None


@router.post(
    "/workflows",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/WorkflowSpec"}},
                "application/yaml": {"schema": {"type": "string"}},
            },
        }
    },
    responses={200: {"description": "the latest version already had this content"}},
)
async def save_workflow(
    request: Request, response: Response, container: ContainerDep, ctx: Ctx
) -> WorkflowOut:
    """Store a template (JSON, or YAML with `Content-Type: application/yaml`) as a new version."""
    spec = _parse_workflow(await request.body(), request.headers.get("content-type", ""))
    saved = await run_in_threadpool(svc.save_template, container.uow, ctx, spec, container.steps)
    if not saved.created:
        response.status_code = 200
    return WorkflowOut.of(saved.template)


@router.get("/workflows")
def list_workflows(
    container: ContainerDep,
    ctx: Ctx,
    page: Page,
    name: Annotated[str | None, Query(max_length=128)] = None,
) -> ListOf[WorkflowOut]:
    with container.read_uow() as uow:
        found = svc.list_templates(uow, ctx.principal.tenant_id, page, name)
    return ListOf(items=[WorkflowOut.of(t) for t in found.items], next_cursor=found.next_cursor)


@router.get("/workflows/{name}")
def get_workflow(container: ContainerDep, ctx: Ctx, name: str) -> WorkflowOut:
    """The latest version."""
    with container.read_uow() as uow:
        return WorkflowOut.of(svc.get_template(uow, ctx.principal.tenant_id, name))


@router.get("/workflows/{name}/versions/{version}")
def get_workflow_version(
    container: ContainerDep,
    ctx: Ctx,
    name: str,
    version: Annotated[int, FastPath(ge=1, le=1_000_000)],
) -> WorkflowOut:
    with container.read_uow() as uow:
        return WorkflowOut.of(svc.get_template(uow, ctx.principal.tenant_id, name, version))


@router.post("/workflow-runs", status_code=201)
def start_run(container: ContainerDep, ctx: Ctx, spec: RunSpec) -> RunOut:
    run = svc.start_run(container.uow, ctx, spec, container.run_store, container.advancer)
    with container.read_uow() as uow:
        return RunOut.of(svc.get_run(uow, ctx.principal.tenant_id, str(run.id)))


@router.get("/workflow-runs")
def list_runs(
    container: ContainerDep,
    ctx: Ctx,
    page: Page,
    workflow: Annotated[str | None, Query(max_length=128)] = None,
    state: RunState | None = None,
) -> ListOf[RunSummaryOut]:
    with container.read_uow() as uow:
        found = svc.list_runs(uow, ctx.principal.tenant_id, page, workflow, state)
    return ListOf(
        items=[RunSummaryOut.summary(r) for r in found.items], next_cursor=found.next_cursor
    )


@router.get("/workflow-runs/{run_id}")
def get_run(container: ContainerDep, ctx: Ctx, run_id: str) -> RunOut:
    with container.read_uow() as uow:
        return RunOut.of(svc.get_run(uow, ctx.principal.tenant_id, run_id))


@router.get("/workflow-runs/{run_id}/steps/{step_id}")
def get_run_step(container: ContainerDep, ctx: Ctx, run_id: str, step_id: str) -> RunStepDetailOut:
    """One step with its (bounded) log."""
    with container.read_uow() as uow:
        run = svc.get_run(uow, ctx.principal.tenant_id, run_id)
    for step in run.steps:
        if step.step_id == step_id:
            return RunStepDetailOut(
                **RunStepOut.of(step).model_dump(),
                log=step.log,
                next_attempt_at=step.next_attempt_at,
                lease_owner=step.lease_owner,
            )
    msg = f"step '{step_id}' not found in run {run_id}"
    raise NotFound(msg)


@router.get("/workflow-runs/{run_id}/events")
def list_run_events(
    container: ContainerDep, ctx: Ctx, run_id: str, page: Page
) -> ListOf[RunEventOut]:
    """The run's event log, oldest first; `next_cursor` resumes after the last event read."""
    after = page.after if isinstance(page.after, int) else 0
    with container.read_uow() as uow:
        events = svc.run_events(uow, ctx.principal.tenant_id, run_id, after, page.limit + 1)
    more = len(events) > page.limit
    events = events[: page.limit]
    cursor = encode_cursor(events[-1].seq) if events else (encode_cursor(after) if after else None)
    return ListOf(
        items=[RunEventOut.of(e) for e in events], next_cursor=cursor if (more or events) else None
    )


@router.get("/workflow-runs/{run_id}/events/stream", response_class=StreamingResponse)
async def stream_run_events(
    container: ContainerDep,
    ctx: Ctx,
    run_id: str,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Server-sent events: one `event: <type>` per log entry; ends when the run has ended."""
    with container.read_uow() as uow:
        svc.get_run(uow, ctx.principal.tenant_id, run_id)  # 404 before the stream starts
    after = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0

    async def stream() -> AsyncIterator[str]:
        nonlocal after
        started = last_beat = time.monotonic()
        while time.monotonic() - started < STREAM_MAX_SECONDS:
            events, state = await run_in_threadpool(_poll, container, ctx, run_id, after)
            for event in events:
                after = event.seq
                body = RunEventOut.of(event).model_dump_json()
                yield f"id: {event.seq}\nevent: {event.type}\ndata: {body}\n\n"
            if not events and RunState(state).is_terminal:
                return
            if time.monotonic() - last_beat > 15:
                last_beat = time.monotonic()
                yield ": keep-alive\n\n"
            await asyncio.sleep(0.25)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


def _poll(container: Any, ctx: Any, run_id: str, after: int) -> tuple[list[RunEvent], str]:
    with container.read_uow() as uow:
        run = svc.get_run(uow, ctx.principal.tenant_id, run_id)
        return uow.runs.events(run.id, after, 500), run.state


@router.post("/workflow-runs/{run_id}/cancel")
def cancel_run(container: ContainerDep, ctx: Ctx, run_id: str) -> RunOut:
    svc.cancel_run(container.uow, ctx, run_id, container.run_store, container.advancer)
    with container.read_uow() as uow:
        return RunOut.of(svc.get_run(uow, ctx.principal.tenant_id, run_id))


@router.post("/workflow-runs/{run_id}/steps/{step_id}/approve")
def approve_step(
    container: ContainerDep, ctx: Ctx, run_id: str, step_id: str, decision: Decision | None = None
) -> RunOut:
    comment = decision.comment if decision else ""
    svc.decide_step(
        container.uow, ctx, run_id, step_id, True, comment, container.run_store, container.advancer
    )
    with container.read_uow() as uow:
        return RunOut.of(svc.get_run(uow, ctx.principal.tenant_id, run_id))


@router.post("/workflow-runs/{run_id}/steps/{step_id}/reject")
def reject_step(
    container: ContainerDep, ctx: Ctx, run_id: str, step_id: str, decision: Decision | None = None
) -> RunOut:
    reason = (decision.reason or decision.comment) if decision else ""
    svc.decide_step(
        container.uow, ctx, run_id, step_id, False, reason, container.run_store, container.advancer
    )
    with container.read_uow() as uow:
        return RunOut.of(svc.get_run(uow, ctx.principal.tenant_id, run_id))
