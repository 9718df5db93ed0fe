"""/audit: audit events newest first, and the hash chain checked on demand."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query
from fastapi.responses import Response

from stella.adapters.signing.dsse import verify_envelope
from stella.domain.audit import AuditEvent
from stella.domain.pagination import PageRequest
from stella.services import audit_chain, queries
from stella.services.audit_chain import ChainReport
from stella.web.core import Web, WebContext

router = APIRouter()
PAGE_SIZE = 50
DETAILS_SHOWN = 160
Filter = Annotated[str | None, Query(max_length=64)]
# where a resource has a page of its own
RESOURCE_PAGES = {
    "promotion": "/promotions/{}",
    "release": "/releases/{}",
    "workflow_run": "/runs/{}",
    "evidence": "/evidence/{}",
}
RESOURCE_LISTS = {"target": "/targets", "agent": "/agents"}
# suggestions for the filters (any value may be typed)
ACTIONS = (
    "access.denied",
    "agent.certificate_renewed",
    "agent.enrolled",
    "agent.join_token_created",
    "agent.offline",
    "agent.online",
    "agent.revoked",
    "component.created",
    "component.updated",
    "environment.created",
    "environment.deleted",
    "environment.updated",
    "evidence.corrected",
    "evidence.exported",
    "integration.created",
    "integration.updated",
    "policy.created",
    "promotion.approved",
    "promotion.cancelled",
    "promotion.gate_overridden",
    "promotion.reevaluated",
    "promotion.rejected",
    "promotion.requested",
    "promotion.rollback_requested",
    "release.created",
    "release.modification_refused",
    "release.verdict_changed",
    "target.created",
    "target.deleted",
    "target.updated",
    "tenant.created",
    "user.created",
    "waiver.created",
    "waiver.revoked",
    "workflow_run.cancelled",
    "workflow_run.created",
)
RESOURCE_TYPES = (
    "agent",
    "component",
    "digest",
    "environment",
    "evidence",
    "integration",
    "permission",
    "policy",
    "promotion",
    "release",
    "target",
    "tenant",
    "user",
    "waiver",
    "workflow_run",
)


def _row(event: AuditEvent) -> dict[str, Any]:
    details = json.dumps(event.details, sort_keys=True, default=str) if event.details else ""
    link = None
    if event.resource_id and event.resource_type in RESOURCE_PAGES:
        link = RESOURCE_PAGES[event.resource_type].format(quote(event.resource_id, safe=""))
    elif event.resource_type in RESOURCE_LISTS:
        link = RESOURCE_LISTS[event.resource_type]
    return {
        "event": event,
        "link": link,
        "details": details,
        "short": details if len(details) <= DETAILS_SHOWN else details[:DETAILS_SHOWN] + "…",
    }


def chain_status(user: WebContext) -> tuple[bool, str, ChainReport]:
    """Walk the whole chain (on demand only: it reads every entry)."""
    report = audit_chain.verify_chain(
        user.container.read_uow,
        user.ctx,
        verify_envelope,
        user.container.signing_key.public_keys(),
    )
    if report.problem is None:
        text = (
            f"Audit chain intact: {report.checked} entries ({report.audit_events} audit event(s), "
            f"{report.evidence_packets} evidence packet(s)): links, contents and signatures check "
            "out"
        )
        if report.checkpoint:
            text += f"; latest signed checkpoint covers {report.checkpoint['size']} entries"
        return True, text + ".", report
    problem = report.problem
    where = f" at entry {problem.seq}" if problem.seq is not None else ""
    what = f" ({problem.entry_type} {problem.entry_id})" if problem.entry_type else ""
    text = (
        f"Audit chain problem{where}{what}: {problem.reason}. "
        f"{report.checked} entries before it check out."
    )
    return False, text, report


@router.get("/audit")
def audit_page(
    user: Web,
    action: Filter = None,
    resource_type: Filter = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    verify: Annotated[str | None, Query(max_length=8)] = None,
) -> Response:
    action = (action or "").strip() or None
    resource_type = (resource_type or "").strip() or None
    with user.container.read_uow() as uow:
        found = queries.list_audit_events(
            uow,
            user.principal.tenant_id,
            PageRequest.from_query(cursor, PAGE_SIZE),
            resource_type,
            action,
        )
    chain = chain_status(user) if verify and verify != "0" else None
    filters = {"action": action, "resource_type": resource_type}
    query = urlencode({k: v for k, v in filters.items() if v})
    return user.render(
        "audit.html",
        nav="audit",
        rows=[_row(e) for e in found.items],
        next_cursor=found.next_cursor,
        filters=filters,
        base="/audit" + (f"?{query}" if query else ""),
        chain=chain,
        actions=ACTIONS,
        resource_types=RESOURCE_TYPES,
    )
