"""Deployments: jobs per target, the task an executor runs, stickers and drift.

A deployment job deploys one release to one target. The orchestrator renders a `DeploymentTask`
(pinned by digest, secrets as references only) and hands it to an agent, or runs it itself over
SSH; the executor reports a `DeploymentOutcome`. Afterwards the target carries a version sticker
(container labels and a JSON file) that drift detection compares with what actually runs.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stella.domain.errors import Conflict

LABEL_RELEASE = "org.stellaops.release"
LABEL_VERSION = "org.stellaops.version"
LABEL_COMPONENT = "org.stellaops.component"
LABEL_DIGEST = "org.stellaops.digest"
LABEL_DEPLOYMENT = "org.stellaops.deployment"
LABEL_PROMOTION = "org.stellaops.promotion"
LABEL_TARGET = "org.stellaops.target"

DEFAULT_STICKER_PATH = "/var/lib/stella/sticker.json"


@dataclass(frozen=True, slots=True)
class DeploymentPolicy:
    """How an environment is deployed to (the environment's `deployment` settings)."""

    deploy_on_approval: bool = True  # approved promotions deploy to the environment's targets
    parallelism: int = 5  # targets deployed at once
    max_failures: int = 0  # failed targets tolerated before the deployment fails
    auto_rollback: bool = False  # on failure, redeploy the previous release to touched targets
    block_on_drift: bool = False  # the health_check gate fails while a target has drifted
    task_timeout_seconds: float = 600.0
    sticker_path: str = DEFAULT_STICKER_PATH

    def to_json(self) -> dict[str, Any]:
        return {
            "deploy_on_approval": self.deploy_on_approval,
            "parallelism": self.parallelism,
            "max_failures": self.max_failures,
            "auto_rollback": self.auto_rollback,
            "block_on_drift": self.block_on_drift,
            "task_timeout_seconds": self.task_timeout_seconds,
            "sticker_path": self.sticker_path,
        }

    @staticmethod
    def from_json(data: dict[str, Any] | None) -> DeploymentPolicy:
        if not data:
            return DeploymentPolicy()
        known = DeploymentPolicy().to_json()
        return DeploymentPolicy(**{k: v for k, v in data.items() if k in known})


class JobKind(enum.StrEnum):
    DEPLOY = "deploy"
    ROLLBACK = "rollback"


class JobState(enum.StrEnum):
    """queued (waiting for a fan-out slot) → pending (claimable) → running → succeeded|failed.

    A running job whose agent goes offline goes back to pending (reassigned) or fails.
    """

    QUEUED = "queued"
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}


_JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.PENDING, JobState.CANCELLED}),
    JobState.PENDING: frozenset({JobState.RUNNING, JobState.FAILED, JobState.CANCELLED}),
    JobState.RUNNING: frozenset(
        {JobState.SUCCEEDED, JobState.FAILED, JobState.PENDING, JobState.CANCELLED}
    ),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


def check_job_transition(current: JobState, new: JobState) -> None:
    if new not in _JOB_TRANSITIONS[current]:
        msg = f"deployment job is {current}; it cannot become {new}"
        raise Conflict(msg)


class AgentState(enum.StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    DEGRADED = "degraded"
    REVOKED = "revoked"


# Which agent capability a target type needs
CAPABILITY_FOR_TARGET = {"docker_host": "docker", "compose_host": "compose"}
KNOWN_CAPABILITIES = frozenset({"docker", "compose", "ssh"})


@dataclass(frozen=True, slots=True)
class Agent:
    id: uuid.UUID
    tenant_id: uuid.UUID
    environment_id: uuid.UUID
    name: str
    version: str
    capabilities: list[str]
    labels: dict[str, str]
    state: AgentState
    last_heartbeat: datetime | None
    cert_serial: str
    cert_fingerprint: str
    health: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class HealthProbe:
    """How to tell a container is healthy: an HTTP GET answering 2xx/3xx, or Docker's own
    healthcheck (`test`), or neither (running is enough)."""

    http: str | None = None
    test: list[str] | None = None
    interval_seconds: float = 1.0
    retries: int = 30


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """One container of a release on a target, pinned by digest."""

    component: str
    name: str  # container name on the target
    repository: str  # 127.0.0.1:5000/app/api
    digest: str  # sha256:…
    command: list[str] | str | None = None
    # values, or secret references (`env:NAME`, `file:/path`) resolved by the executor just in time
    environment: dict[str, str] = field(default_factory=dict)
    ports: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    network_mode: str = "host"
    restart: str | None = None
    init: bool = True
    health: HealthProbe | None = None
    labels: dict[str, str] = field(default_factory=dict)  # the sticker labels among others

    @property
    def image(self) -> str:
        return f"{self.repository}@{self.digest}"


@dataclass(frozen=True, slots=True)
class DeploymentTask:
    """Everything an executor needs for one job; immutable and content-addressed."""

    job_id: str
    kind: str  # deploy | rollback
    target_id: str
    target_name: str
    target_type: str  # docker_host | compose_host | ssh_remote
    release_id: str
    release_name: str
    release_version: str
    promotion_id: str | None
    project: str  # compose project name / container name prefix scope
    containers: list[ContainerSpec]
    compose_lockfile: str  # docker-compose.yml text, every image as repo@sha256:…
    sticker_path: str
    sticker: dict[str, Any]  # the sticker JSON body written after success
    connection: dict[str, Any] = field(default_factory=dict)  # ssh: host, port, user, …
    timeout_seconds: float = 300.0


@dataclass(frozen=True, slots=True)
class ObservedContainer:
    """What a target actually runs (inventory), as reported by an agent or read over SSH."""

    name: str
    image: str  # the reference the container was created from
    digests: list[str]  # repo@sha256:… of its image (RepoDigests)
    state: str  # running | exited | …
    labels: dict[str, str]

    def digest_for(self, repository: str) -> str | None:
        for item in self.digests:
            repo, _, digest = item.partition("@")
            if repo == repository:
                return digest
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "image": self.image,
            "digests": list(self.digests),
            "state": self.state,
            "labels": dict(self.labels),
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> ObservedContainer:
        return ObservedContainer(
            name=str(data.get("name", "")),
            image=str(data.get("image", "")),
            digests=[str(d) for d in data.get("digests", [])],
            state=str(data.get("state", "")),
            labels={str(k): str(v) for k, v in dict(data.get("labels", {})).items()},
        )


@dataclass(frozen=True, slots=True)
class DeploymentOutcome:
    """What an executor reports for one job."""

    succeeded: bool
    error: str | None
    log: list[str]
    deployed: dict[str, str]  # component -> verified digest
    timings: dict[str, float]  # phase -> seconds (pull, verify, start, health, total)

    def to_json(self) -> dict[str, Any]:
        return {
            "succeeded": self.succeeded,
            "error": self.error,
            "log": list(self.log),
            "deployed": dict(self.deployed),
            "timings": dict(self.timings),
        }


@dataclass(frozen=True, slots=True)
class DriftFinding:
    kind: str  # changed_digest | missing | stopped | extra
    component: str | None
    container: str
    expected: str | None
    actual: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "component": self.component,
            "container": self.container,
            "expected": self.expected,
            "actual": self.actual,
        }


def detect_drift(
    expected: list[ContainerSpec], observed: list[ObservedContainer], target_id: str
) -> list[DriftFinding]:
    """Compare the last deployment's containers with what runs on the target.

    A container is matched by name; its image digest must equal the deployed digest and it
    must be running. Containers labelled for this target that no deployment expects are extra.
    """
    by_name = {c.name: c for c in observed}
    findings: list[DriftFinding] = []
    for spec in expected:
        seen = by_name.get(spec.name)
        if seen is None:
            findings.append(DriftFinding("missing", spec.component, spec.name, spec.digest, None))
            continue
        actual = seen.digest_for(spec.repository)
        if actual != spec.digest:
            findings.append(
                DriftFinding(
                    "changed_digest",
                    spec.component,
                    spec.name,
                    spec.digest,
                    actual or seen.image,
                )
            )
        elif seen.state != "running":
            findings.append(
                DriftFinding("stopped", spec.component, spec.name, "running", seen.state)
            )
    names = {s.name for s in expected}
    for seen in observed:
        if seen.labels.get(LABEL_TARGET) == target_id and seen.name not in names:
            findings.append(
                DriftFinding("extra", seen.labels.get(LABEL_COMPONENT), seen.name, None, seen.image)
            )
    return findings


@dataclass(frozen=True, slots=True)
class DeploymentJob:
    """One release deployed (or rolled back) to one target."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    environment_id: uuid.UUID
    target_id: uuid.UUID
    target_name: str
    release_id: uuid.UUID
    release_version: str
    promotion_id: uuid.UUID | None
    run_id: uuid.UUID | None
    batch: str
    kind: JobKind
    state: JobState
    executor: str  # agent | worker
    capability: str
    pinned_agent_id: uuid.UUID | None
    agent_id: uuid.UUID | None
    attempt: int
    task_digest: str
    artifacts: dict[str, str]  # name -> sha256 digest of the stored artifact
    task_token_hash: str | None
    lease_expires_at: datetime | None
    timeout_seconds: float
    error: str | None
    log: str
    result: dict[str, Any] | None
    correlation_id: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    evidence_packet_id: uuid.UUID | None = None  # set once its evidence packet is sealed
    # the W3C trace context (traceparent, tracestate) the job was created in: its executor's
    # span continues that trace
    trace_context: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class JoinToken:
    id: uuid.UUID
    tenant_id: uuid.UUID
    environment_id: uuid.UUID
    capabilities: list[str]
    token_hash: str
    expires_at: datetime
    used_at: datetime | None
    agent_id: uuid.UUID | None
    created_by_name: str
    created_at: datetime
