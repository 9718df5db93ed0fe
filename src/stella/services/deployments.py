"""Deployment jobs: rendering immutable tasks, fanning out over targets, running agentless jobs.

A deployment of a release to an environment is a *batch* of jobs, one per active target. Each
job's task (containers pinned by digest, the compose lockfile, the sticker) is rendered once,
stored content-addressed and never changes; agents fetch it, the worker runs SSH jobs itself.
The batch releases at most `parallelism` jobs at a time and stops releasing more once more than
`max_failures` targets failed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from opentelemetry import propagate

from stella.domain.components import Component
from stella.domain.deployments import (
    CAPABILITY_FOR_TARGET,
    LABEL_COMPONENT,
    LABEL_DEPLOYMENT,
    LABEL_DIGEST,
    LABEL_PROMOTION,
    LABEL_RELEASE,
    LABEL_TARGET,
    LABEL_VERSION,
    ContainerSpec,
    DeploymentJob,
    DeploymentOutcome,
    DeploymentPolicy,
    DeploymentTask,
    HealthProbe,
    JobKind,
    JobState,
)
from stella.domain.durations import parse_duration
from stella.domain.environments import Environment
from stella.domain.errors import Conflict, NotFound
from stella.domain.evidence import PacketKind, packet_id
from stella.domain.ids import new_id
from stella.domain.releases import Release
from stella.domain.targets import Target, TargetState
from stella.services.auth import hash_token
from stella.services.deployment_ports import ExecutorFactory
from stella.services.ports import Clock, SecretResolver, UnitOfWork, UnitOfWorkFactory
from stella.services.targets import environment_targets

TASK_MEDIA_TYPE = "application/vnd.stella.deployment-task.v1+json"
LOCKFILE_MEDIA_TYPE = "application/vnd.stella.compose-lockfile.v1+yaml"
STICKER_SCHEMA = "stella.sticker/v1"
WORKER_LEASE = timedelta(seconds=30)
MAX_LOG_CHARS = 256_000

LockfileRenderer = Callable[[str, list[ContainerSpec]], str]


@dataclass(frozen=True)
class DeploymentServices:
    uow: UnitOfWorkFactory
    clock: Clock
    render_lockfile: LockfileRenderer
    agentless: ExecutorFactory | None  # runs ssh_remote jobs in the worker
    resolve_secret: SecretResolver
    worker_id: str = "worker"


def sha256(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --- wake-ups ----------------------------------------------------------------------------


class JobEvents:
    """Process-wide wake-ups about deployment jobs, so that waiters need not sleep a fixed
    interval: agents' long polls wait on `environment_key` (a job became pending there), deploy
    steps on `batch_key` (a job of the batch ended).

    A notification is a hint, never a message: waiters always re-read the database and still
    poll at a fallback interval, so a lost notification (another process on SQLite, a dropped
    LISTEN connection) only costs latency. Senders call `announce` inside the transaction
    (PostgreSQL delivers its NOTIFY to every listening process on commit) and `notify` after
    the commit (this process's waiters, with or without PostgreSQL).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # one counter for every key, not one per key: per-key counters would keep an entry for
        # every batch and environment ever announced (all processes', through LISTEN). A
        # waiter woken by another key's event only looks at the database once more.
        self._generation = 0
        self._waiters: dict[str, set[Callable[[], None]]] = {}
        self.listening: set[str] = set()  # database URLs a LISTEN thread serves (adapters)

    def generation(self, key: str) -> int:
        """Take this before looking at the database, then wait for a later one."""
        with self._lock:
            return self._generation

    def notify(self, *keys: str) -> None:
        with self._lock:
            self._generation += 1
            woken: list[Callable[[], None]] = []
            for key in keys:
                woken.extend(self._waiters.pop(key, ()))
        for wake in woken:
            wake()

    def _register(self, key: str, seen: int, wake: Callable[[], None]) -> bool:
        """False when `key` moved past `seen` already (no need to wait)."""
        with self._lock:
            if self._generation != seen:
                return False
            self._waiters.setdefault(key, set()).add(wake)
            return True

    def _unregister(self, key: str, wake: Callable[[], None]) -> None:
        with self._lock:
            waiting = self._waiters.get(key)
            if waiting is not None:
                waiting.discard(wake)
                if not waiting:
                    del self._waiters[key]

    def wait(
        self, key: str, seen: int, timeout: float, also: threading.Event | None = None
    ) -> bool:
        """Block until `key` moves past generation `seen`, `also` is set, or `timeout`.
        True when woken by a notification."""
        woken = threading.Event()
        if not self._register(key, seen, woken.set):
            return True
        try:
            if also is None:
                woken.wait(timeout)
            else:  # threading cannot wait for two events: look at `also` every 50 ms
                deadline = time.monotonic() + timeout
                while not (woken.is_set() or also.is_set()):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    woken.wait(min(0.05, remaining))
        finally:
            self._unregister(key, woken.set)
        return woken.is_set()

    async def wait_async(self, key: str, seen: int, seconds: float) -> bool:
        """`wait` for a coroutine (the agent listener's long polls): no thread is held."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(event.set)

        if not self._register(key, seen, wake):
            return True
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            return False
        finally:
            self._unregister(key, wake)
        return True


JOB_EVENTS = JobEvents()


def environment_key(environment_id: uuid.UUID) -> str:
    """Notified when an agent job may have become claimable in the environment."""
    return f"env:{environment_id}"


def batch_key(batch: str) -> str:
    """Notified when a job of the batch ended."""
    return f"batch:{batch}"


def announce(uow: UnitOfWork, keys: set[str]) -> None:
    """Tell other processes, on commit (PostgreSQL NOTIFY; nothing on SQLite). Call `JOB_EVENTS.
    notify(*keys)` after the commit for this process."""
    if keys:
        uow.jobs.announce(sorted(keys))


# --- rendering ---------------------------------------------------------------------------


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def interpolate(value: str, variables: dict[str, str]) -> str:
    """`${NAME}` → the container's plain (non-secret) environment value, as Compose does."""
    return _VARIABLE.sub(lambda m: variables.get(m.group(1), m.group(0)), value)


def _plain(environment: dict[str, str]) -> dict[str, str]:
    """Values that are not secret references (those stay unresolved until the executor)."""
    return {k: v for k, v in environment.items() if not v.startswith(("env:", "file:"))}


def _health(runtime: dict[str, Any], variables: dict[str, str]) -> HealthProbe | None:
    check = runtime.get("healthcheck")
    if not isinstance(check, dict):
        return None
    interval = check.get("interval", "1s")
    seconds = parse_duration(interval).total_seconds() if isinstance(interval, str) else 1.0
    retries = int(check.get("retries", 30))
    test = check.get("test")
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    http = check.get("http")
    return HealthProbe(
        http=interpolate(http, variables) if isinstance(http, str) else None,
        test=[str(t) for t in test] if isinstance(test, list) else None,
        interval_seconds=max(0.05, seconds),
        retries=max(1, retries),
    )


def container_spec(
    component: Component,
    digest: str,
    target: Target,
    release: Release,
    job_id: uuid.UUID,
    promotion_id: uuid.UUID | None,
) -> ContainerSpec:
    """A component of a release as one container on `target`, labelled with the sticker."""
    runtime = component.runtime
    prefix = str(target.connection.get("container_name_prefix", ""))
    environment = {str(k): str(v) for k, v in dict(runtime.get("environment", {})).items()}
    # per-target values (a port, a region) override the component's
    environment |= {
        str(k): str(v) for k, v in dict(target.connection.get("environment", {})).items()
    }
    variables = _plain(environment)
    command = runtime.get("command")
    if isinstance(command, list):
        command = [interpolate(str(part), variables) for part in command]
    elif isinstance(command, str):
        command = interpolate(command, variables)
    return ContainerSpec(
        component=component.name,
        name=f"{prefix}{component.name}",
        repository=component.repository,
        digest=digest,
        command=command,
        environment=environment,
        ports=[str(p) for p in runtime.get("ports", [])],
        volumes=[str(v) for v in runtime.get("volumes", [])],
        network_mode=str(runtime.get("network_mode", "host")),
        restart=runtime.get("restart"),
        init=bool(runtime.get("init", True)),
        health=_health(runtime, variables),
        labels={
            LABEL_RELEASE: release.name,
            LABEL_VERSION: release.version,
            LABEL_COMPONENT: component.name,
            LABEL_DIGEST: digest,
            LABEL_DEPLOYMENT: str(job_id),
            LABEL_PROMOTION: str(promotion_id or ""),
            LABEL_TARGET: str(target.id),
        },
    )


def compose_project_name(target_name: str) -> str:
    """Compose accepts lowercase letters, digits, `-` and `_` in project names."""
    cleaned = re.sub(r"[^a-z0-9_-]+", "-", target_name.lower()).strip("-_")
    return f"stella-{cleaned or 'target'}"


def render_task(
    render_lockfile: LockfileRenderer,
    components: dict[str, Component],
    release: Release,
    environment: Environment,
    target: Target,
    job_id: uuid.UUID,
    kind: JobKind,
    promotion_id: uuid.UUID | None,
) -> DeploymentTask:
    """The immutable task for one job: every image pinned by digest, secrets as references."""
    specs = [
        container_spec(components[c.name], c.digest, target, release, job_id, promotion_id)
        for c in sorted(release.components, key=lambda c: c.name)
    ]
    project = str(target.connection.get("project") or compose_project_name(target.name))
    policy = environment.deployment
    sticker = {
        "schema": STICKER_SCHEMA,
        "release": release.name,
        "release_id": str(release.id),
        "version": release.version,
        "environment": environment.slug,
        "target": target.name,
        "target_id": str(target.id),
        "deployment": str(job_id),
        "kind": str(kind),
        "promotion": str(promotion_id) if promotion_id else None,
        # sealed when the job ends; its id is known now (deterministic)
        "evidence_packet": str(packet_id(PacketKind.DEPLOYMENT, job_id)),
        "components": {
            s.component: {"repository": s.repository, "digest": s.digest} for s in specs
        },
    }
    return DeploymentTask(
        job_id=str(job_id),
        kind=str(kind),
        target_id=str(target.id),
        target_name=target.name,
        target_type=str(target.type),
        release_id=str(release.id),
        release_name=release.name,
        release_version=release.version,
        promotion_id=str(promotion_id) if promotion_id else None,
        project=project,
        containers=specs,
        compose_lockfile=render_lockfile(project, specs),
        sticker_path=str(target.connection.get("sticker_path", policy.sticker_path)),
        sticker=sticker,
        connection={
            k: v for k, v in target.connection.items() if k not in {"project", "environment"}
        },
        timeout_seconds=policy.task_timeout_seconds,
    )


def task_to_json(task: DeploymentTask) -> dict[str, Any]:
    return asdict(task)


def task_from_json(data: dict[str, Any]) -> DeploymentTask:
    containers = []
    for c in data["containers"]:
        health = c.get("health")
        containers.append(
            ContainerSpec(**{**c, "health": HealthProbe(**health) if health else None})
        )
    return DeploymentTask(**{**data, "containers": containers})


# --- batches -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchStatus:
    jobs: list[DeploymentJob]
    done: bool
    failed: list[DeploymentJob]
    succeeded: list[DeploymentJob]
    released: int = 0  # queued jobs this call made pending

    @property
    def summary(self) -> str:
        parts = [f"{len(self.succeeded)}/{len(self.jobs)} target(s) deployed"]
        parts += [f"{j.target_name}: {j.error or j.state}" for j in self.failed]
        return "; ".join(parts)


def current_trace_context() -> dict[str, str] | None:
    """The caller's W3C trace context (`traceparent`, `tracestate`); None outside a trace."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    context = {k: v for k, v in carrier.items() if k in {"traceparent", "tracestate"} and v}
    return context if "traceparent" in context else None


def create_batch(
    uow: UnitOfWork,
    render_lockfile: LockfileRenderer,
    batch: str,
    release: Release,
    environment: Environment,
    kind: JobKind,
    promotion_id: uuid.UUID | None,
    run_id: uuid.UUID | None,
    correlation_id: str | None,
    now: datetime,
    targets: list[Target] | None = None,
    releases_by_target: dict[uuid.UUID, Release] | None = None,
) -> list[DeploymentJob]:
    """One job per active target of the environment (or per given target), in the unit of work.

    `releases_by_target` (rollbacks) deploys a different release to each target.
    """
    if targets is None:
        targets = [
            t
            for t in environment_targets(uow, release.tenant_id, environment.id)
            if t.state is TargetState.ACTIVE
        ]
    policy = environment.deployment
    trace_context = current_trace_context()  # the executor's span continues this trace
    jobs = []
    for index, target in enumerate(sorted(targets, key=lambda t: t.name)):
        target_release = (releases_by_target or {}).get(target.id, release)
        components = uow.components.by_names(
            release.tenant_id, [c.name for c in target_release.components]
        )
        job_id = new_id()
        capability = CAPABILITY_FOR_TARGET.get(str(target.type), "ssh")
        agentless = str(target.type) == "ssh_remote" and target.agent_id is None
        supported = str(target.type) in {"docker_host", "compose_host", "ssh_remote"}
        missing = [c.name for c in target_release.components if c.name not in components]
        error = None
        if not supported:
            error = f"target type {target.type} has no executor yet"
        elif missing:
            error = f"component {missing[0]} no longer exists"
        task = None
        artifacts: dict[str, str] = {}
        if error is None:
            task = render_task(
                render_lockfile,
                components,
                target_release,
                environment,
                target,
                job_id,
                kind,
                promotion_id,
            )
            task_text = canonical(task_to_json(task))
            artifacts = {
                "task.json": sha256(task_text),
                "docker-compose.lock.yml": sha256(task.compose_lockfile),
            }
            uow.artifacts.put(
                release.tenant_id, artifacts["task.json"], TASK_MEDIA_TYPE, task_text, now
            )
            uow.artifacts.put(
                release.tenant_id,
                artifacts["docker-compose.lock.yml"],
                LOCKFILE_MEDIA_TYPE,
                task.compose_lockfile,
                now,
            )
        state = (
            JobState.FAILED
            if error
            else (JobState.PENDING if index < policy.parallelism else JobState.QUEUED)
        )
        job = DeploymentJob(
            id=job_id,
            tenant_id=release.tenant_id,
            environment_id=environment.id,
            target_id=target.id,
            target_name=target.name,
            release_id=target_release.id,
            release_version=target_release.version,
            promotion_id=promotion_id,
            run_id=run_id,
            batch=batch,
            kind=kind,
            state=state,
            executor="worker" if agentless else "agent",
            capability=capability,
            pinned_agent_id=target.agent_id,
            agent_id=None,
            attempt=1,
            task_digest=artifacts.get("task.json", ""),
            artifacts=artifacts,
            task_token_hash=None,
            lease_expires_at=None,
            timeout_seconds=policy.task_timeout_seconds,
            error=error,
            log="",
            result=None,
            correlation_id=correlation_id,
            created_at=now,
            updated_at=now,
            started_at=None,
            finished_at=now if error else None,
            trace_context=trace_context,
        )
        uow.jobs.add(job)
        jobs.append(job)
    if any(j.state is JobState.PENDING and j.executor == "agent" for j in jobs):
        announce(uow, {environment_key(environment.id)})  # the caller notifies after commit
    return jobs


def advance_batch(
    uow: UnitOfWork, batch: str, policy: DeploymentPolicy, now: datetime
) -> BatchStatus:
    """Release queued jobs into free slots; stop releasing once too many targets failed."""
    jobs = uow.jobs.batch(batch)
    failed = [j for j in jobs if j.state in {JobState.FAILED, JobState.CANCELLED}]
    over = len(failed) > policy.max_failures
    active = sum(1 for j in jobs if j.state in {JobState.PENDING, JobState.RUNNING})
    released = 0
    for job in jobs:
        if job.state is JobState.QUEUED:
            if over:
                uow.jobs.set(
                    job.id,
                    state=JobState.CANCELLED,
                    finished_at=now,
                    updated_at=now,
                    error="not started: too many targets failed",
                )
            elif active < policy.parallelism:
                uow.jobs.set(job.id, state=JobState.PENDING, updated_at=now)
                active += 1
                released += 1
    if released:
        environment_id = jobs[0].environment_id
        announce(uow, {environment_key(environment_id)})
    jobs = uow.jobs.batch(batch)
    failed = [j for j in jobs if j.state in {JobState.FAILED, JobState.CANCELLED}]
    succeeded = [j for j in jobs if j.state is JobState.SUCCEEDED]
    unfinished = [j for j in jobs if not j.state.is_terminal]
    # once over the threshold, wait only for jobs already running (never leave one half-done)
    done = not unfinished or (
        len(failed) > policy.max_failures
        and all(j.state is not JobState.RUNNING for j in unfinished)
    )
    if done:
        for job in unfinished:
            uow.jobs.set(
                job.id,
                state=JobState.CANCELLED,
                finished_at=now,
                updated_at=now,
                error="not started: too many targets failed",
            )
        jobs = uow.jobs.batch(batch)
        failed = [j for j in jobs if j.state in {JobState.FAILED, JobState.CANCELLED}]
    return BatchStatus(jobs, done, failed, succeeded, released)


def cancel_batch(uow: UnitOfWork, batch: str, reason: str, now: datetime) -> None:
    """Cancel jobs not yet running (running ones finish: never leave a target half-done)."""
    for job in uow.jobs.batch(batch):
        if job.state in {JobState.QUEUED, JobState.PENDING}:
            uow.jobs.set(
                job.id, state=JobState.CANCELLED, error=reason, finished_at=now, updated_at=now
            )


# --- running tasks -----------------------------------------------------------------------


def load_task(uow: UnitOfWork, job: DeploymentJob) -> DeploymentTask:
    stored = uow.artifacts.get(job.tenant_id, job.task_digest)
    if stored is None:
        msg = f"task artifact {job.task_digest} of job {job.id} is missing"
        raise LookupError(msg)
    return task_from_json(json.loads(stored[1]))


def finish_job(
    uow: UnitOfWork, job: DeploymentJob, outcome: DeploymentOutcome, now: datetime
) -> None:
    """Record an outcome; the job's task credential ends with it."""
    log = "\n".join(filter(None, [job.log, *outcome.log]))[-MAX_LOG_CHARS:]
    uow.jobs.set(
        job.id,
        state=JobState.SUCCEEDED if outcome.succeeded else JobState.FAILED,
        error=None if outcome.succeeded else (outcome.error or "failed")[:4000],
        log=log,
        result=outcome.to_json(),
        finished_at=now,
        updated_at=now,
        task_token_hash=None,
        lease_expires_at=None,
    )


def claim_for_agent(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    tenant_id: uuid.UUID,
    environment_id: uuid.UUID,
    agent_id: uuid.UUID,
    capabilities: list[str],
    task_token: str,
) -> tuple[DeploymentJob, DeploymentTask] | None:
    """Give the oldest matching pending job to an agent with a credential scoped to it."""
    with uow_factory(read_only=True) as uow:
        # most polls find nothing: look without taking the (SQLite) write lock first
        if uow.jobs.claim_next(tenant_id, environment_id, capabilities, "agent", agent_id) is None:
            return None
    now = clock()
    with uow_factory() as uow:
        job = uow.jobs.claim_next(tenant_id, environment_id, capabilities, "agent", agent_id)
        if job is None:
            return None
        task = load_task(uow, job)
        uow.jobs.set(
            job.id,
            state=JobState.RUNNING,
            agent_id=agent_id,
            task_token_hash=hash_token(task_token),
            lease_expires_at=now + timedelta(seconds=job.timeout_seconds),
            started_at=job.started_at or now,
            updated_at=now,
        )
        uow.commit()
    return job, task


def run_agentless(services: DeploymentServices, batch: str, cancelled: threading.Event) -> int:
    """Run the batch's pending SSH jobs in this worker, one after another; returns how many."""
    ran = 0
    while not cancelled.is_set():
        now = services.clock()
        with services.uow() as uow:
            pending = [
                j
                for j in uow.jobs.batch(batch)
                if j.executor == "worker" and j.state is JobState.PENDING
            ]
            if not pending:
                return ran
            job = pending[0]
            uow.jobs.set(
                job.id,
                state=JobState.RUNNING,
                agent_id=None,
                started_at=now,
                updated_at=now,
                lease_expires_at=now + WORKER_LEASE,
                log=f"{now.isoformat()} executed by {services.worker_id} over SSH",
            )
            task = load_task(uow, job)
            uow.commit()
        outcome = _execute_with_lease(services, job, task, cancelled)
        with services.uow() as uow:
            current = uow.jobs.by_id(job.id, lock=True)
            if current is not None and current.state is JobState.RUNNING:
                finish_job(uow, current, outcome, services.clock())
                uow.commit()
        ran += 1
    return ran


def _execute_with_lease(
    services: DeploymentServices,
    job: DeploymentJob,
    task: DeploymentTask,
    cancelled: threading.Event,
) -> DeploymentOutcome:
    """Run an agentless task while renewing the job's lease, so a dead worker is noticed.

    The executor gets its own stop signal: set when the step is cancelled or the task times out
    (a timeout must not look like a cancellation to the step)."""
    if services.agentless is None:
        return DeploymentOutcome(False, "this worker cannot run SSH deployments", [], {}, {})
    lines: list[str] = []
    result: list[DeploymentOutcome] = []
    abort = threading.Event()

    def run() -> None:
        try:
            executor = services.agentless(task.connection)  # type: ignore[misc]
            result.append(executor.deploy(task, lines.append, abort, services.resolve_secret))
        except Exception as exc:  # noqa: BLE001 - any executor failure is the job's failure
            result.append(DeploymentOutcome(False, f"{type(exc).__name__}: {exc}", lines, {}, {}))

    thread = threading.Thread(target=run, name=f"deploy-{job.id}", daemon=True)
    thread.start()
    deadline = time.monotonic() + task.timeout_seconds
    while thread.is_alive() and time.monotonic() < deadline:
        thread.join(timeout=WORKER_LEASE.total_seconds() / 3 if not cancelled.is_set() else 1)
        if cancelled.is_set():
            abort.set()  # the executor stops at its next safe point and restores what it changed
        with services.uow() as uow:
            uow.jobs.set(job.id, lease_expires_at=services.clock() + WORKER_LEASE)
            uow.commit()
    if thread.is_alive():
        abort.set()
        thread.join(timeout=10)
        return DeploymentOutcome(False, f"timed out after {task.timeout_seconds:g}s", lines, {}, {})
    return result[0]


def requeue_overdue_worker_jobs(uow_factory: UnitOfWorkFactory, clock: Clock) -> int:
    """Agentless jobs of a worker that died go back to pending for the next worker."""
    now = clock()
    with uow_factory() as uow:
        overdue = uow.jobs.overdue_worker_jobs(now)
        for job in overdue:
            uow.jobs.set(
                job.id,
                state=JobState.PENDING,
                lease_expires_at=None,
                attempt=job.attempt + 1,
                updated_at=now,
                log=f"{job.log}\n{now.isoformat()} the executing worker stopped; requeued",
            )
        keys = {batch_key(job.batch) for job in overdue}
        announce(uow, keys)
        uow.commit()
    JOB_EVENTS.notify(*keys)
    return len(overdue)


def report_result(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    agent_id: uuid.UUID,
    job_id: uuid.UUID,
    task_token: str,
    outcome: DeploymentOutcome,
) -> DeploymentJob:
    """An agent reports how a job ended; only with the job's own, still valid credential."""
    now = clock()
    with uow_factory() as uow:
        job = uow.jobs.by_id(job_id, lock=True)
        if job is None or job.agent_id != agent_id:
            msg = f"deployment job {job_id} is not assigned to this agent"
            raise NotFound(msg)
        if job.state is not JobState.RUNNING or job.task_token_hash != hash_token(task_token):
            msg = (
                f"deployment job {job_id} is {job.state}; its task credential is no longer "
                "valid (the job was reassigned, cancelled or timed out)"
            )
            raise Conflict(msg)
        if job.lease_expires_at is not None and job.lease_expires_at < now:
            msg = f"deployment job {job_id} timed out before its result arrived"
            uow.jobs.set(
                job.id,
                state=JobState.FAILED,
                error=msg,
                finished_at=now,
                updated_at=now,
                task_token_hash=None,
            )
            announce(uow, {batch_key(job.batch)})
            uow.commit()
            JOB_EVENTS.notify(batch_key(job.batch))
            raise Conflict(msg)
        finish_job(uow, job, outcome, now)
        announce(uow, {batch_key(job.batch)})
        uow.commit()
        done = uow.jobs.by_id(job_id)
    JOB_EVENTS.notify(batch_key(job.batch))  # the deploy step waiting for the batch
    assert done is not None  # noqa: S101 - it was just updated in the same transaction
    return done


def get_job(uow_factory: UnitOfWorkFactory, tenant_id: uuid.UUID, ref: str) -> DeploymentJob:
    with uow_factory(read_only=True) as uow:
        job = uow.jobs.get(tenant_id, ref)
    if job is None:
        msg = f"deployment '{ref}' not found"
        raise NotFound(msg)
    return job


def get_artifact(
    uow_factory: UnitOfWorkFactory, tenant_id: uuid.UUID, job_ref: str, name: str
) -> tuple[str, str, str]:
    """(digest, media type, content) of one of a job's artifacts."""
    job = get_job(uow_factory, tenant_id, job_ref)
    digest = job.artifacts.get(name)
    if digest is None:
        known = ", ".join(sorted(job.artifacts)) or "none"
        msg = f"deployment {job.id} has no artifact '{name}' (artifacts: {known})"
        raise NotFound(msg)
    with uow_factory(read_only=True) as uow:
        stored = uow.artifacts.get(tenant_id, digest)
    if stored is None:
        msg = f"artifact {digest} is missing"
        raise NotFound(msg)
    return digest, stored[0], stored[1]
