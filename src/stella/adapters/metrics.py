"""Prometheus metrics with the specification's names and labels, served at /metrics.

With several API or worker processes, set PROMETHEUS_MULTIPROC_DIR to a folder shared by them
(emptied before they start): each process then writes its samples there and /metrics adds
them up (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

PROMOTIONS = Counter(
    "release_promotions_total", "Promotion evaluations by outcome", ["environment", "outcome"]
)
DEPLOYMENTS = Histogram("release_deployments_duration_seconds", "Deployment durations")
GATES = Counter(
    "release_gate_evaluations_total", "Gate evaluations by gate and result", ["gate", "result"]
)
AGENTS_ONLINE = Gauge(
    "release_agents_online", "Agents currently online", multiprocess_mode="livemax"
)
TARGETS_DRIFTED = Gauge(
    "release_targets_drifted",
    "Targets whose containers differ from their last deployment",
    ["environment"],
    multiprocess_mode="livemax",
)
STEPS = Histogram(
    "release_workflow_steps_duration_seconds",
    "Workflow step durations",
    ["step_type"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300, 1800),
)
VERDICT_CHANGES = Counter(
    "release_verdict_changed_total",
    "Security verdicts of image digests that changed, by environment and new state",
    ["environment", "state"],
)
EVIDENCE = Counter("release_evidence_packets_total", "Evidence packets sealed", ["kind"])
HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_DURATION = Histogram(
    "http_request_duration_seconds", "HTTP request durations", ["method", "route"]
)


class PrometheusMetrics:
    """The Metrics port on prometheus-client."""

    def promotion_settled(self, environment: str, outcome: str) -> None:
        PROMOTIONS.labels(environment=environment, outcome=outcome).inc()

    def gate_evaluated(self, gate: str, passed: bool) -> None:
        GATES.labels(gate=gate, result="passed" if passed else "failed").inc()

    def step_finished(self, step_type: str, seconds: float) -> None:
        STEPS.labels(step_type=step_type).observe(seconds)

    def evidence_sealed(self, kind: str) -> None:
        EVIDENCE.labels(kind=kind).inc()

    def verdict_changed(self, environment: str, state: str) -> None:
        VERDICT_CHANGES.labels(environment=environment, state=state).inc()


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
    HTTP_DURATION.labels(method=method, route=route).observe(seconds)


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric (summed over processes in multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
