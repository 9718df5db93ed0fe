"""Waiting for a new container to become healthy, within the probe's tries and the job's budget.

Three kinds of health, per `HealthProbe`: an HTTP GET answering 2xx/3xx (`http`), Docker's own
healthcheck reaching "healthy" (`test`), or, without a probe, the container staying up. A
container that exits while we wait fails at once instead of using up the remaining tries. The
HTTP request is a callable so the SSH executor can send it through its tunnel; the default one
goes straight to the URL (loopback on an agent host), ignores proxy settings and never follows
redirects.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import httpx
import requests
from docker.errors import DockerException
from docker.models.containers import Container

from stella.adapters.executors.engine import container_logs, explain
from stella.adapters.executors.errors import DeploymentFailed
from stella.adapters.executors.journal import Deadline, Journal
from stella.domain.deployments import ContainerSpec, HealthProbe

HttpGet = Callable[[str, float], int]  # (url, timeout seconds) -> HTTP status; raises OSError
DOCKER_TEST_PREFIXES = ("CMD", "CMD-SHELL", "NONE")
RUNNING_POLLS = 50  # without a probe: at most 50 polls ...
RUNNING_POLL_SECONDS = 0.1  # ... 0.1 s apart; "up" means running on two polls in a row
HEALTH_GRACE_SECONDS = 5.0  # Docker healthcheck: allowance beyond interval x (retries + 1)
MAX_REQUEST_SECONDS = 5.0


def direct_http_get(url: str, timeout: float) -> int:
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            return client.get(url).status_code
    except httpx.HTTPError as exc:
        msg = f"{type(exc).__name__}: {exc}"
        raise OSError(msg) from None


def healthcheck_test(probe: HealthProbe) -> list[str]:
    """Docker's `test` form: a bare argv becomes `["CMD", ...]`."""
    test = list(probe.test or [])
    if test and test[0] not in DOCKER_TEST_PREFIXES:
        test = ["CMD", *test]
    return test


def docker_healthcheck(probe: HealthProbe | None) -> dict[str, Any] | None:
    """The `healthcheck` argument of container create (durations in nanoseconds)."""
    if probe is None or not probe.test:
        return None
    interval = max(int(probe.interval_seconds * 1e9), 1_000_000)
    return {
        "test": healthcheck_test(probe),
        "interval": interval,
        "timeout": max(interval, 2_000_000_000),
        "retries": max(probe.retries, 1),
    }


def wait_healthy(
    container: Container,
    spec: ContainerSpec,
    journal: Journal,
    deadline: Deadline,
    http_get: HttpGet = direct_http_get,
) -> None:
    """Return once `container` is healthy; raise DeploymentFailed with the last reason otherwise."""
    probe = spec.health
    if probe is not None and probe.http:
        _wait_http(container, spec.name, probe, probe.http, journal, deadline, http_get)
    elif probe is not None and probe.test:
        _wait_docker_health(container, spec.name, probe, journal, deadline)
    else:
        _wait_running(container, spec.name, journal, deadline)


def _state(container: Container, name: str, journal: Journal) -> dict[str, Any]:
    """The container's State; fail at once (with its last output) when it has stopped."""
    try:
        container.reload()
    except (DockerException, requests.RequestException) as exc:
        msg = f"container {name} cannot be inspected: {explain(exc)}"
        raise DeploymentFailed(msg) from None
    state: dict[str, Any] = container.attrs.get("State") or {}
    if state.get("Status") in {"exited", "dead"}:
        for line in container_logs(container):
            journal(f"{name} | {line}")
        msg = f"container {name} exited with code {state.get('ExitCode')} before it became healthy"
        raise DeploymentFailed(msg)
    return state


def _wait_http(
    container: Container,
    name: str,
    probe: HealthProbe,
    url: str,
    journal: Journal,
    deadline: Deadline,
    http_get: HttpGet,
) -> None:
    tries = max(probe.retries, 1)
    last = "no answer"
    for attempt in range(1, tries + 1):
        deadline.check(f"waiting for {name} to become healthy")
        _state(container, name, journal)
        timeout = min(max(probe.interval_seconds, 1.0), MAX_REQUEST_SECONDS)
        try:
            status = http_get(url, min(timeout, max(deadline.remaining(), 0.1)))
        except OSError as exc:
            last = str(exc) or type(exc).__name__
        else:
            if 200 <= status < 400:
                journal(f"{name}: healthy ({url} answered {status} on try {attempt})")
                return
            last = f"HTTP {status}"
        if attempt < tries:
            deadline.sleep(probe.interval_seconds, f"waiting for {name} to become healthy")
    msg = f"container {name} did not become healthy within {tries} tries ({url}: {last})"
    raise DeploymentFailed(msg)


def _wait_docker_health(
    container: Container, name: str, probe: HealthProbe, journal: Journal, deadline: Deadline
) -> None:
    poll = min(max(probe.interval_seconds, 0.05), 0.5)
    budget = probe.interval_seconds * (max(probe.retries, 1) + 1) + HEALTH_GRACE_SECONDS
    last = "starting"
    for _ in range(math.ceil(budget / poll)):
        deadline.check(f"waiting for {name} to become healthy")
        health = _state(container, name, journal).get("Health") or {}
        last = str(health.get("Status") or "no healthcheck")
        if last == "healthy":
            journal(f"{name}: healthy (Docker healthcheck)")
            return
        if last == "unhealthy":
            break
        deadline.sleep(poll, f"waiting for {name} to become healthy")
    checks = (container.attrs.get("State") or {}).get("Health", {}).get("Log") or []
    output = str(checks[-1].get("Output", "")).strip().replace("\n", " ")[:300] if checks else ""
    msg = f"container {name} did not become healthy within {probe.retries} tries (Docker: {last}"
    msg += f", last check: {output})" if output else ")"
    raise DeploymentFailed(msg)


def _wait_running(container: Container, name: str, journal: Journal, deadline: Deadline) -> None:
    seen_running = False
    for _ in range(RUNNING_POLLS):
        deadline.check(f"waiting for {name} to run")
        state = _state(container, name, journal)
        running = bool(state.get("Running")) and not state.get("Restarting")
        if running and seen_running:
            journal(f"{name}: running")
            return
        seen_running = running
        deadline.sleep(RUNNING_POLL_SECONDS, f"waiting for {name} to run")
    msg = f"container {name} did not become healthy: not running after {RUNNING_POLLS} checks"
    raise DeploymentFailed(msg)
