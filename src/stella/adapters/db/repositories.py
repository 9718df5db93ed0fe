"""SQL repositories for the foundation entities (Core queries mapped to domain dataclasses)."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from stella.adapters.db import tables as t
from stella.adapters.db.evidence_repositories import PendingChain
from stella.adapters.db.repository_base import SqlRepository, execute, mapping, parse_uuid
from stella.domain.audit import AuditEvent
from stella.domain.components import Component, ComponentVersion
from stella.domain.deployments import DeploymentPolicy
from stella.domain.environments import (
    ApprovalPolicy,
    Environment,
    EnvironmentState,
    FreezeWindow,
    GateName,
)
from stella.domain.errors import Conflict
from stella.domain.evidence import ChainEntryType, audit_event_digest
from stella.domain.integrations import Integration, IntegrationType
from stella.domain.pagination import Page, PageRequest
from stella.domain.releases import ComponentDigest, Release, ReleaseState
from stella.domain.security import SecurityPolicy
from stella.domain.targets import HealthStatus, Target, TargetState, TargetType
from stella.domain.tenancy import ApiToken, Principal, Role, Tenant, User


class SqlTenantRepository:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def add(self, tenant: Tenant) -> None:
        execute(self._conn, insert(t.tenants).values(asdict(tenant)))

    def get_by_name(self, name: str) -> Tenant | None:
        row = execute(self._conn, t.tenants.select().where(t.tenants.c.name == name)).first()
        return None if row is None else Tenant(**mapping(row))

    def count(self) -> int:
        return int(execute(self._conn, select(func.count()).select_from(t.tenants)).scalar_one())

    def ids(self) -> list[uuid.UUID]:
        return list(execute(self._conn, select(t.tenants.c.id)).scalars())


class SqlUserRepository(SqlRepository[User]):
    table = t.users

    def _to_domain(self, row: Row[Any]) -> User:
        m = mapping(row)
        return User(m["id"], m["tenant_id"], m["name"], Role(m["role"]), m["created_at"])

    def _to_row(self, entity: User) -> dict[str, Any]:
        return asdict(entity)

    def page(self, tenant_id: uuid.UUID, page: PageRequest) -> Page[User]:
        return self._paged(self.table.select().where(self.table.c.tenant_id == tenant_id), page)


class SqlTokenRepository:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def add(self, user: User, token_hash: str, prefix: str, now: datetime) -> uuid.UUID:
        token_id = uuid.uuid4()
        values = {
            "id": token_id,
            "tenant_id": user.tenant_id,
            "user_id": user.id,
            "token_hash": token_hash,
            "prefix": prefix,
            "created_at": now,
        }
        execute(self._conn, insert(t.api_tokens).values(values))
        return token_id

    def find_principal(self, token_hash: str) -> Principal | None:
        stmt = (
            select(t.users.c.id, t.users.c.tenant_id, t.users.c.name, t.users.c.role)
            .select_from(t.api_tokens.join(t.users, t.api_tokens.c.user_id == t.users.c.id))
            .where(t.api_tokens.c.token_hash == token_hash, t.api_tokens.c.revoked_at.is_(None))
        )
        row = execute(self._conn, stmt).first()
        if row is None:
            return None
        m = mapping(row)
        return Principal(m["id"], m["tenant_id"], m["name"], Role(m["role"]))

    def for_user(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> list[ApiToken]:
        c = t.api_tokens.c
        stmt = (
            select(c.id, c.user_id, c.prefix, c.created_at, c.revoked_at)
            .where(c.tenant_id == tenant_id, c.user_id == user_id)
            .order_by(c.created_at, c.id)
        )
        return [ApiToken(**mapping(row)) for row in execute(self._conn, stmt)]

    def revoke(
        self,
        tenant_id: uuid.UUID,
        user_id: uuid.UUID,
        token_id: uuid.UUID | None,
        now: datetime,
    ) -> list[ApiToken]:
        """Revoke one token (or every token) of the user that is still active."""
        c = t.api_tokens.c
        where = [c.tenant_id == tenant_id, c.user_id == user_id, c.revoked_at.is_(None)]
        if token_id is not None:
            where.append(c.id == token_id)
        ids = [row[0] for row in execute(self._conn, select(c.id).where(*where))]
        if ids:
            execute(self._conn, update(t.api_tokens).where(c.id.in_(ids)).values(revoked_at=now))
        return [token for token in self.for_user(tenant_id, user_id) if token.id in ids]


class SqlIdempotencyRepository:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def record(
        self,
        tenant_id: uuid.UUID,
        principal: str,
        key: str,
        fingerprint: str,
        resource_type: str,
        resource_id: str,
        now: datetime,
    ) -> None:
        values = {
            "id": uuid.uuid4(),
            "tenant_id": tenant_id,
            "principal": principal,
            "key": key,
            "fingerprint": fingerprint,
            "resource_type": resource_type,
            "resource_id": resource_id,
            "created_at": now,
        }
        try:
            execute(self._conn, insert(t.idempotency_keys).values(values))
        except Conflict:
            # another request with this key got there first (and its change is committed or
            # will be): this one must not make the change a second time
            msg = (
                "a request with this Idempotency-Key is already being processed; "
                "send it again to get its result"
            )
            raise Conflict(msg) from None

    def find(self, tenant_id: uuid.UUID, principal: str, key: str) -> dict[str, Any] | None:
        c = t.idempotency_keys.c
        stmt = select(t.idempotency_keys).where(
            c.tenant_id == tenant_id, c.principal == principal, c.key == key
        )
        row = execute(self._conn, stmt).first()
        return None if row is None else dict(mapping(row))

    def purge(self, before: datetime, limit: int) -> int:
        c = t.idempotency_keys.c
        ids = select(c.id).where(c.created_at < before).limit(limit).scalar_subquery()
        result = execute(self._conn, delete(t.idempotency_keys).where(c.id.in_(ids)))
        return int(result.rowcount)


class SqlEnvironmentRepository(SqlRepository[Environment]):
    table = t.environments
    ref_column = "slug"
    order_column = "promotion_order"
    descending = False

    def _to_domain(self, row: Row[Any]) -> Environment:
        m = mapping(row)
        policy = m["approval_policy"]
        return Environment(
            id=m["id"],
            tenant_id=m["tenant_id"],
            name=m["name"],
            slug=m["slug"],
            description=m["description"],
            promotion_order=m["promotion_order"],
            is_production=m["is_production"],
            state=EnvironmentState(m["state"]),
            gates=tuple(GateName(g) for g in m["gates"]),
            policies=tuple(m["policies"]),
            approval_policy=ApprovalPolicy(
                required_approvals=policy["required_approvals"],
                approver_roles=tuple(Role(r) for r in policy["approver_roles"]),
                separation_of_duties=policy["separation_of_duties"],
            ),
            freeze_windows=tuple(FreezeWindow(**w) for w in m["freeze_windows"]),
            created_at=m["created_at"],
            updated_at=m["updated_at"],
            promotion_workflow=m["promotion_workflow"],
            deployment=DeploymentPolicy.from_json(m["deployment_policy"]),
            security=SecurityPolicy.from_json(m["security_policy"]),
        )

    def _to_row(self, entity: Environment) -> dict[str, Any]:
        row = asdict(entity)
        row["gates"] = [str(g) for g in entity.gates]
        row["policies"] = list(entity.policies)
        row["approval_policy"]["approver_roles"] = [
            str(r) for r in entity.approval_policy.approver_roles
        ]
        row["freeze_windows"] = [
            {k: v for k, v in asdict(w).items() if v is not None} for w in entity.freeze_windows
        ]
        row["deployment_policy"] = row.pop("deployment")
        row["security_policy"] = row.pop("security")
        return row

    def get_by_id(self, tenant_id: uuid.UUID, id_: uuid.UUID) -> Environment | None:
        return self.get(tenant_id, str(id_))

    def page(self, tenant_id: uuid.UUID, page: PageRequest) -> Page[Environment]:
        return self._paged(self.table.select().where(self.table.c.tenant_id == tenant_id), page)

    def all(self, tenant_id: uuid.UUID) -> list[Environment]:
        stmt = self.table.select().where(self.table.c.tenant_id == tenant_id)
        rows = execute(self._conn, stmt.order_by(self.table.c.promotion_order)).all()
        return [self._to_domain(row) for row in rows]

    def delete(self, environment: Environment) -> None:
        execute(self._conn, self.table.delete().where(self.table.c.id == environment.id))

    def has_targets(self, environment: Environment) -> bool:
        stmt = select(exists().where(t.targets.c.environment_id == environment.id))
        return bool(execute(self._conn, stmt).scalar())

    def history_of(self, environment: Environment) -> list[str]:
        """The tables (other than targets) whose records name the environment: promotions,
        deployments, agents, join tokens, security verdicts … (found from the foreign keys, so
        a table added later is covered too)."""
        found = []
        for table in t.metadata.sorted_tables:
            if table is t.targets:
                continue
            columns = [fk.parent for fk in table.foreign_keys if fk.column is t.environments.c.id]
            if not columns:
                continue
            named = or_(*(column == environment.id for column in columns))
            if execute(self._conn, select(exists().where(named))).scalar():
                found.append(table.name)
        return found


class SqlTargetRepository(SqlRepository[Target]):
    table = t.targets

    def _to_domain(self, row: Row[Any]) -> Target:
        m = dict(mapping(row))
        m["type"] = TargetType(m["type"])
        m["state"] = TargetState(m["state"])
        m["health"] = HealthStatus(m["health"])
        return Target(**m)

    def _to_row(self, entity: Target) -> dict[str, Any]:
        return asdict(entity)

    def page(
        self, tenant_id: uuid.UUID, page: PageRequest, environment_id: uuid.UUID | None = None
    ) -> Page[Target]:
        stmt = self.table.select().where(self.table.c.tenant_id == tenant_id)
        if environment_id is not None:
            stmt = stmt.where(self.table.c.environment_id == environment_id)
        return self._paged(stmt, page)

    def delete(self, target: Target) -> None:
        execute(self._conn, self.table.delete().where(self.table.c.id == target.id))

    def set_health(self, target_id: uuid.UUID, health: str, now: datetime) -> None:
        stmt = (
            self.table.update()
            .where(self.table.c.id == target_id, self.table.c.health != health)
            .values(health=health, updated_at=now)
        )
        execute(self._conn, stmt)


class SqlComponentRepository(SqlRepository[Component]):
    table = t.components

    def _to_domain(self, row: Row[Any]) -> Component:
        return Component(**mapping(row))

    def _to_row(self, entity: Component) -> dict[str, Any]:
        return asdict(entity)

    def page(self, tenant_id: uuid.UUID, page: PageRequest) -> Page[Component]:
        return self._paged(self.table.select().where(self.table.c.tenant_id == tenant_id), page)

    def by_names(self, tenant_id: uuid.UUID, names: list[str]) -> dict[str, Component]:
        stmt = self.table.select().where(
            self.table.c.tenant_id == tenant_id, self.table.c.name.in_(names)
        )
        return {c.name: c for c in map(self._to_domain, execute(self._conn, stmt).all())}

    def by_repository(self, tenant_id: uuid.UUID, repository: str) -> list[Component]:
        stmt = self.table.select().where(
            self.table.c.tenant_id == tenant_id, self.table.c.repository == repository
        )
        return [self._to_domain(row) for row in execute(self._conn, stmt).all()]

    def add_version(self, version: ComponentVersion) -> bool:
        """Record a pushed digest; False when exactly this digest and tag were known already.

        INSERT … ON CONFLICT DO NOTHING, so a webhook racing a release creation with the same
        digest never turns into a conflict error for either of them.
        """
        row = _VersionPager(self._conn)._to_row(version)
        dialect = self._conn.dialect.name
        insert_stmt = (postgresql_insert if dialect == "postgresql" else sqlite_insert)(
            t.component_versions
        )
        stmt = (
            insert_stmt.values(row)
            .on_conflict_do_nothing(index_elements=["component_id", "digest", "tag"])
            .returning(t.component_versions.c.id)
        )
        return execute(self._conn, stmt).first() is not None

    def list_versions(
        self, tenant_id: uuid.UUID, component_id: uuid.UUID, page: PageRequest
    ) -> Page[ComponentVersion]:
        cv = t.component_versions
        stmt = cv.select().where(cv.c.tenant_id == tenant_id, cv.c.component_id == component_id)
        repo = _VersionPager(self._conn)
        return repo._paged(stmt, page)


class _VersionPager(SqlRepository[ComponentVersion]):
    table = t.component_versions

    def _to_domain(self, row: Row[Any]) -> ComponentVersion:
        m = dict(mapping(row))
        m["tag"] = m["tag"] or None
        return ComponentVersion(**m)

    def _to_row(self, entity: ComponentVersion) -> dict[str, Any]:
        return asdict(entity) | {"tag": entity.tag or ""}


class SqlIntegrationRepository(SqlRepository[Integration]):
    table = t.integrations

    def _to_domain(self, row: Row[Any]) -> Integration:
        m = dict(mapping(row))
        m["type"] = IntegrationType(m["type"])
        return Integration(**m)

    def _to_row(self, entity: Integration) -> dict[str, Any]:
        return asdict(entity)

    def get_any_tenant(self, id_: uuid.UUID) -> Integration | None:
        row = execute(self._conn, self.table.select().where(self.table.c.id == id_)).first()
        return None if row is None else self._to_domain(row)

    def page(self, tenant_id: uuid.UUID, page: PageRequest) -> Page[Integration]:
        return self._paged(self.table.select().where(self.table.c.tenant_id == tenant_id), page)

    def registries(self, tenant_id: uuid.UUID) -> list[Integration]:
        stmt = self.table.select().where(
            self.table.c.tenant_id == tenant_id,
            self.table.c.type == IntegrationType.REGISTRY.value,
        )
        return [self._to_domain(row) for row in execute(self._conn, stmt).all()]


class SqlReleaseRepository(SqlRepository[Release]):
    table = t.releases

    def _to_domain(self, row: Row[Any]) -> Release:
        return self._load([row])[0]

    def _to_row(self, entity: Release) -> dict[str, Any]:
        row = asdict(entity)
        row.pop("components")
        row["updated_at"] = entity.created_at
        return row

    def add(self, release: Release) -> None:
        execute(self._conn, insert(self.table).values(self._to_row(release)))
        components = [
            asdict(c) | {"release_id": release.id, "component_id": cid}
            for c, cid in zip(release.components, self._component_ids(release), strict=True)
        ]
        execute(self._conn, insert(t.release_components).values(components))

    def _component_ids(self, release: Release) -> list[uuid.UUID]:
        names = [c.name for c in release.components]
        stmt = select(t.components.c.name, t.components.c.id).where(
            t.components.c.tenant_id == release.tenant_id, t.components.c.name.in_(names)
        )
        rows = execute(self._conn, stmt).all()
        ids: dict[str, uuid.UUID] = {mapping(r)["name"]: mapping(r)["id"] for r in rows}
        return [ids[name] for name in names]

    def _load(self, rows: list[Row[Any]]) -> list[Release]:
        if not rows:
            return []
        rc = t.release_components
        ids = [mapping(r)["id"] for r in rows]
        stmt = rc.select().where(rc.c.release_id.in_(ids)).order_by(rc.c.release_id, rc.c.name)
        by_release: dict[uuid.UUID, list[ComponentDigest]] = {}
        for c in execute(self._conn, stmt).all():
            m = mapping(c)
            by_release.setdefault(m["release_id"], []).append(
                ComponentDigest(
                    m["name"], m["repository"], m["digest"], m["resolved_from_tag"], m["media_type"]
                )
            )
        releases = []
        for row in rows:
            values = dict(mapping(row))
            values.pop("updated_at")
            values["state"] = ReleaseState(values["state"])
            values["components"] = tuple(by_release.get(values["id"], []))
            releases.append(Release(**values))
        return releases

    def get(self, tenant_id: uuid.UUID, ref: str) -> Release | None:
        as_uuid = parse_uuid(ref)
        if as_uuid is not None:
            condition = self.table.c.id == as_uuid
        else:
            name, _, version = ref.partition("@")
            condition = and_(self.table.c.name == name, self.table.c.version == version)
        stmt = self.table.select().where(self.table.c.tenant_id == tenant_id, condition)
        found = self._load(list(execute(self._conn, stmt).all()))
        return found[0] if found else None

    def lock(self, release_id: uuid.UUID) -> None:
        """Hold the release's row until the transaction ends (FOR UPDATE; SQLite: no-op)."""
        stmt = select(self.table.c.id).where(self.table.c.id == release_id).with_for_update()
        execute(self._conn, stmt)

    def exists(self, tenant_id: uuid.UUID, name: str, version: str) -> bool:
        c = self.table.c
        stmt = select(
            exists().where(c.tenant_id == tenant_id, c.name == name, c.version == version)
        )
        return bool(execute(self._conn, stmt).scalar())

    def page(
        self,
        tenant_id: uuid.UUID,
        page: PageRequest,
        name: str | None = None,
        state: ReleaseState | None = None,
        query: str | None = None,
    ) -> Page[Release]:
        c = self.table.c
        stmt = self.table.select().where(c.tenant_id == tenant_id)
        if name is not None:
            stmt = stmt.where(c.name == name)
        if query:
            # a case-blind substring of the name or the version, or `name@version`
            needle = query.lower()
            wanted_name, at, wanted_version = needle.partition("@")
            if at:
                stmt = stmt.where(
                    func.lower(c.name).contains(wanted_name, autoescape=True),
                    func.lower(c.version).contains(wanted_version, autoescape=True),
                )
            else:
                stmt = stmt.where(
                    func.lower(c.name).contains(needle, autoescape=True)
                    | func.lower(c.version).contains(needle, autoescape=True)
                )
        if state is not None:
            stmt = stmt.where(self.table.c.state == state.value)
        rows, next_cursor = self._fetch_page(stmt, page)
        return Page(self._load(rows), next_cursor)

    def set_state(self, release: Release, state: ReleaseState, now: datetime) -> None:
        stmt = (
            update(self.table)
            .where(self.table.c.id == release.id)
            .values(state=state.value, updated_at=now)
        )
        execute(self._conn, stmt)


class SqlAuditRepository(SqlRepository[AuditEvent]):
    """Audit events; each one is also noted for the tenant's hash chain (linked at commit)."""

    table = t.audit_events

    def __init__(self, conn: Connection, chain: PendingChain) -> None:
        super().__init__(conn)
        self._chain = chain

    def add(self, entity: AuditEvent) -> None:
        super().add(entity)
        self._chain.note(
            entity.tenant_id, ChainEntryType.AUDIT_EVENT, entity.id, audit_event_digest(entity)
        )

    def _to_domain(self, row: Row[Any]) -> AuditEvent:
        return AuditEvent(**mapping(row))

    def _to_row(self, entity: AuditEvent) -> dict[str, Any]:
        return asdict(entity)

    def page(
        self,
        tenant_id: uuid.UUID,
        page: PageRequest,
        resource_type: str | None = None,
        action: str | None = None,
    ) -> Page[AuditEvent]:
        stmt = self.table.select().where(self.table.c.tenant_id == tenant_id)
        if resource_type is not None:
            stmt = stmt.where(self.table.c.resource_type == resource_type)
        if action is not None:
            stmt = stmt.where(self.table.c.action == action)
        return self._paged(stmt, page)


class SqlWebSessionRepository:
    """Browser sessions of the web UI; each is bound to the API token it signed in with."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, values: dict[str, Any]) -> None:
        execute(self._conn, insert(t.web_sessions).values(values))

    def get(self, id_hash: str) -> dict[str, Any] | None:
        s = t.web_sessions
        row = execute(self._conn, select(s).where(s.c.id_hash == id_hash)).first()
        return None if row is None else dict(mapping(row))

    def delete(self, id_hash: str) -> None:
        s = t.web_sessions
        execute(self._conn, delete(s).where(s.c.id_hash == id_hash))

    def purge_expired(self, now: datetime, limit: int) -> int:
        s = t.web_sessions
        expired = select(s.c.id_hash).where(s.c.expires_at < now).limit(limit).scalar_subquery()
        return execute(self._conn, delete(s).where(s.c.id_hash.in_(expired))).rowcount or 0
