"""Sealing evidence packets: one per promotion decision, one per deployment job.

A packet answers who, what, why, how and when for one event, as an in-toto Statement in a
DSSE envelope signed with the server's key, stored content-addressed and append-only. The
packet ids are deterministic (`packet_id`), so a target's version sticker can name the packet
its deployment will be sealed into.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import stella
from stella.domain.canonical import digest
from stella.domain.deployments import DeploymentJob
from stella.domain.errors import Conflict, NotFound, StorageUnavailable, ValidationFailed
from stella.domain.evidence import EvidencePacket, PacketKind, packet_content_digest, packet_id
from stella.domain.pagination import Page, PageRequest
from stella.domain.promotions import Promotion
from stella.domain.tenancy import Permission
from stella.services import deployments, gates
from stella.services.context import CallContext, record, require
from stella.services.metrics import Metrics
from stella.services.ports import Clock, DecisionSigner, UnitOfWork, UnitOfWorkFactory

log = logging.getLogger(__name__)
TIME_SOURCE = "system clock (UTC)"


def _subjects(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"name": c["repository"], "digest": {"sha256": c["digest"].removeprefix("sha256:")}}
        for c in components
    ]


def _attachments(uow: UnitOfWork, tenant_id: uuid.UUID, digests: list[str]) -> list[Any]:
    return [
        {
            "subject_digest": a["subject_digest"],
            "kind": a["kind"],
            "format": a["format"],
            "media_type": a["media_type"],
            "digest": a["digest"],
            "size": a["size"],
            "source": a["source"],
        }
        for a in uow.attachments.for_digests(tenant_id, digests)
    ]


def _seal(
    uow: UnitOfWork,
    signer: DecisionSigner,
    kind: PacketKind,
    tenant_id: uuid.UUID,
    subject_id: uuid.UUID,
    components: list[dict[str, Any]],
    body: dict[str, Any],
    index: dict[str, uuid.UUID | None],
    now: datetime,
    revision: int = 1,
    supersedes: uuid.UUID | None = None,
) -> EvidencePacket | None:
    """Sign and store one packet; None when the same packet was sealed concurrently."""
    identity = packet_id(kind, subject_id, revision)
    predicate = {
        "packet": {
            "id": str(identity),
            "kind": str(kind),
            "tenant_id": str(tenant_id),
            "subject_id": str(subject_id),
            "revision": revision,
            "supersedes": None if supersedes is None else str(supersedes),
            "sealed_at": now.isoformat(),
            "time_source": TIME_SOURCE,
            "sealed_by": f"stella {stella.__version__}",
        },
        **body,
    }
    envelope = signer.sign_statement(_subjects(components), predicate, kind.predicate_type)
    packet = EvidencePacket(
        id=identity,
        tenant_id=tenant_id,
        kind=kind,
        subject_id=subject_id,
        revision=revision,
        supersedes=supersedes,
        release_id=index.get("release_id"),
        environment_id=index.get("environment_id"),
        promotion_id=index.get("promotion_id"),
        digest=statement_digest(envelope),
        keyid=signer.keyid,
        envelope=envelope,
        sealed_at=now,
    )
    uow.signing_keys.register(signer.keyid, signer.public_key_pem, now)
    return packet if uow.evidence.add(packet, packet_content_digest(envelope)) else None


def statement_digest(envelope: dict[str, Any]) -> str:
    """The packet's content address: sha256 of the signed statement bytes."""
    return "sha256:" + hashlib.sha256(base64.b64decode(envelope["payload"])).hexdigest()


def seal_decision(
    uow: UnitOfWork,
    signer: DecisionSigner,
    promotion: Promotion,
    context: dict[str, Any],
    results: list[dict[str, Any]],
    decision_envelope: dict[str, Any],
    outcome: str,
    reason: str,
    now: datetime,
) -> EvidencePacket | None:
    """The packet of a promotion decision, sealed in the transaction that records it. It
    carries the full gate context, so the decision can be replayed from the packet alone."""
    components = context["release"]["components"]
    body = {
        "who": {
            "requested_by": {
                "id": context["promotion"]["requested_by"],
                "name": context["promotion"]["requested_by_name"],
            },
            "approvals": context["approvals"],
        },
        "what": {
            "kind": promotion.kind,
            "release": context["release"],
            "source_environment": context["source"],
            "target_environment": {
                k: context["target"][k] for k in ("id", "slug", "name", "is_production")
            },
            "targets": [t["name"] for t in context["targets"]],
        },
        "why": {
            "outcome": outcome,
            "reason": reason,
            "gate_results": results,
            "policies": [
                {k: p[k] for k in ("name", "version", "hash")} for p in context["policies"]
            ],
            "approval_comments": [
                {"user": a["user_name"], "decision": a["decision"], "comment": a["comment"]}
                for a in context["approvals"]
            ],
            "overrides": context["overrides"],
            "decision_record": {
                "envelope_digest": digest(decision_envelope),
                "envelope": decision_envelope,
            },
        },
        "how": {
            "evaluator_version": gates.EVALUATOR_VERSION,
            "gates": context["target"]["gates"],
        },
        "when": {
            "requested_at": context["promotion"]["requested_at"],
            "decided_at": now.isoformat(),
            "time_source": TIME_SOURCE,
        },
        "attachments": _attachments(uow, promotion.tenant_id, [c["digest"] for c in components]),
        "replay": {"context": context, "context_digest": digest(context)},
    }
    return _seal(
        uow,
        signer,
        PacketKind.PROMOTION_DECISION,
        promotion.tenant_id,
        promotion.id,
        components,
        body,
        {
            "release_id": promotion.release_id,
            "environment_id": promotion.target_environment_id,
            "promotion_id": promotion.id,
        },
        now,
    )


def _job_subject(uow: UnitOfWork, job: DeploymentJob) -> tuple[list[dict[str, Any]], str, str]:
    """(components, release name, target type) from the job's task, or — for a job that failed
    before a task could be rendered — from the release itself."""
    if job.task_digest:
        task = deployments.load_task(uow, job)
        components = [
            {"name": c.component, "repository": c.repository, "digest": c.digest}
            for c in task.containers
        ]
        return components, task.release_name, task.target_type
    release = uow.releases.get(job.tenant_id, str(job.release_id))
    target = uow.targets.get(job.tenant_id, str(job.target_id))
    components = (
        []
        if release is None
        else [
            {"name": c.name, "repository": c.repository, "digest": c.digest}
            for c in sorted(release.components, key=lambda c: c.name)
        ]
    )
    return (
        components,
        release.name if release else "",
        str(target.type) if target else "unknown",
    )


def _job_body(uow: UnitOfWork, job: DeploymentJob) -> tuple[dict[str, Any], list[Any]]:
    components, release_name, target_type = _job_subject(uow, job)
    agent = uow.agents.by_id(job.agent_id) if job.agent_id else None
    environment = uow.environments.get_by_id(job.tenant_id, job.environment_id)
    promotion = (
        uow.promotions.find(job.tenant_id, str(job.promotion_id)) if job.promotion_id else None
    )
    decision = uow.promotions.decision(job.promotion_id) if job.promotion_id else None
    decision_packet = (
        uow.evidence.latest_for(PacketKind.PROMOTION_DECISION, job.promotion_id)
        if job.promotion_id
        else None
    )
    run = uow.runs.get_with_steps(job.tenant_id, job.run_id) if job.run_id else None
    body = {
        "who": {
            "requested_by": None if promotion is None else promotion.requested_by_name,
            "executor": job.executor,
            "agent": None
            if agent is None
            else {
                "id": str(agent.id),
                "name": agent.name,
                "version": agent.version,
                "certificate_serial": agent.cert_serial,
                "certificate_fingerprint": agent.cert_fingerprint,
            },
        },
        "what": {
            "kind": str(job.kind),
            "release": {
                "id": str(job.release_id),
                "name": release_name,
                "version": job.release_version,
            },
            "components": components,
            "environment": None
            if environment is None
            else {"id": str(environment.id), "slug": environment.slug},
            "target": {"id": str(job.target_id), "name": job.target_name, "type": target_type},
            "artifacts": job.artifacts,
        },
        "why": {
            "promotion_id": None if job.promotion_id is None else str(job.promotion_id),
            "decision_envelope_digest": None if decision is None else decision["envelope_digest"],
            "decision_packet": None
            if decision_packet is None
            else {"id": str(decision_packet.id), "digest": decision_packet.digest},
        },
        "how": {
            "executor": job.executor,
            "capability": job.capability,
            "attempt": job.attempt,
            "executor_version": agent.version if agent else f"stella {stella.__version__}",
            "task_digest": job.task_digest,
            "workflow": None
            if run is None
            else {
                "name": run.workflow_name,
                "version": run.workflow_version,
                "run_id": str(run.id),
                "steps": [
                    {
                        "id": s.step_id,
                        "type": s.type,
                        "state": str(s.state),
                        "attempts": s.attempts,
                        "started_at": s.started_at.isoformat() if s.started_at else None,
                        "finished_at": s.finished_at.isoformat() if s.finished_at else None,
                        "error": s.error,
                    }
                    for s in run.steps
                ],
            },
        },
        "when": {
            "created_at": job.created_at.isoformat(),
            "started_at": job.started_at.isoformat() if job.started_at else None,
            "finished_at": job.finished_at.isoformat() if job.finished_at else None,
            "time_source": TIME_SOURCE,
        },
        "outcome": {
            "state": str(job.state),
            "error": job.error,
            "result": job.result,
            "log": job.log,
            "log_sha256": "sha256:" + hashlib.sha256(job.log.encode()).hexdigest(),
        },
        "attachments": _attachments(uow, job.tenant_id, [c["digest"] for c in components]),
    }
    return body, components


def seal_job(uow: UnitOfWork, signer: DecisionSigner, job: DeploymentJob, now: datetime) -> None:
    """Seal the packet of one finished deployment job and point the job at it."""
    body, components = _job_body(uow, job)
    packet = _seal(
        uow,
        signer,
        PacketKind.DEPLOYMENT,
        job.tenant_id,
        job.id,
        components,
        body,
        {
            "release_id": job.release_id,
            "environment_id": job.environment_id,
            "promotion_id": job.promotion_id,
        },
        now,
    )
    uow.jobs.set(job.id, evidence_packet_id=packet_id(PacketKind.DEPLOYMENT, job.id))
    if packet is not None:
        log.info(
            "evidence packet sealed",
            extra={"packet_id": str(packet.id), "deployment_id": str(job.id)},
        )


def seal_finished_jobs(
    uow_factory: UnitOfWorkFactory,
    signer: DecisionSigner,
    clock: Clock,
    metrics: Metrics | None = None,
    limit: int = 50,
    unsealable: set[uuid.UUID] | None = None,
) -> int:
    """Seal packets for finished jobs that have none yet (each in its own transaction, so
    one job whose records are damaged cannot hold up the others). A job that could not be
    sealed goes into `unsealable` (the worker keeps it) and is not tried on every poll again,
    nor can enough of them fill the batch and stop sealing altogether."""
    skipped = set() if unsealable is None else unsealable
    with uow_factory(read_only=True) as uow:
        pending = uow.jobs.unsealed(limit, skipped)
    sealed = 0
    for job in pending:
        try:
            with uow_factory() as uow:
                current = uow.jobs.by_id(job.id, lock=True)
                if current is None or current.evidence_packet_id is not None:
                    continue
                seal_job(uow, signer, current, clock())
                uow.commit()
                sealed += 1
                if metrics is not None:
                    metrics.evidence_sealed(str(PacketKind.DEPLOYMENT))
        except StorageUnavailable:
            raise  # the database is away: every other job would fail the same way
        except Exception:  # damaged records of one job must not stop the others
            log.exception("cannot seal the evidence of deployment job %s", job.id)
            skipped.add(job.id)
    return sealed


# --- reading ------------------------------------------------------------------------------


def packet_summary(packet: EvidencePacket) -> dict[str, Any]:
    return {
        "id": str(packet.id),
        "kind": str(packet.kind),
        "subject_id": str(packet.subject_id),
        "revision": packet.revision,
        "supersedes": None if packet.supersedes is None else str(packet.supersedes),
        "release_id": None if packet.release_id is None else str(packet.release_id),
        "environment_id": None if packet.environment_id is None else str(packet.environment_id),
        "promotion_id": None if packet.promotion_id is None else str(packet.promotion_id),
        "digest": packet.digest,
        "keyid": packet.keyid,
        "sealed_at": packet.sealed_at.isoformat(),
    }


def parse_day_or_time(field: str, value: str | None, end: bool = False) -> datetime | None:
    """`2026-03-01` (a day: from its start, or to the end of it when `end`) or RFC 3339."""
    if value is None or value == "":
        return None
    try:
        if len(value) == 10:
            day = datetime.fromisoformat(value).replace(tzinfo=UTC)
            return day + timedelta(days=1) if end else day
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise ValidationFailed.single(field, "a time needs a zone (e.g. Z or +01:00)")
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValidationFailed.single(
            field, f"'{value}' is not a date (2026-03-01) or an RFC 3339 time"
        ) from None


def list_packets(
    uow_factory: UnitOfWorkFactory,
    ctx: CallContext,
    page: PageRequest,
    release: str | None,
    environment: str | None,
    since: str | None,
    until: str | None,
    kind: str | None,
) -> Page[EvidencePacket]:
    tenant_id = ctx.principal.tenant_id
    start = parse_day_or_time("from", since)
    end = parse_day_or_time("to", until, end=True)
    if kind is not None and kind not in {k.value for k in PacketKind}:
        raise ValidationFailed.single(
            "kind", f"'{kind}' is not one of {', '.join(k.value for k in PacketKind)}"
        )
    with uow_factory(read_only=True) as uow:
        release_id = environment_id = None
        if release:
            found = uow.releases.get(tenant_id, release)
            if found is None:
                raise ValidationFailed.single("release", f"release '{release}' not found")
            release_id = found.id
        if environment:
            env = uow.environments.get(tenant_id, environment)
            if env is None:
                raise ValidationFailed.single(
                    "environment", f"environment '{environment}' not found"
                )
            environment_id = env.id
        return uow.evidence.page(tenant_id, page, release_id, environment_id, start, end, kind)


def get_packet(uow_factory: UnitOfWorkFactory, ctx: CallContext, ref: str) -> EvidencePacket:
    with uow_factory(read_only=True) as uow:
        packet = uow.evidence.get(ctx.principal.tenant_id, ref)
    if packet is None:
        msg = f"evidence packet '{ref}' not found"
        raise NotFound(msg)
    return packet


# --- corrections --------------------------------------------------------------------------


def correct_packet(
    uow_factory: UnitOfWorkFactory,
    signer: DecisionSigner,
    ctx: CallContext,
    ref: str,
    reason: str,
    changes: dict[str, Any],
) -> EvidencePacket:
    """A sealed packet never changes: a correction is a new revision that names the packet it
    supersedes, carries the original's content, and says what is corrected, by whom and why."""
    require(ctx, Permission.ADMINISTER, uow_factory, "correct evidence")
    tenant_id = ctx.principal.tenant_id
    with uow_factory() as uow:
        original = uow.evidence.get(tenant_id, ref)
        if original is None:
            msg = f"evidence packet '{ref}' not found"
            raise NotFound(msg)
        latest = uow.evidence.latest_for(original.kind, original.subject_id)
        if latest is not None and latest.id != original.id:
            msg = (
                f"packet {original.id} was already superseded by revision {latest.revision} "
                f"({latest.id}); correct that one"
            )
            raise Conflict(msg)
        statement = json.loads(base64.b64decode(original.envelope["payload"]))
        body = {
            k: v for k, v in statement["predicate"].items() if k not in {"packet", "correction"}
        }
        body["correction"] = {
            "reason": reason,
            "changes": changes,
            "corrected_by": ctx.principal.name,
            "original": {"id": str(original.id), "digest": original.digest},
        }
        now = ctx.clock()
        packet = _seal(
            uow,
            signer,
            original.kind,
            tenant_id,
            original.subject_id,
            [
                {"repository": s["name"], "digest": "sha256:" + s["digest"]["sha256"]}
                for s in statement["subject"]
            ],
            body,
            {
                "release_id": original.release_id,
                "environment_id": original.environment_id,
                "promotion_id": original.promotion_id,
            },
            now,
            revision=original.revision + 1,
            supersedes=original.id,
        )
        if packet is None:
            msg = f"packet {original.id} was corrected concurrently; read it again"
            raise Conflict(msg)
        record(
            uow,
            ctx,
            "evidence.corrected",
            "evidence",
            packet.id,
            {"supersedes": str(original.id), "reason": reason},
        )
        uow.commit()
    return packet
