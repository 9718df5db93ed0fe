"""Agents, join tokens, deployment jobs, content-addressed artifacts and target observations."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Collection
from dataclasses import asdict
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import URL, Connection, Row, and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from stella.adapters.db import tables as t
from stella.adapters.db.repository_base import SqlRepository, chunked, execute, mapping
from stella.domain.deployments import (
    Agent,
    AgentState,
    DeploymentJob,
    JobKind,
    JobState,
    JoinToken,
    ObservedContainer,
)
from stella.domain.pagination import Page, PageRequest

NOTIFY_CHANNEL = "stella_deployment_jobs"
LISTEN_RETRY_SECONDS = 5.0
_listeners_lock = threading.Lock()
log = logging.getLogger("stella.deployments")


class JobEventSink(Protocol):
    listening: set[str]

    def notify(self, *keys: str) -> None: ...


def start_listener(url: URL, events: JobEventSink) -> None:
    """One daemon thread per database URL: LISTEN, pass each payload to `events.notify`;
    reconnect after a failure. While it is down, waiters fall back to polling."""
    key = url.render_as_string(hide_password=True)
    with _listeners_lock:
        if key in events.listening:
            return
        events.listening.add(key)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    thread = threading.Thread(
        target=_listen_forever,
        args=(dsn, events, key),
        name="deployment-job-listener",
        daemon=True,
    )
    thread.start()


def _listen_forever(dsn: str, events: JobEventSink, key: str) -> None:
    """Listen until the database itself is gone (dropped); warn once per outage, not once per
    retry, and say when notifications flow again."""
    import psycopg

    failing = False
    while True:
        try:
            # TCP keepalives: a connection that died silently ends notifies() instead of
            # blocking it forever (polling covers the gap meanwhile)
            with psycopg.connect(
                dsn, autocommit=True, connect_timeout=10, keepalives=1, keepalives_idle=30
            ) as conn:
                conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                if failing:
                    log.info("deployment job LISTEN restored")
                    failing = False
                for notice in conn.notifies():
                    events.notify(notice.payload)
        except psycopg.OperationalError as exc:
            if "does not exist" in str(exc):
                log.info("deployment job LISTEN stopped: the database no longer exists")
                with _listeners_lock:
                    events.listening.discard(key)
                return
            failing = _warn_once(failing, exc)
        except Exception as exc:  # noqa: BLE001 - keep listening; polling covers the gap
            failing = _warn_once(failing, exc)
        time.sleep(LISTEN_RETRY_SECONDS)


def _warn_once(failing: bool, exc: Exception) -> bool:
    if not failing:
        log.warning(
            "deployment job LISTEN failed (%s); retrying every %.0f s, polling meanwhile",
            type(exc).__name__,
            LISTEN_RETRY_SECONDS,
        )
    return True


class SqlAgentRepository(SqlRepository[Agent]):
    table = t.agents

    def _to_domain(self, row: Row[Any]) -> Agent:
        m = dict(mapping(row))
        m["state"] = AgentState(m["state"])
        return Agent(**m)

    def _to_row(self, entity: Agent) -> dict[str, Any]:
        row = asdict(entity)
        row["state"] = str(entity.state)
        return row

    def by_id(self, agent_id: uuid.UUID, lock: bool = False) -> Agent | None:
        """Any tenant's agent: the mTLS listener knows only the certificate's agent id.

        `lock` (PostgreSQL: FOR UPDATE) holds the row until the transaction ends, so a
        revocation and a heartbeat of the same agent cannot interleave."""
        stmt = self.table.select().where(self.table.c.id == agent_id)
        if lock:  # SQLite's compiler leaves FOR UPDATE out (its write lock serialises instead)
            stmt = stmt.with_for_update()
        row = execute(self._conn, stmt).first()
        return self._to_domain(row) if row else None

    def candidate_targets(self, agent: Agent) -> list[tuple[uuid.UUID, str, uuid.UUID | None, str]]:
        """(id, type, pinned agent, health) of the targets in the agent's environment that are
        pinned to it or to no agent: the only ones a heartbeat can concern. Columns only, no
        whole rows: an environment may hold thousands of targets pinned to other agents."""
        c = t.targets.c
        stmt = select(c.id, c.type, c.agent_id, c.health).where(
            c.tenant_id == agent.tenant_id,
            c.environment_id == agent.environment_id,
            or_(c.agent_id == agent.id, c.agent_id.is_(None)),
        )
        return [
            (row.id, str(row.type), row.agent_id, str(row.health))
            for row in execute(self._conn, stmt).all()
        ]

    def page(self, tenant_id: uuid.UUID, page: PageRequest) -> Page[Agent]:
        return self._paged(self.table.select().where(self.table.c.tenant_id == tenant_id), page)

    def heartbeat(self, agent: Agent, values: dict[str, Any]) -> None:
        execute(self._conn, update(self.table).where(self.table.c.id == agent.id).values(**values))

    def set_state(self, agent_id: uuid.UUID, state: AgentState, now: datetime) -> None:
        stmt = (
            update(self.table)
            .where(self.table.c.id == agent_id)
            .values(state=str(state), updated_at=now)
        )
        execute(self._conn, stmt)

    def silent_since(self, before: datetime) -> list[Agent]:
        """Online or degraded agents whose last heartbeat is older than `before` (all tenants)."""
        stmt = self.table.select().where(
            self.table.c.state.in_([AgentState.ONLINE.value, AgentState.DEGRADED.value]),
            or_(self.table.c.last_heartbeat.is_(None), self.table.c.last_heartbeat < before),
        )
        return [self._to_domain(r) for r in execute(self._conn, stmt).all()]

    def online_with(
        self, tenant_id: uuid.UUID, environment_id: uuid.UUID, capability: str
    ) -> list[Agent]:
        stmt = self.table.select().where(
            self.table.c.tenant_id == tenant_id,
            self.table.c.environment_id == environment_id,
            self.table.c.state.in_([AgentState.ONLINE.value, AgentState.DEGRADED.value]),
        )
        agents = [self._to_domain(r) for r in execute(self._conn, stmt).all()]
        return [a for a in agents if capability in a.capabilities]

    def in_environment(self, tenant_id: uuid.UUID, environment_id: uuid.UUID) -> list[Agent]:
        stmt = self.table.select().where(
            self.table.c.tenant_id == tenant_id, self.table.c.environment_id == environment_id
        )
        return [self._to_domain(r) for r in execute(self._conn, stmt).all()]

    def count_by_state(self) -> dict[str, int]:
        stmt = select(self.table.c.state, func.count().label("n")).group_by(self.table.c.state)
        return {str(row.state): int(row.n) for row in execute(self._conn, stmt).all()}


class SqlJoinTokenRepository:
    table = t.agent_join_tokens

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, token: JoinToken) -> None:
        execute(self._conn, self.table.insert().values(**asdict(token)))

    def consume(self, token_hash: str, agent_id: uuid.UUID, now: datetime) -> JoinToken | None:
        """Mark an unused, unexpired token used by `agent_id`; None if it is not (any more).

        A single conditional UPDATE, so two agents racing with one token cannot both win.
        """
        stmt = (
            update(self.table)
            .where(
                self.table.c.token_hash == token_hash,
                self.table.c.used_at.is_(None),
                self.table.c.expires_at > now,
            )
            .values(used_at=now, agent_id=agent_id)
        )
        if execute(self._conn, stmt).rowcount != 1:
            return None
        row = execute(
            self._conn, self.table.select().where(self.table.c.token_hash == token_hash)
        ).first()
        return JoinToken(**mapping(row)) if row else None

    def find(self, token_hash: str) -> JoinToken | None:
        row = execute(
            self._conn, self.table.select().where(self.table.c.token_hash == token_hash)
        ).first()
        return JoinToken(**mapping(row)) if row else None


class SqlDeploymentJobRepository(SqlRepository[DeploymentJob]):
    table = t.deployment_jobs
    ref_column = None  # jobs have ids only

    def _to_domain(self, row: Row[Any]) -> DeploymentJob:
        m = dict(mapping(row))
        m["kind"] = JobKind(m["kind"])
        m["state"] = JobState(m["state"])
        return DeploymentJob(**m)

    def _to_row(self, entity: DeploymentJob) -> dict[str, Any]:
        row = asdict(entity)
        row["kind"] = str(entity.kind)
        row["state"] = str(entity.state)
        return row

    def by_id(self, job_id: uuid.UUID, lock: bool = False) -> DeploymentJob | None:
        stmt = self.table.select().where(self.table.c.id == job_id)
        if lock and self._conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        row = execute(self._conn, stmt).first()
        return self._to_domain(row) if row else None

    def set(self, job_id: uuid.UUID, **values: Any) -> None:
        for key in ("state", "kind"):
            if key in values:
                values[key] = str(values[key])
        execute(self._conn, update(self.table).where(self.table.c.id == job_id).values(**values))

    def batch(self, batch: str) -> list[DeploymentJob]:
        stmt = self.table.select().where(self.table.c.batch == batch).order_by(self.table.c.id)
        return [self._to_domain(r) for r in execute(self._conn, stmt).all()]

    def page(
        self,
        tenant_id: uuid.UUID,
        page: PageRequest,
        environment_id: uuid.UUID | None = None,
        target_id: uuid.UUID | None = None,
        promotion_id: uuid.UUID | None = None,
    ) -> Page[DeploymentJob]:
        stmt = self.table.select().where(self.table.c.tenant_id == tenant_id)
        if environment_id is not None:
            stmt = stmt.where(self.table.c.environment_id == environment_id)
        if target_id is not None:
            stmt = stmt.where(self.table.c.target_id == target_id)
        if promotion_id is not None:
            stmt = stmt.where(self.table.c.promotion_id == promotion_id)
        return self._paged(stmt, page)

    def claim_next(
        self,
        tenant_id: uuid.UUID,
        environment_id: uuid.UUID | None,
        capabilities: list[str],
        executor: str,
        agent_id: uuid.UUID | None,
    ) -> DeploymentJob | None:
        """Lock the oldest pending job this executor may run (SKIP LOCKED on PostgreSQL).

        On SQLite the writer already holds the database lock (BEGIN IMMEDIATE), which
        serialises claims just as well.
        """
        c = self.table.c
        conditions = [
            c.state == JobState.PENDING.value,
            c.executor == executor,
            c.capability.in_(capabilities),
            c.tenant_id == tenant_id,
        ]
        if environment_id is not None:
            conditions.append(c.environment_id == environment_id)
        if agent_id is not None:
            conditions.append(or_(c.pinned_agent_id.is_(None), c.pinned_agent_id == agent_id))
        stmt = self.table.select().where(and_(*conditions)).order_by(c.created_at, c.id).limit(1)
        if self._conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        row = execute(self._conn, stmt).first()
        return self._to_domain(row) if row else None

    def last_succeeded_agents(
        self, target_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, uuid.UUID | None]:
        """For each target with a successful job: the agent that ran the newest one."""
        if not target_ids:
            return {}
        c = self.table.c
        newest = (
            select(c.agent_id)
            .where(c.target_id == t.targets.c.id, c.state == JobState.SUCCEEDED.value)
            .order_by(c.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        found: dict[uuid.UUID, uuid.UUID | None] = {}
        for part in chunked(target_ids):
            stmt = select(t.targets.c.id.label("target_id"), newest.label("agent_id")).where(
                t.targets.c.id.in_(part)
            )
            found.update({row.target_id: row.agent_id for row in execute(self._conn, stmt)})
        return found

    def announce(self, keys: list[str]) -> None:
        """PostgreSQL: NOTIFY listening processes of `keys` when this transaction commits (not
        at all if it rolls back). SQLite has no such channel: other processes poll."""
        if self._conn.dialect.name != "postgresql" or not keys:
            return
        execute(self._conn, select(*(func.pg_notify(NOTIFY_CHANNEL, key) for key in keys)))

    def running_on(self, agent_id: uuid.UUID) -> list[DeploymentJob]:
        stmt = self.table.select().where(
            self.table.c.agent_id == agent_id, self.table.c.state == JobState.RUNNING.value
        )
        return [self._to_domain(r) for r in execute(self._conn, stmt).all()]

    def waiting_for_agents(self, before: datetime) -> list[DeploymentJob]:
        """Agent jobs pending since before `before` (nobody has taken them)."""
        stmt = self.table.select().where(
            self.table.c.executor == "agent",
            self.table.c.state == JobState.PENDING.value,
            self.table.c.updated_at < before,
        )
        return [self._to_domain(r) for r in execute(self._conn, stmt).all()]

    def overdue_worker_jobs(self, now: datetime) -> list[DeploymentJob]:
        """Agentless jobs whose executing worker stopped renewing its lease."""
        stmt = self.table.select().where(
            self.table.c.executor == "worker",
            self.table.c.state == JobState.RUNNING.value,
            self.table.c.lease_expires_at < now,
        )
        return [self._to_domain(r) for r in execute(self._conn, stmt).all()]

    def last_succeeded(
        self, target_id: uuid.UUID, before: uuid.UUID | None = None
    ) -> DeploymentJob | None:
        """The newest successful job on a target (optionally: created before job `before`)."""
        c = self.table.c
        stmt = self.table.select().where(
            c.target_id == target_id, c.state == JobState.SUCCEEDED.value
        )
        if before is not None:
            stmt = stmt.where(c.id < before)
        row = execute(self._conn, stmt.order_by(c.id.desc()).limit(1)).first()
        return self._to_domain(row) if row else None

    def unsealed(self, limit: int, skip: Collection[uuid.UUID] = ()) -> list[DeploymentJob]:
        """Finished jobs whose evidence packet is not sealed yet, oldest first, but for `skip`."""
        c = self.table.c
        terminal = [s.value for s in JobState if s.is_terminal]
        stmt = self.table.select().where(c.state.in_(terminal), c.evidence_packet_id.is_(None))
        if skip:
            stmt = stmt.where(c.id.not_in(list(skip)))
        stmt = stmt.order_by(c.finished_at, c.id).limit(limit)
        return [self._to_domain(r) for r in execute(self._conn, stmt).all()]

    def for_promotion(self, promotion_id: uuid.UUID) -> list[DeploymentJob]:
        stmt = self.table.select().where(self.table.c.promotion_id == promotion_id)
        return [self._to_domain(r) for r in execute(self._conn, stmt.order_by(self.table.c.id))]


class SqlArtifactStore:
    """Immutable, content-addressed artifacts (lockfiles, tasks); a repeated put is a no-op."""

    table = t.deployment_artifacts

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def put(
        self, tenant_id: uuid.UUID, digest: str, media_type: str, content: str, now: datetime
    ) -> None:
        dialect = self._conn.dialect.name
        stmt = (postgresql_insert if dialect == "postgresql" else sqlite_insert)(self.table)
        execute(
            self._conn,
            stmt.values(
                tenant_id=tenant_id,
                digest=digest,
                media_type=media_type,
                content=content,
                created_at=now,
            ).on_conflict_do_nothing(),
        )

    def get(self, tenant_id: uuid.UUID, digest: str) -> tuple[str, str] | None:
        """(media type, content) of an artifact."""
        stmt = self.table.select().where(
            self.table.c.tenant_id == tenant_id, self.table.c.digest == digest
        )
        row = execute(self._conn, stmt).first()
        return (str(row.media_type), str(row.content)) if row else None


class SqlObservationRepository:
    """What each target was last seen running (agent inventory or an SSH look)."""

    table = t.target_observations

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def record(
        self,
        tenant_id: uuid.UUID,
        target_id: uuid.UUID,
        observed_by: str,
        containers: list[ObservedContainer],
        now: datetime,
    ) -> None:
        values = {
            "target_id": target_id,
            "tenant_id": tenant_id,
            "observed_by": observed_by,
            "containers": [c.to_json() for c in containers],
            "observed_at": now,
        }
        dialect = self._conn.dialect.name
        stmt = (postgresql_insert if dialect == "postgresql" else sqlite_insert)(self.table)
        stmt = stmt.values(**values).on_conflict_do_update(
            index_elements=["target_id"],
            set_={k: v for k, v in values.items() if k != "target_id"},
        )
        execute(self._conn, stmt)

    def report(
        self,
        tenant_id: uuid.UUID,
        target_ids: list[uuid.UUID],
        observed_by: str,
        containers: list[ObservedContainer],
        now: datetime,
    ) -> int:
        """Record one inventory for several targets; where the same observer reported the same
        containers before, only `observed_at` moves (no rewrite of the document). Returns how
        many documents were (re)written."""
        if not target_ids:
            return 0
        document = [c.to_json() for c in containers]
        c = self.table.c
        same: set[uuid.UUID] = set()
        for part in chunked(target_ids):
            stored = select(c.target_id, c.observed_by, c.containers).where(c.target_id.in_(part))
            same |= {
                row.target_id
                for row in execute(self._conn, stored)
                if row.observed_by == observed_by and row.containers == document
            }
        for part in chunked(sorted(same)):
            execute(
                self._conn,
                update(self.table).where(c.target_id.in_(part)).values(observed_at=now),
            )
        changed = [target_id for target_id in target_ids if target_id not in same]
        for target_id in changed:
            self.record(tenant_id, target_id, observed_by, containers, now)
        return len(changed)

    def get(self, target_id: uuid.UUID) -> tuple[list[ObservedContainer], datetime, str] | None:
        stmt = self.table.select().where(self.table.c.target_id == target_id)
        row = execute(self._conn, stmt).first()
        if row is None:
            return None
        m = mapping(row)
        containers = [ObservedContainer.from_json(c) for c in m["containers"]]
        return containers, m["observed_at"], m["observed_by"]
