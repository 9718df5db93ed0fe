"""/runs/{id}: a workflow run drawn as its DAG, its steps and events, updated live (SSE)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from stella.domain.workflow import RunState
from stella.domain.workflow_runs import RunEvent, WorkflowRun
from stella.services import workflows
from stella.web.core import Web, WebContext, templates
from stella.web.dag import Node, node_classes, render_svg

router = APIRouter()

STREAM_MAX_SECONDS = 600.0
POLL_SECONDS = 0.5
KEEP_ALIVE_SECONDS = 15.0
EVENTS_SHOWN = 200


def fragment(template: str, block: str, **values: Any) -> str:
    """One block of a page template rendered alone (the live parts of a page)."""
    page = templates.get_template(template)
    return "".join(page.blocks[block](page.new_context(values)))


def sse(message: dict[str, Any]) -> str:
    return f"data: {json.dumps(message, separators=(',', ':'))}\n\n"


async def live_stream(
    request: Request, poll: Callable[[], tuple[dict[str, Any], bool]]
) -> AsyncIterator[str]:
    """Poll (in a worker thread) every POLL_SECONDS; send a message only when it changed.

    Ends when `poll` says the subject is finished, after STREAM_MAX_SECONDS (the browser's
    EventSource then reconnects if the page is still open) or when the client goes away.
    """
    started = last_sent = time.monotonic()
    previous: dict[str, Any] | None = None
    while time.monotonic() - started < STREAM_MAX_SECONDS:
        if await request.is_disconnected():
            return
        message, done = await run_in_threadpool(poll)
        if message != previous or done:
            previous = message
            last_sent = time.monotonic()
            yield sse(message | {"done": done})
            if done:
                return
        elif time.monotonic() - last_sent > KEEP_ALIVE_SECONDS:
            last_sent = time.monotonic()
            yield ": keep-alive\n\n"
        await asyncio.sleep(POLL_SECONDS)


def event_stream(body: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        # no-store like every other page: the stream carries the signed-in user's data
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def load_run(user: WebContext, ref: str) -> tuple[WorkflowRun, list[Node], list[RunEvent]]:
    """The run, its steps as DAG nodes (dependencies from its template version), its events."""
    tenant_id = user.principal.tenant_id
    with user.container.read_uow() as uow:
        run = workflows.get_run(uow, tenant_id, ref)
        template = uow.workflows.by_id(run.workflow_id)
        after = max(0, run.last_seq - EVENTS_SHOWN)
        events = uow.runs.events(run.id, after, EVENTS_SHOWN)
    depends: dict[str, tuple[str, ...]] = {}
    if template is not None and template.tenant_id == tenant_id:
        depends = {s.id: s.depends_on for s in template.steps}
    steps = sorted(run.steps, key=lambda s: s.position)
    nodes = [Node(s.step_id, depends.get(s.step_id, ()), str(s.state)) for s in steps]
    return run, nodes, events


def _values(run: WorkflowRun, events: list[RunEvent]) -> dict[str, Any]:
    return {
        "run": run,
        "steps": sorted(run.steps, key=lambda s: s.position),
        "events": events,
        "events_cut": bool(events) and events[0].seq > 1,
    }


@router.get("/runs/{ref}")
def run_page(user: Web, ref: str) -> Response:
    run, nodes, events = load_run(user, ref)
    title = f"Steps of {run.workflow_name} v{run.workflow_version}, run {run.id}"
    return user.render(
        "run.html",
        nav="pipeline",
        svg=render_svg(nodes, title),
        live=not RunState(run.state).is_terminal,
        **_values(run, events),
    )


@router.get("/runs/{ref}/stream")
async def run_stream(request: Request, user: Web, ref: str) -> StreamingResponse:
    """Server-sent events for the run page: node classes and the re-rendered panels."""
    await run_in_threadpool(load_run, user, ref)  # 404 before the stream starts

    def poll() -> tuple[dict[str, Any], bool]:
        run, nodes, events = load_run(user, ref)
        values = _values(run, events)
        message = {
            "classes": node_classes((n.id, n.state) for n in nodes),
            "html": {
                "run-state": fragment("run.html", "run_state", **values),
                "run-steps": templates.get_template("run_steps.html").render(values),
            }
            | {f"node-{n.id}-state": n.state.replace("_", " ") for n in nodes},
        }
        return message, RunState(run.state).is_terminal

    return event_stream(live_stream(request, poll))
