"""/evidence: sealed packets, one packet with its signature checked now, the signed export."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from fastapi.responses import Response

from stella.adapters.signing.dsse import VerificationError, verify_envelope
from stella.api.routes.evidence import bundle_response
from stella.domain.errors import ValidationFailed
from stella.domain.evidence import EvidencePacket, PacketKind
from stella.domain.pagination import PageRequest
from stella.domain.tenancy import Permission
from stella.services import audit_chain, evidence_export
from stella.services import evidence as svc
from stella.services.context import require
from stella.web.core import Web, WebContext

router = APIRouter()
PAGE_SIZE = 50
Text = Annotated[str | None, Query(max_length=128)]
# the parts of a packet's predicate shown as sections, in this order
SECTIONS = (
    ("who", "Who"),
    ("what", "What"),
    ("why", "Why"),
    ("how", "How"),
    ("when", "When"),
    ("outcome", "Outcome"),
    ("attachments", "Attachments"),
)


def _blank(value: str | None) -> str | None:
    return value.strip() or None if value else None


def _listing(
    user: WebContext, filters: dict[str, str | None], cursor: str | None
) -> dict[str, Any]:
    """The packets page's values; a filter the service rejects is shown, not raised."""
    tenant = user.principal.tenant_id
    with user.container.read_uow() as uow:
        environments = uow.environments.all(tenant)
    values: dict[str, Any] = {
        "environments": environments,
        "kinds": [k.value for k in PacketKind],
        "filters": filters,
        "packets": [],
        "next_cursor": None,
        "filter_error": None,
    }
    try:
        found = svc.list_packets(
            user.container.read_uow,
            user.ctx,
            PageRequest.from_query(cursor, PAGE_SIZE),
            filters["release"],
            filters["environment"],
            filters["from"],
            filters["to"],
            filters["kind"],
        )
    except ValidationFailed as exc:
        values["filter_error"] = exc.detail
        return values
    env_by_id = {e.id: e for e in environments}
    releases: dict[Any, Any] = {}
    with user.container.read_uow() as uow:
        for release_id in {p.release_id for p in found.items if p.release_id is not None}:
            releases[release_id] = uow.releases.get(tenant, str(release_id))
    values["packets"] = [
        {
            "packet": p,
            "environment": env_by_id.get(p.environment_id) if p.environment_id else None,
            "release": releases.get(p.release_id),
        }
        for p in found.items
    ]
    values["next_cursor"] = found.next_cursor
    query = urlencode({k: v for k, v in filters.items() if v})
    values["base"] = "/evidence" + (f"?{query}" if query else "")
    return values


@router.get("/evidence")
def evidence_page(
    user: Web,
    release: Text = None,
    environment: Text = None,
    from_: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    to: Annotated[str | None, Query(max_length=40)] = None,
    kind: Annotated[str | None, Query(max_length=40)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    require(user.ctx, Permission.READ, user.container.uow, "read evidence")
    filters = {
        "release": _blank(release),
        "environment": _blank(environment),
        "from": _blank(from_),
        "to": _blank(to),
        "kind": _blank(kind),
    }
    values = _listing(user, filters, cursor)
    return user.render("evidence.html", nav="evidence", export={}, export_error=None, **values)


@router.get("/evidence/export.tar.gz")
def export_evidence(
    user: Web,
    from_: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    to: Annotated[str | None, Query(max_length=40)] = None,
    environment: Text = None,
) -> Response:
    """The same signed bundle as GET /api/v1/evidence/export; bad input shows the page again."""
    since, until, env = _blank(from_), _blank(to), _blank(environment)
    container = user.container
    try:
        request = evidence_export.plan_export(container.uow, user.ctx, since, until, env)
    except ValidationFailed as exc:
        none: dict[str, str | None] = dict.fromkeys(
            ("release", "environment", "from", "to", "kind")
        )
        values = _listing(user, none, None)
        return user.render(
            "evidence.html",
            status=422,
            nav="evidence",
            export={"from": since or "", "to": until or "", "environment": env or ""},
            export_error=exc.detail,
            **values,
        )
    return bundle_response(container, user.ctx, request, f"{since}-{until}-{env or 'all'}")


@router.get("/evidence/public-key.pem")
def public_key(user: Web) -> Response:
    """The key the server signs with now, for `stella evidence verify --key`."""
    return Response(
        user.container.signing_key.public_key_pem,
        media_type="application/x-pem-file",
        headers={"Content-Disposition": 'attachment; filename="stella-public.pem"'},
    )


def signature_status(user: WebContext, packet: EvidencePacket) -> tuple[bool, str]:
    """Check the packet's signature now against every public key the server knows."""
    with user.container.read_uow() as uow:
        registered = uow.signing_keys.all()
    keys = audit_chain.known_public_keys(user.container.signing_key.public_keys(), registered)
    pem = keys.get(packet.keyid)
    if pem is None:
        return False, f"No public key with id {packet.keyid} is known to this server."
    try:
        verify_envelope(packet.envelope, pem.encode())
    except VerificationError as exc:
        return False, f"Signature invalid: {exc}."
    if svc.statement_digest(packet.envelope) != packet.digest:
        return False, "The signed statement does not match the packet's recorded digest."
    return True, f"Signature valid (key {packet.keyid})"


def _sections(predicate: dict[str, Any]) -> list[tuple[str, Any]]:
    shown = []
    for key, title in SECTIONS:
        if key not in predicate:
            continue
        value = predicate[key]
        if key == "why" and isinstance(value, dict) and "decision_record" in value:
            record = value["decision_record"] or {}
            value = value | {"decision_record": {"envelope_digest": record.get("envelope_digest")}}
        shown.append((title, value))
    return shown


@router.get("/evidence/{ref}")
def packet_page(user: Web, ref: str) -> Response:
    require(user.ctx, Permission.READ, user.container.uow, "read evidence")
    packet = svc.get_packet(user.container.read_uow, user.ctx, ref)
    statement = audit_chain.statement_of(packet.envelope)
    predicate = statement.get("predicate") or {}
    valid, verdict = signature_status(user, packet)
    tenant = user.principal.tenant_id
    with user.container.read_uow() as uow:
        release = uow.releases.get(tenant, str(packet.release_id)) if packet.release_id else None
        environment = (
            uow.environments.get_by_id(tenant, packet.environment_id)
            if packet.environment_id
            else None
        )
    return user.render(
        "packet.html",
        nav="evidence",
        packet=packet,
        release=release,
        environment=environment,
        sections=_sections(predicate),
        subjects=statement.get("subject") or [],
        meta=predicate.get("packet") or {},
        raw=json.dumps(statement, indent=2, sort_keys=True),
        valid=valid,
        verdict=verdict,
    )


@router.get("/evidence/{ref}/download")
def download_packet(user: Web, ref: str) -> Response:
    """The DSSE envelope exactly as sealed (Ed25519 over the in-toto statement)."""
    require(user.ctx, Permission.READ, user.container.uow, "read evidence")
    packet = svc.get_packet(user.container.read_uow, user.ctx, ref)
    return Response(
        json.dumps(packet.envelope, indent=2, sort_keys=True) + "\n",
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="packet-{packet.id}.dsse.json"'},
    )
