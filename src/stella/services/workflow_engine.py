"""The workflow engine: claim work, record results, advance runs, roll back, recover.

Every function that changes a run receives a locked `RunTransaction`, so two workers can
never advance the same run at once. Scheduling decisions come from `stella.domain.workflow`;
this module applies them to stored state and writes the run's event log.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from threading import Lock
from typing import Any

from stella.domain.errors import NotFound
from stella.domain.expressions import (
    ExpressionError,
    evaluate,
    parse_expression,
    paths_in,
    render_template,
    template_expressions,
    truthy,
)
from stella.domain.workflow import (
    DEFAULT_TIMEOUT,
    OnFailure,
    RunState,
    StepSpec,
    StepState,
    WorkflowTemplate,
)
from stella.domain.workflow_runs import RunStep
from stella.services.ports import Clock, UnitOfWorkFactory
from stella.services.steps import StepRegistry, StepResult
from stella.services.workflow_ports import RunStore, RunTransaction


@dataclass(frozen=True, slots=True)
class ClaimedStep:
    """A step attempt (or a rollback) handed to this worker; it holds the lease."""

    run_id: uuid.UUID
    step_id: str
    step_type: str
    attempt: int
    idempotency_key: str
    config: dict[str, Any]
    inputs: dict[str, Any]
    timeout: timedelta
    rollback: bool = False


class TemplateCache:
    """Templates are immutable per version, so each is loaded once per process."""

    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow_factory = uow_factory
        self._templates: dict[uuid.UUID, WorkflowTemplate] = {}
        self._dependents: dict[uuid.UUID, dict[str, list[str]]] = {}
        self._lock = Lock()

    def get(self, workflow_id: uuid.UUID) -> WorkflowTemplate:
        with self._lock:
            cached = self._templates.get(workflow_id)
        if cached is not None:
            return cached
        with self._uow_factory() as uow:
            template = uow.workflows.by_id(workflow_id)
        if template is None:
            msg = f"workflow template {workflow_id} not found"
            raise NotFound(msg)
        dependents: dict[str, list[str]] = {s.id: [] for s in template.steps}
        for step in template.steps:
            for dep in dict.fromkeys(step.depends_on):
                dependents[dep].append(step.id)
        with self._lock:
            self._templates[workflow_id] = template
            self._dependents[workflow_id] = dependents
        return template

    def dependents(self, workflow_id: uuid.UUID, step_id: str) -> list[str]:
        self.get(workflow_id)
        return self._dependents[workflow_id][step_id]


def referenced_steps(spec: StepSpec) -> list[str]:
    """Step ids whose outputs or state the step's `when` and config read."""
    texts = [spec.when] if spec.when else []
    texts += _expressions(spec.config)
    ids: set[str] = set()
    for text in texts:
        for path in paths_in(parse_expression(text)):
            if path.parts[0] == "steps" and len(path.parts) > 1:
                ids.add(path.parts[1])
    return sorted(ids)


def _expressions(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [e for v in value.values() for e in _expressions(v)]
    if isinstance(value, list):
        return [e for v in value for e in _expressions(v)]
    return template_expressions(value) if isinstance(value, str) else []


def expression_context(tx: RunTransaction, spec: StepSpec) -> dict[str, Any]:
    steps = tx.steps(referenced_steps(spec))
    return {
        "inputs": tx.run.inputs,
        "steps": {sid: {"outputs": s.outputs, "state": str(s.state)} for sid, s in steps.items()},
    }


def step_timeout(spec: StepSpec, registry: StepRegistry) -> timedelta:
    if spec.timeout is not None:
        return spec.timeout
    try:
        return registry.provider(spec.type).characteristics.default_timeout
    except KeyError:
        return DEFAULT_TIMEOUT


class RunAdvancer:
    """State changes of a locked run: succeed, fail, retry, skip, cancel, settle."""

    def __init__(self, templates: TemplateCache, clock: Clock) -> None:
        self.templates = templates
        self.clock = clock

    def finish_step(
        self, tx: RunTransaction, step_id: str, state: StepState, **values: Any
    ) -> None:
        tx.update_step(
            step_id,
            state=state,
            finished_at=self.clock(),
            lease_owner=None,
            lease_expires_at=None,
            **values,
        )
        tx.update_run(steps_done=tx.run.steps_done + 1)

    def succeed(self, tx: RunTransaction, step: RunStep, result: StepResult) -> None:
        now = self.clock()
        seq = tx.event(
            "step.succeeded",
            f"step {step.step_id} succeeded",
            now,
            step.step_id,
            step.attempts,
            {"outputs": result.outputs},
        )
        self.finish_step(
            tx,
            step.step_id,
            StepState.SUCCEEDED,
            outputs=result.outputs,
            log=result.log,
            error=None,
            completed_seq=seq,
        )
        self.release(tx, [step.step_id])
        self.settle(tx)

    def release(self, tx: RunTransaction, done_ids: list[str]) -> None:
        """Dependencies finished: make dependents ready (or skip them on a false `when`)."""
        if tx.run.state is not RunState.RUNNING or tx.run.cancel_requested:
            return
        template = self.templates.get(tx.run.workflow_id)
        queue = list(done_ids)
        while queue:
            done = queue.pop(0)
            for step_id in tx.release_dependents(self.templates.dependents(template.id, done)):
                if self._ready_or_skip(tx, template.step(step_id)):
                    queue.append(step_id)  # a skipped step counts as done for its dependents

    def start_roots(self, tx: RunTransaction) -> None:
        """Make the steps without dependencies ready (used once, when a run is created)."""
        template = self.templates.get(tx.run.workflow_id)
        roots = [step for step in template.steps if not step.depends_on]
        self.release(tx, [step.id for step in roots if self._ready_or_skip(tx, step)])
        self.settle(tx)

    def _ready_or_skip(self, tx: RunTransaction, spec: StepSpec) -> bool:
        """Make a step whose dependencies are done ready, or skip it; True when skipped."""
        if self._should_run(tx, spec):
            tx.update_step(spec.id, state=StepState.READY, next_attempt_at=self.clock())
            tx.event("step.ready", f"step {spec.id} is ready", self.clock(), spec.id)
            return False
        self.finish_step(tx, spec.id, StepState.SKIPPED)
        tx.event(
            "step.skipped", f"step {spec.id} skipped: its `when` is false", self.clock(), spec.id
        )
        return True

    def _should_run(self, tx: RunTransaction, spec: StepSpec) -> bool:
        if not spec.when:
            return True
        try:
            return truthy(evaluate(parse_expression(spec.when), expression_context(tx, spec)))
        except (ExpressionError, TypeError, ValueError):
            return False  # a condition that cannot be evaluated does not hold

    def fail(self, tx: RunTransaction, step: RunStep, result: StepResult) -> None:
        """A failed attempt: retry with backoff when allowed, else fail the step and the run."""
        now = self.clock()
        template = self.templates.get(tx.run.workflow_id)
        spec = template.step(step.step_id)
        failures = step.failures + 1
        can_retry = (
            result.retryable
            and failures < spec.retry.max_attempts
            and tx.run.state is RunState.RUNNING
            and not tx.run.cancel_requested
        )
        if can_retry:
            delay = spec.retry.delay_before(failures + 1, random.random())  # noqa: S311 - jitter
            tx.update_step(
                step.step_id,
                state=StepState.READY,
                failures=failures,
                next_attempt_at=now + delay,
                lease_owner=None,
                lease_expires_at=None,
                error=result.error,
                log=result.log,
            )
            tx.event(
                "step.retrying",
                f"step {step.step_id} failed ({result.error}); attempt {failures + 1} of "
                f"{spec.retry.max_attempts} in {delay.total_seconds():.2f}s",
                now,
                step.step_id,
                step.attempts,
                {"error": result.error, "delay_ms": int(delay.total_seconds() * 1000)},
            )
            return
        cancelled = tx.run.cancel_requested
        state = StepState.CANCELLED if cancelled else StepState.FAILED
        self.finish_step(
            tx,
            step.step_id,
            state,
            failures=failures,
            error=result.error,
            log=result.log,
            outputs=result.outputs or step.outputs,
        )
        tx.event(
            f"step.{state}",
            f"step {step.step_id} {state}: {result.error}",
            now,
            step.step_id,
            step.attempts,
            {"error": result.error},
        )
        if not cancelled and tx.run.state is RunState.RUNNING:
            self.fail_run(tx, template, f"step {step.step_id} failed: {result.error}")
        self.settle(tx)

    def fail_run(self, tx: RunTransaction, template: WorkflowTemplate, error: str) -> None:
        now = self.clock()
        self.cancel_open_steps(tx, "not run: the run failed")
        if template.on_failure is OnFailure.ROLLBACK:
            tx.update_run(state=RunState.ROLLING_BACK, error=error)
            tx.event("run.rolling_back", f"run failed ({error}); rolling back", now)
        else:
            tx.update_run(state=RunState.FAILED, error=error, finished_at=now)
            tx.event("run.failed", f"run failed: {error}", now)

    def cancel_open_steps(self, tx: RunTransaction, reason: str) -> None:
        for step_id in tx.open_step_ids():
            self.finish_step(tx, step_id, StepState.CANCELLED)
            tx.event("step.cancelled", f"step {step_id} cancelled: {reason}", self.clock(), step_id)

    def settle(self, tx: RunTransaction) -> None:
        """Finish the run when nothing is left to do."""
        run = tx.run
        now = self.clock()
        if run.state is RunState.RUNNING and run.steps_done >= run.steps_total:
            state = RunState.CANCELLED if run.cancel_requested else RunState.SUCCEEDED
            tx.update_run(state=state, finished_at=now)
            tx.event(f"run.{state}", f"run {state}", now)
        elif (
            run.state is RunState.RUNNING
            and run.cancel_requested
            and tx.count_in_states((StepState.RUNNING,)) == 0
        ):
            tx.update_run(state=RunState.CANCELLED, finished_at=now)
            tx.event("run.cancelled", "run cancelled", now)

    def cancel(self, tx: RunTransaction, by: str) -> None:
        """Stop a run: open steps are cancelled, running ones are told to stop."""
        now = self.clock()
        tx.update_run(cancel_requested=True)
        tx.event("run.cancel_requested", f"cancellation requested by {by}", now, data={"by": by})
        if tx.run.state is RunState.ROLLING_BACK:
            lease_free = tx.run.lease_owner is None or (
                tx.run.lease_expires_at is not None and tx.run.lease_expires_at < now
            )
            if lease_free and tx.count_in_states((StepState.RUNNING,)) == 0:
                tx.update_run(state=RunState.CANCELLED, finished_at=now)
                tx.event("run.cancelled", "run cancelled during rollback", now)
            return
        self.cancel_open_steps(tx, f"run cancelled by {by}")
        self.settle(tx)


RenderConfig = Callable[[RunTransaction, StepSpec], dict[str, Any]]


class WorkflowEngine:
    """What one worker does against the run store."""

    def __init__(
        self,
        store: RunStore,
        templates: TemplateCache,
        registry: StepRegistry,
        clock: Clock,
        worker_id: str,
        lease: timedelta,
    ) -> None:
        self.store = store
        self.templates = templates
        self.registry = registry
        self.clock = clock
        self.worker_id = worker_id
        self.lease = lease
        self.advancer = RunAdvancer(templates, clock)

    def claim_step(self) -> ClaimedStep | None:
        """Lease the next due step of the oldest run that has one."""
        now = self.clock()
        with self.store.lock_next_ready(now) as tx:
            return None if tx is None else self._lease_first_ready(tx, now)

    def _lease_first_ready(self, tx: RunTransaction, due: datetime) -> ClaimedStep | None:
        step = tx.first_ready(due)
        if step is None:
            return None
        now = self.clock()  # read after the lock was granted: the lease starts now
        template = self.templates.get(tx.run.workflow_id)
        spec = template.step(step.step_id)
        try:
            config = render_template(spec.config, expression_context(tx, spec))
        except (ExpressionError, TypeError, ValueError) as exc:
            tx.update_step(step.step_id, state=StepState.RUNNING, attempts=step.attempts + 1)
            failed = StepResult("failed", error=f"bad expression: {exc}", retryable=False)
            self.advancer.fail(tx, tx.step(step.step_id), failed)
            return None
        attempt = step.attempts + 1
        tx.update_step(
            step.step_id,
            state=StepState.RUNNING,
            attempts=attempt,
            lease_owner=self.worker_id,
            lease_expires_at=now + self.lease,
            started_at=step.started_at or now,
        )
        tx.event(
            "step.started",
            f"step {step.step_id} started (attempt {attempt})",
            now,
            step.step_id,
            attempt,
            {"worker": self.worker_id},
        )
        return ClaimedStep(
            run_id=tx.run.id,
            step_id=step.step_id,
            step_type=spec.type,
            attempt=attempt,
            idempotency_key=f"{tx.run.id}:{step.step_id}:{step.failures + 1}",
            config=config,
            inputs=tx.run.inputs,
            timeout=step_timeout(spec, self.registry),
        )

    def record(
        self, claimed: ClaimedStep, result: StepResult, claim_next: bool = False
    ) -> ClaimedStep | None:
        """Store an attempt's result (dropped when the lease was lost meanwhile).

        With `claim_next`, the next due step of the same run is leased in the same
        transaction: a chain of short steps then costs one transaction per step.
        """
        with self.store.lock_run(claimed.run_id) as tx:
            if tx is None or not self._record(tx, claimed, result):
                return None
            if claim_next and tx.run.state is RunState.RUNNING and not tx.run.cancel_requested:
                return self._lease_first_ready(tx, self.clock())
            return None

    def _record(self, tx: RunTransaction, claimed: ClaimedStep, result: StepResult) -> bool:
        step = tx.step(claimed.step_id)
        if step.state is not StepState.RUNNING or step.lease_owner != self.worker_id:
            tx.event(
                "step.result_discarded",
                f"result of step {claimed.step_id} attempt {claimed.attempt} discarded: "
                "the worker's lease had expired",
                self.clock(),
                claimed.step_id,
                claimed.attempt,
            )
            return False
        if result.status == "succeeded":
            self.advancer.succeed(tx, step, result)
        elif result.status == "waiting":
            now = self.clock()
            tx.update_step(
                step.step_id,
                state=StepState.WAITING,
                lease_owner=None,
                lease_expires_at=None,
                next_attempt_at=now + claimed.timeout,
                outputs=result.outputs,
            )
            tx.event(
                "step.waiting",
                f"step {step.step_id} is waiting for a decision",
                now,
                step.step_id,
                step.attempts,
                {"outputs": result.outputs},
            )
        else:
            self.advancer.fail(tx, step, result)
        return True

    def release(self, claimed: ClaimedStep) -> None:
        """Give a step back without a result (graceful shutdown): it runs again elsewhere."""
        with self.store.lock_run(claimed.run_id) as tx:
            if tx is None:
                return
            step = tx.step(claimed.step_id)
            if step.state is StepState.RUNNING and step.lease_owner == self.worker_id:
                tx.update_step(
                    step.step_id,
                    state=StepState.READY,
                    next_attempt_at=self.clock(),
                    lease_owner=None,
                    lease_expires_at=None,
                )
                tx.event(
                    "step.released",
                    f"step {step.step_id} released by a stopping worker",
                    self.clock(),
                    step.step_id,
                    claimed.attempt,
                )

    def claim_rollback(self) -> ClaimedStep | None:
        """Take over the rollback of a failed run; returns its first step to roll back."""
        now = self.clock()
        with self.store.lock_next_rollback(now) as tx:
            if tx is None:
                return None
            tx.update_run(lease_owner=self.worker_id, lease_expires_at=now + self.lease)
            return self._next_rollback(tx)

    def record_rollback(self, claimed: ClaimedStep, result: StepResult) -> ClaimedStep | None:
        """Store a rollback's result and return the next step to roll back (None: done)."""
        with self.store.lock_run(claimed.run_id) as tx:
            if tx is None or tx.run.lease_owner != self.worker_id:
                return None
            now = self.clock()
            if result.status == "succeeded":
                tx.update_step(claimed.step_id, state=StepState.ROLLED_BACK, log=result.log)
                tx.event(
                    "step.rolled_back",
                    f"step {claimed.step_id} rolled back",
                    now,
                    claimed.step_id,
                    claimed.attempt,
                )
            elif not tx.run.cancel_requested:
                error = f"rollback failed: {result.error}"
                tx.update_step(claimed.step_id, error=error, log=result.log)
                tx.event(
                    "step.rollback_failed",
                    f"step {claimed.step_id} {error}",
                    now,
                    claimed.step_id,
                    claimed.attempt,
                    {"error": result.error},
                )
                tx.update_run(error=f"{tx.run.error}; rollback of step {claimed.step_id} failed")
            return self._next_rollback(tx)

    def _next_rollback(self, tx: RunTransaction) -> ClaimedStep | None:
        now = self.clock()
        if tx.run.cancel_requested:
            tx.update_run(
                state=RunState.CANCELLED, finished_at=now, lease_owner=None, lease_expires_at=None
            )
            tx.event("run.cancelled", "run cancelled during rollback", now)
            return None
        template = self.templates.get(tx.run.workflow_id)
        capable = [s.id for s in template.steps if s.rollback]
        candidates = tx.rollback_candidates(capable)
        if not candidates:
            rolled_back = tx.count_in_states((StepState.ROLLED_BACK,))
            clean = tx.rollback_failures(capable) == 0 and rolled_back > 0
            state = RunState.ROLLED_BACK if clean else RunState.FAILED
            tx.update_run(state=state, finished_at=now, lease_owner=None, lease_expires_at=None)
            tx.event(f"run.{state}", f"run {state} ({rolled_back} step(s) rolled back)", now)
            return None
        step = candidates[0]
        spec = template.step(step.step_id)
        try:
            config = render_template(spec.config, expression_context(tx, spec))
        except (ExpressionError, TypeError, ValueError) as exc:
            error = f"rollback failed: bad expression: {exc}"
            tx.update_step(step.step_id, error=error)
            tx.event("step.rollback_failed", f"step {step.step_id} {error}", now, step.step_id)
            return self._next_rollback(tx)
        tx.update_run(lease_expires_at=now + self.lease)
        tx.event(
            "step.rolling_back",
            f"rolling back step {step.step_id}",
            now,
            step.step_id,
            step.attempts,
        )
        return ClaimedStep(
            run_id=tx.run.id,
            step_id=step.step_id,
            step_type=spec.type,
            attempt=step.attempts,
            idempotency_key=f"{tx.run.id}:{step.step_id}:rollback",
            config=config,
            inputs=tx.run.inputs,
            timeout=step_timeout(spec, self.registry),
            rollback=True,
        )

    def renew(self, claimed: ClaimedStep) -> tuple[bool, bool]:
        """Extend the lease; returns (still ours, cancellation requested)."""
        expires = self.clock() + self.lease
        step_id = None if claimed.rollback else claimed.step_id
        return self.store.renew(claimed.run_id, step_id, self.worker_id, expires)

    def recover_overdue(self) -> int:
        """Requeue steps of dead workers; fail approvals past their deadline."""
        now = self.clock()
        recovered = 0
        for run_id, step_id in self.store.overdue(now):
            with self.store.lock_run(run_id) as tx:
                if tx is None:
                    continue
                step = tx.step(step_id)
                if (
                    step.state is StepState.RUNNING
                    and step.lease_expires_at
                    and step.lease_expires_at < now
                ):
                    recovered += 1
                    self._requeue(tx, step, now)
                elif (
                    step.state is StepState.WAITING
                    and step.next_attempt_at
                    and step.next_attempt_at < now
                ):
                    recovered += 1
                    timeout = StepResult(
                        "failed", error="no decision before the deadline", retryable=False
                    )
                    self.advancer.fail(tx, step, timeout)
        return recovered

    def _requeue(self, tx: RunTransaction, step: RunStep, now: datetime) -> None:
        if tx.run.cancel_requested or tx.run.state is not RunState.RUNNING:
            self.advancer.finish_step(
                tx,
                step.step_id,
                StepState.CANCELLED,
                error="its worker stopped while the run was ending",
            )
            tx.event(
                "step.cancelled",
                f"step {step.step_id} cancelled: its worker stopped",
                now,
                step.step_id,
                step.attempts,
            )
            self.advancer.settle(tx)
            return
        tx.update_step(
            step.step_id,
            state=StepState.READY,
            next_attempt_at=now,
            lease_owner=None,
            lease_expires_at=None,
        )
        tx.event(
            "step.lease_expired",
            f"worker {step.lease_owner} stopped renewing its lease on step {step.step_id}; "
            "it will run again",
            now,
            step.step_id,
            step.attempts,
            {"worker": step.lease_owner},
        )
