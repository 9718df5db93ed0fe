"""SQL repositories for promotions (with their append-only history), policies and verdicts."""

from __future__ import annotations

import uuid
from dataclasses import asdict, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, insert, select, update

from stella.adapters.db import tables as t
from stella.adapters.db.repository_base import SqlRepository, execute, mapping, parse_uuid
from stella.domain.ids import new_id
from stella.domain.pagination import Page, PageRequest
from stella.domain.promotions import Approval, GateResult, Promotion, PromotionState


def _gate(data: dict[str, Any]) -> GateResult:
    return GateResult(
        data["gate"],
        data["passed"],
        data["reason"],
        data["details"],
        data["inputs_digest"],
        data.get("pending", False),
    )


class SqlPromotionRepository(SqlRepository[Promotion]):
    table = t.promotions
    ref_column = None

    def _to_domain(self, row: Row[Any]) -> Promotion:
        values = dict(mapping(row))
        values["state"] = PromotionState(values["state"])
        return Promotion(**values)

    def _to_row(self, entity: Promotion) -> dict[str, Any]:
        row = asdict(entity)
        for key in ("gate_results", "approvals", "decision"):
            row.pop(key)
        return row

    def _complete(self, promotion: Promotion) -> Promotion:
        """Add approvals, the latest gate results and the decision's summary.

        Only the columns shown are read: an evaluation's context and a decision's envelope are
        kilobytes each and are served by their own endpoints.
        """
        v, d = t.promotion_evaluations, t.decisions
        latest = execute(
            self._conn,
            select(v.c.results)
            .where(v.c.promotion_id == promotion.id)
            .order_by(v.c.seq.desc())
            .limit(1),
        ).scalar()
        decision = execute(
            self._conn,
            select(d.c.outcome, d.c.reason, d.c.envelope_digest, d.c.keyid).where(
                d.c.promotion_id == promotion.id
            ),
        ).first()
        return replace(
            promotion,
            gate_results=tuple(_gate(r) for r in latest or ()),
            approvals=tuple(self.approvals(promotion.id)),
            decision=None if decision is None else dict(mapping(decision)),
        )

    def find(self, tenant_id: uuid.UUID, ref: str, lock: bool = False) -> Promotion | None:
        """One promotion with its approvals, latest gate results and decision (locked if asked)."""
        as_uuid = parse_uuid(ref)
        if as_uuid is None:
            return None
        stmt = self.table.select().where(
            self.table.c.tenant_id == tenant_id, self.table.c.id == as_uuid
        )
        if lock:
            stmt = stmt.with_for_update()
        row = execute(self._conn, stmt).first()
        return None if row is None else self._complete(self._to_domain(row))

    def page(
        self,
        tenant_id: uuid.UUID,
        page: PageRequest,
        environment_id: uuid.UUID | None,
        state: str | None,
        release_id: uuid.UUID | None,
    ) -> Page[Promotion]:
        c = self.table.c
        stmt = self.table.select().where(c.tenant_id == tenant_id)
        if environment_id is not None:
            stmt = stmt.where(c.target_environment_id == environment_id)
        if state is not None:
            stmt = stmt.where(c.state == state)
        if release_id is not None:
            stmt = stmt.where(c.release_id == release_id)
        found = self._paged(stmt, page)
        return Page([self._complete(p) for p in found.items], found.next_cursor)

    def into(
        self, tenant_id: uuid.UUID, release_id: uuid.UUID, environment_id: uuid.UUID
    ) -> list[Promotion]:
        """Promotions of a release into an environment, oldest first."""
        c = self.table.c
        stmt = (
            self.table.select()
            .where(
                c.tenant_id == tenant_id,
                c.release_id == release_id,
                c.target_environment_id == environment_id,
            )
            .order_by(c.id)
        )
        return [self._to_domain(r) for r in execute(self._conn, stmt)]

    def set_state(
        self,
        promotion_id: uuid.UUID,
        state: PromotionState,
        now: datetime,
        run_id: uuid.UUID | None = None,
    ) -> None:
        values: dict[str, Any] = {"state": state.value, "updated_at": now}
        if run_id is not None:
            values["run_id"] = run_id
        execute(
            self._conn, update(self.table).where(self.table.c.id == promotion_id).values(values)
        )

    def deploying(self) -> list[Promotion]:
        """Promotions of every tenant whose workflow run is under way."""
        stmt = self.table.select().where(self.table.c.state == PromotionState.DEPLOYING.value)
        return [self._to_domain(r) for r in execute(self._conn, stmt.order_by(self.table.c.id))]

    def _next_seq(self, table: Any, promotion_id: uuid.UUID) -> int:
        stmt = select(func.coalesce(func.max(table.c.seq), 0)).where(
            table.c.promotion_id == promotion_id
        )
        return int(execute(self._conn, stmt).scalar_one()) + 1

    def add_event(
        self,
        promotion_id: uuid.UUID,
        from_state: str | None,
        to_state: str,
        actor_id: uuid.UUID | None,
        actor_name: str,
        reason: str,
        at: datetime,
    ) -> None:
        values = {
            "id": new_id(),
            "promotion_id": promotion_id,
            "seq": self._next_seq(t.promotion_events, promotion_id),
            "from_state": from_state,
            "to_state": to_state,
            "actor_id": actor_id,
            "actor_name": actor_name,
            "reason": reason,
            "at": at,
        }
        execute(self._conn, insert(t.promotion_events).values(values))

    def events(self, promotion_id: uuid.UUID) -> list[dict[str, Any]]:
        e = t.promotion_events
        stmt = e.select().where(e.c.promotion_id == promotion_id).order_by(e.c.seq)
        return [dict(mapping(r)) for r in execute(self._conn, stmt)]

    def add_approval(self, promotion_id: uuid.UUID, approval: Approval) -> None:
        values = {"id": new_id(), "promotion_id": promotion_id, **asdict(approval)}
        execute(self._conn, insert(t.approvals).values(values))

    def approvals(self, promotion_id: uuid.UUID) -> list[Approval]:
        a = t.approvals
        stmt = a.select().where(a.c.promotion_id == promotion_id).order_by(a.c.at, a.c.id)
        return [
            Approval(**{k: v for k, v in mapping(r).items() if k not in {"id", "promotion_id"}})
            for r in execute(self._conn, stmt)
        ]

    def add_evaluation(
        self,
        promotion_id: uuid.UUID,
        context: dict[str, Any],
        results: list[dict[str, Any]],
        outcome: str,
        reason: str,
        at: datetime,
    ) -> uuid.UUID:
        evaluation_id = new_id()
        values = {
            "id": evaluation_id,
            "promotion_id": promotion_id,
            "seq": self._next_seq(t.promotion_evaluations, promotion_id),
            "context": context,
            "results": results,
            "outcome": outcome,
            "reason": reason,
            "evaluated_at": at,
        }
        execute(self._conn, insert(t.promotion_evaluations).values(values))
        return evaluation_id

    def evaluations(self, promotion_id: uuid.UUID) -> list[dict[str, Any]]:
        v = t.promotion_evaluations
        stmt = v.select().where(v.c.promotion_id == promotion_id).order_by(v.c.seq)
        return [dict(mapping(r)) for r in execute(self._conn, stmt)]

    def evaluation_by_seq(self, promotion_id: uuid.UUID, seq: int) -> dict[str, Any] | None:
        v = t.promotion_evaluations
        stmt = v.select().where(v.c.promotion_id == promotion_id, v.c.seq == seq)
        row = execute(self._conn, stmt).first()
        return None if row is None else dict(mapping(row))

    def evaluation(self, evaluation_id: uuid.UUID) -> dict[str, Any] | None:
        v = t.promotion_evaluations
        row = execute(self._conn, v.select().where(v.c.id == evaluation_id)).first()
        return None if row is None else dict(mapping(row))

    def add_override(
        self, promotion_id: uuid.UUID, gate: str, user_name: str, reason: str, at: datetime
    ) -> None:
        values = {
            "id": new_id(),
            "promotion_id": promotion_id,
            "gate": gate,
            "user_name": user_name,
            "reason": reason,
            "at": at,
        }
        execute(self._conn, insert(t.promotion_overrides).values(values))

    def overrides(self, promotion_id: uuid.UUID) -> list[dict[str, Any]]:
        o = t.promotion_overrides
        stmt = o.select().where(o.c.promotion_id == promotion_id).order_by(o.c.at, o.c.id)
        return [
            {"gate": r.gate, "by": r.user_name, "reason": r.reason, "at": r.at.isoformat()}
            for r in execute(self._conn, stmt)
        ]

    def add_decision(self, values: dict[str, Any]) -> None:
        execute(self._conn, insert(t.decisions).values(values))

    def decision(self, promotion_id: uuid.UUID) -> dict[str, Any] | None:
        d = t.decisions
        row = execute(self._conn, d.select().where(d.c.promotion_id == promotion_id)).first()
        return None if row is None else dict(mapping(row))


class SqlPolicyRepository:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def add(self, values: dict[str, Any]) -> None:
        execute(self._conn, insert(t.policies).values(values))

    def latest(self, tenant_id: uuid.UUID, name: str) -> dict[str, Any] | None:
        p = t.policies
        stmt = (
            p.select()
            .where(p.c.tenant_id == tenant_id, p.c.name == name)
            .order_by(p.c.version.desc())
            .limit(1)
        )
        row = execute(self._conn, stmt).first()
        return None if row is None else dict(mapping(row))

    def all_latest(self, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
        p = t.policies
        stmt = p.select().where(p.c.tenant_id == tenant_id).order_by(p.c.name, p.c.version)
        latest: dict[str, dict[str, Any]] = {}
        for row in execute(self._conn, stmt):
            latest[row.name] = dict(mapping(row))
        return list(latest.values())


class SqlVerdictRepository:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def add(self, values: dict[str, Any]) -> None:
        execute(self._conn, insert(t.scan_verdicts).values(values))

    def get(self, tenant_id: uuid.UUID, scan_id: str) -> dict[str, Any] | None:
        v = t.scan_verdicts
        try:
            wanted = uuid.UUID(scan_id)
        except ValueError:
            return None
        row = execute(
            self._conn, v.select().where(v.c.tenant_id == tenant_id, v.c.id == wanted)
        ).first()
        return None if row is None else dict(mapping(row))

    def latest_for(self, tenant_id: uuid.UUID, digests: list[str]) -> dict[str, dict[str, Any]]:
        v = t.scan_verdicts
        stmt = (
            v.select()
            .where(v.c.tenant_id == tenant_id, v.c.digest.in_(digests))
            .order_by(v.c.created_at, v.c.id)  # ids within one millisecond are in random order
        )
        latest: dict[str, dict[str, Any]] = {}
        for row in execute(self._conn, stmt):
            latest[row.digest] = dict(mapping(row))
        return latest
