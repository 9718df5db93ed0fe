"""Helpers for workflow tests: an in-process worker and waiting for runs (bounded)."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from stella.adapters.metrics import PrometheusMetrics
from stella.services.promotions import settle_deployments
from stella.services.workflow_engine import WorkflowEngine
from stella.worker.runner import Worker, WorkerSettings

TERMINAL = {"succeeded", "failed", "cancelled", "rolled_back"}


def start_worker(
    container,
    workdir: Path,
    name: str = "test-worker",
    concurrency: int = 4,
    lease_seconds: float = 2.0,
) -> Worker:
    engine = WorkflowEngine(
        container.run_store,
        container.templates,
        container.steps,
        container.clock,
        name,
        timedelta(seconds=lease_seconds),
    )
    worker = Worker(
        engine,
        WorkerSettings(
            concurrency=concurrency,
            poll_seconds=0.02,
            recover_every_seconds=0.2,
            grace_seconds=5,
            workdir=workdir,
        ),
        periodic=[lambda: settle_deployments(container.promotions, container.clock)],
        metrics=PrometheusMetrics(),
    )
    worker.start()
    return worker


def wait_for_run(api, run_id: str, states=TERMINAL, timeout: float = 30.0) -> dict:
    """Poll the run until its state is in `states`; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    run: dict = {}
    while time.monotonic() < deadline:
        run = api.get(f"/workflow-runs/{run_id}").json()
        if run["state"] in states:
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} still {run.get('state')} after {timeout}s: {run}")


def wait_for_step(api, run_id: str, step_id: str, states: set[str], timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    step: dict = {}
    while time.monotonic() < deadline:
        run = api.get(f"/workflow-runs/{run_id}").json()
        step = next(s for s in run["steps"] if s["id"] == step_id)
        if step["state"] in states:
            return step
        time.sleep(0.05)
    raise AssertionError(f"step {step_id} still {step.get('state')} after {timeout}s")


def events(api, run_id: str) -> list[dict]:
    items, cursor = [], None
    for _ in range(100):
        page = api.get(
            f"/workflow-runs/{run_id}/events",
            params={"limit": 500, **({"cursor": cursor} if cursor else {})},
        ).json()
        items.extend(page["items"])
        if not page["items"]:
            return items
        cursor = page["next_cursor"]
    return items
