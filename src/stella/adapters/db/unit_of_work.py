"""The SQLAlchemy unit of work: one connection, one transaction, every repository."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from stella.adapters.db.deployment_repositories import (
    SqlAgentRepository,
    SqlArtifactStore,
    SqlDeploymentJobRepository,
    SqlJoinTokenRepository,
    SqlObservationRepository,
)
from stella.adapters.db.engine import READ_ONLY_OPTION
from stella.adapters.db.evidence_repositories import (
    PendingChain,
    SqlAttachmentRepository,
    SqlAuditChainRepository,
    SqlEvidenceRepository,
    SqlSigningKeyRepository,
)
from stella.adapters.db.promotion_repositories import (
    SqlPolicyRepository,
    SqlPromotionRepository,
    SqlVerdictRepository,
)
from stella.adapters.db.repositories import (
    SqlAuditRepository,
    SqlComponentRepository,
    SqlEnvironmentRepository,
    SqlIdempotencyRepository,
    SqlIntegrationRepository,
    SqlReleaseRepository,
    SqlTargetRepository,
    SqlTenantRepository,
    SqlTokenRepository,
    SqlUserRepository,
    SqlWebSessionRepository,
)
from stella.adapters.db.security_repositories import (
    SqlAdvisoryMatchRepository,
    SqlAdvisoryRepository,
    SqlSbomRepository,
    SqlSecurityVerdictRepository,
    SqlVexRepository,
    SqlWaiverRepository,
)
from stella.adapters.db.workflow_repositories import SqlRunRepository, SqlWorkflowRepository
from stella.domain.errors import StorageUnavailable


class SqlAlchemyUnitOfWork:
    """Opens a transaction on enter; rolls back on exit unless `commit()` was called."""

    def __init__(self, engine: Engine, read_only: bool = False) -> None:
        self._engine = engine
        self._read_only = read_only
        self._conn: Connection | None = None

    def __enter__(self) -> SqlAlchemyUnitOfWork:
        try:
            conn = self._engine.connect()
        except OperationalError as exc:
            msg = "the database is unavailable; retry shortly"
            raise StorageUnavailable(msg) from exc
        if self._read_only:
            conn = conn.execution_options(**{READ_ONLY_OPTION: True})
        conn.begin()
        self._conn = conn
        self.tenants = SqlTenantRepository(conn)
        self.users = SqlUserRepository(conn)
        self.tokens = SqlTokenRepository(conn)
        self.idempotency = SqlIdempotencyRepository(conn)
        self.environments = SqlEnvironmentRepository(conn)
        self.targets = SqlTargetRepository(conn)
        self.components = SqlComponentRepository(conn)
        self.integrations = SqlIntegrationRepository(conn)
        self.releases = SqlReleaseRepository(conn)
        self._chain = PendingChain(conn)
        self.audit = SqlAuditRepository(conn, self._chain)
        self.evidence = SqlEvidenceRepository(conn, self._chain)
        self.attachments = SqlAttachmentRepository(conn)
        self.chain = SqlAuditChainRepository(conn)
        self.signing_keys = SqlSigningKeyRepository(conn)
        self.web_sessions = SqlWebSessionRepository(conn)
        self.sboms = SqlSbomRepository(conn)
        self.vex = SqlVexRepository(conn)
        self.advisories = SqlAdvisoryRepository(conn)
        self.advisory_matches = SqlAdvisoryMatchRepository(conn)
        self.waivers = SqlWaiverRepository(conn)
        self.security_verdicts = SqlSecurityVerdictRepository(conn)
        self.workflows = SqlWorkflowRepository(conn)
        self.runs = SqlRunRepository(conn)
        self.promotions = SqlPromotionRepository(conn)
        self.policies = SqlPolicyRepository(conn)
        self.verdicts = SqlVerdictRepository(conn)
        self.agents = SqlAgentRepository(conn)
        self.join_tokens = SqlJoinTokenRepository(conn)
        self.jobs = SqlDeploymentJobRepository(conn)
        self.artifacts = SqlArtifactStore(conn)
        self.observations = SqlObservationRepository(conn)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._conn is not None  # noqa: S101 - __enter__ always ran first
        try:
            self._chain.discard()
            if self._conn.in_transaction():
                self._conn.rollback()
        finally:
            self._conn.close()
            self._conn = None

    def commit(self) -> None:
        assert self._conn is not None  # noqa: S101 - only inside `with`
        try:
            # the chain head is locked last and held only until this commit (no deadlocks)
            self._chain.link()
            self._conn.commit()
        except OperationalError as exc:
            msg = "the database is unavailable; the change was not saved, retry shortly"
            raise StorageUnavailable(msg) from exc
