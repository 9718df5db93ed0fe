"""The worker loop: claim, execute with a renewed lease, record; recover; stop gracefully.

Up to `concurrency` steps run at once in threads. Each running step's lease is renewed every
third of its length; a lost lease or a cancelled run stops the step. On stop, the worker claims
nothing more, lets running steps finish for `grace` seconds, then kills and releases the rest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from opentelemetry import trace

from stella.services.circuit_breaker import CircuitBreaker
from stella.services.metrics import Metrics, NoMetrics
from stella.services.steps import StepContext, StepResult
from stella.services.workflow_engine import ClaimedStep, WorkflowEngine

log = logging.getLogger("stella.worker")
T = TypeVar("T")


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 4
    poll_seconds: float = 0.5
    recover_every_seconds: float = 2.0
    grace_seconds: float = 30.0
    workdir: Path = Path(".stella/work")


class _Execution:
    """One claimed step on its way through a provider, with its lease kept alive."""

    def __init__(self, worker: Worker, claimed: ClaimedStep) -> None:
        self.worker = worker
        self.claimed = claimed
        self.cancelled = threading.Event()
        self.lease_lost = False
        self.aborted = False  # stopped by a worker shutdown, not by the run

    def run(self) -> None:
        """Run the claimed step, then keep this slot busy with the next due step, if any.

        Claiming again right here (instead of waiting for the main loop's next poll) is what
        keeps the scheduling overhead of a long chain of short steps in milliseconds.
        """
        claimed: ClaimedStep | None = self.claimed
        while claimed is not None:
            self.claimed = claimed
            if self.aborted:  # the shutdown came between two steps: hand this one back
                self._release(claimed)
                return
            self.cancelled.clear()
            result = self._attempt(claimed)
            if self.aborted and result.status == "failed" and result.error == "cancelled":
                # killed by the shutdown, not finished: another worker runs it again
                self._release(claimed)
                return
            keep_going = not self.worker.stopping
            if claimed.rollback:
                claimed = self.worker.engine.record_rollback(claimed, result)
            else:
                claimed = self.worker.engine.record(claimed, result, claim_next=keep_going)
            if claimed is None and keep_going:
                claimed = self.worker.claim()

    def _release(self, claimed: ClaimedStep) -> None:
        # a rollback job is not released: its run lease expires and another worker resumes it
        if not claimed.rollback:
            self.worker.engine.release(claimed)

    def _attempt(self, claimed: ClaimedStep) -> StepResult:
        stop_renewing = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(stop_renewing,), daemon=True)
        renewer.start()
        try:
            return self._call_provider(claimed)
        finally:
            stop_renewing.set()
            renewer.join(timeout=10)

    def _call_provider(self, claimed: ClaimedStep) -> StepResult:
        engine = self.worker.engine
        breaker = self.worker.breaker
        provider = engine.registry.provider(claimed.step_type)
        guarded = not claimed.rollback and provider.characteristics.circuit_breaker
        if guarded and not breaker.allow(claimed.step_type):
            return StepResult("failed", error=breaker.message(claimed.step_type))
        context = StepContext(
            run_id=claimed.run_id,
            step_id=claimed.step_id,
            attempt=claimed.attempt,
            idempotency_key=claimed.idempotency_key,
            config=claimed.config,
            inputs=claimed.inputs,
            deadline=time.monotonic() + claimed.timeout.total_seconds(),
            timeout=claimed.timeout,
            cancelled=self.cancelled,
            workdir=self.worker.settings.workdir,
            started_at=engine.clock(),
        )
        started = time.monotonic()
        tracer = trace.get_tracer("stella.worker")
        span = tracer.start_span(
            "workflow.step",
            attributes={
                "step.type": claimed.step_type,
                "step.id": claimed.step_id,
                "run.id": str(claimed.run_id),
                "step.rollback": claimed.rollback,
            },
        )
        try:
            result = provider.rollback(context) if claimed.rollback else provider.execute(context)
        except Exception as exc:  # a provider bug must not kill the worker
            log.exception("step provider %s raised", claimed.step_type)
            result = StepResult("failed", error=f"{type(exc).__name__}: {exc}")
        if guarded:
            breaker.record(claimed.step_type, result.status != "failed")
        span.set_attribute("step.result", result.status)
        span.end()
        self.worker.metrics.step_finished(claimed.step_type, time.monotonic() - started)
        log.info(
            "step %s %s%s",
            "rolled back" if claimed.rollback else "ran",
            result.status,
            f": {result.error}" if result.error else "",
            extra={
                "run_id": str(claimed.run_id),
                "step_id": claimed.step_id,
                "attempt": claimed.attempt,
                "step_type": claimed.step_type,
                "worker": engine.worker_id,
            },
        )
        return result

    def _renew(self, stop: threading.Event) -> None:
        interval = max(0.05, self.worker.engine.lease.total_seconds() / 3)
        while not stop.wait(interval):
            try:
                still_ours, cancel = self.worker.engine.renew(self.claimed)
            except Exception:  # noqa: BLE001 - a database blip: try again next interval
                log.warning("lease renewal failed for step %s", self.claimed.step_id)
                continue
            if not still_ours:
                self.lease_lost = True
                self.cancelled.set()
                return
            if cancel:
                self.cancelled.set()


class Worker:
    """Runs the claim loop until `stop()`; `run_forever` blocks, `start` runs it in a thread."""

    def __init__(
        self,
        engine: WorkflowEngine,
        settings: WorkerSettings,
        breaker: CircuitBreaker | None = None,
        periodic: list[Callable[[], object]] | None = None,
        metrics: Metrics | None = None,
        every_poll: list[Callable[[], object]] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.breaker = breaker or CircuitBreaker()
        self.periodic = periodic or []  # housekeeping, run with the overdue-step recovery
        # cheap follow-ups someone waits for (a finished run settles its promotion)
        self.every_poll = every_poll or []
        self.metrics = metrics or NoMetrics()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._active: dict[Future[None], _Execution] = {}

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run_forever, name="stella-worker", daemon=True)
        self._thread.start()

    def stop(self, wait: bool = True) -> None:
        self._stop.set()
        if wait and self._thread is not None:
            self._thread.join(timeout=self.settings.grace_seconds + 15)

    def run_forever(self) -> None:
        log.info("worker %s started", self.engine.worker_id)
        next_recovery = 0.0
        with ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="step") as pool:
            while not self._stop.is_set():
                if time.monotonic() >= next_recovery:
                    self._safely(self.engine.recover_overdue)
                    for task in self.periodic:
                        self._safely(task)
                    next_recovery = time.monotonic() + self.settings.recover_every_seconds
                for task in self.every_poll:
                    self._safely(task)
                claimed_any = self._claim_into(pool)
                self._active = {f: e for f, e in self._active.items() if not f.done()}
                if not claimed_any:
                    self._stop.wait(self.settings.poll_seconds)
            self._drain()
        log.info("worker %s stopped", self.engine.worker_id)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def claim(self) -> ClaimedStep | None:
        """The next rollback job or due step, or None."""
        return self._safely(self.engine.claim_rollback) or self._safely(self.engine.claim_step)

    def _claim_into(self, pool: ThreadPoolExecutor) -> bool:
        claimed_any = False
        while len([f for f in self._active if not f.done()]) < self.settings.concurrency:
            claimed = self.claim()
            if claimed is None:
                break
            execution = _Execution(self, claimed)
            self._active[pool.submit(execution.run)] = execution
            claimed_any = True
        return claimed_any

    def _drain(self) -> None:
        """Graceful stop: let running steps finish, then kill and release what remains."""
        deadline = time.monotonic() + self.settings.grace_seconds
        while any(not f.done() for f in self._active) and time.monotonic() < deadline:
            time.sleep(0.05)
        for future, execution in self._active.items():
            if not future.done():
                execution.aborted = True
                execution.cancelled.set()

    def _safely(self, action: Callable[[], T]) -> T | None:
        try:
            return action()
        except Exception:  # the loop survives database outages; logged with the trace
            log.exception("worker action %s failed", getattr(action, "__name__", action))
            return None
