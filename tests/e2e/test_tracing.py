"""OpenTelemetry spans: promotion.request, one gate.evaluate per gate, workflow.step; deployment
jobs carry the trace context they were created in."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from stella.adapters.tracing import tracing_requested
from tests.support.jobs import create_jobs
from tests.support.promotions import build_estate
from tests.support.workflows import start_worker, wait_for_run

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def spans():
    """The SDK's own in-memory exporter (a real span pipeline, read back by the test)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(provider)
    return _EXPORTER


def test_promotion_and_gate_spans(api, registry_url, repository, spans):
    estate = build_estate(api, registry_url, repository)
    spans.clear()
    dev = api.post(
        "/promotions", {"release_id": estate.release_id, "target_environment": "dev"}
    ).json()
    finished = spans.get_finished_spans()
    request = next(s for s in finished if s.name == "promotion.request")
    assert request.attributes["promotion.id"] == dev["id"]
    assert request.attributes["promotion.state"] == "approved"
    gates = [s for s in finished if s.name == "gate.evaluate"]
    assert [(g.attributes["gate.type"], g.attributes["gate.result"]) for g in gates] == [
        ("previous_environment", "passed"),
        ("security", "passed"),
    ]
    assert all(g.parent.span_id == request.context.span_id for g in gates)


def test_workflow_step_spans(api, container, tmp_path, spans):
    api.post(
        "/workflows",
        {"name": "traced", "steps": [{"id": "a", "type": "wait", "config": {"duration": "0s"}}]},
    )
    spans.clear()
    worker = start_worker(container, tmp_path / "work")
    try:
        run = wait_for_run(api, api.post("/workflow-runs", {"workflow": "traced"}).json()["id"])
    finally:
        worker.stop()
    # the session database may hold other tests' runs that this worker also picked up
    step = next(
        s
        for s in spans.get_finished_spans()
        if s.name == "workflow.step" and s.attributes["run.id"] == run["id"]
    )
    assert step.attributes["step.type"] == "wait"
    assert step.attributes["step.result"] == "succeeded"


@pytest.mark.parametrize(
    ("variables", "on"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
                "OTEL_TRACES_EXPORTER": "none",
            },
            False,
        ),
    ],
)
def test_tracing_is_off_unless_the_standard_variables_ask_for_it(monkeypatch, variables, on):
    for name in (
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert tracing_requested() is on


def test_deployment_execute_span(api, container, registry_url, repository, tmp_path, spans):
    estate = build_estate(api, registry_url, repository)
    slug = "dev"  # no targets there: the deployment has nothing to do and succeeds
    workflow = {
        "name": f"deploy-{slug}",
        "steps": [
            {
                "id": "d",
                "type": "deploy",
                "config": {"release": estate.release_id, "environment": slug},
            }
        ],
    }
    assert api.post("/workflows", workflow).status_code == 201
    spans.clear()
    worker = start_worker(container, tmp_path / "work")
    try:
        run = wait_for_run(
            api, api.post("/workflow-runs", {"workflow": f"deploy-{slug}"}).json()["id"]
        )
    finally:
        worker.stop()
    assert run["state"] == "succeeded", run
    span = next(
        s
        for s in spans.get_finished_spans()
        if s.name == "deployment.execute" and s.attributes["workflow.run_id"] == run["id"]
    )
    assert span.attributes["deployment.kind"] == "deploy"
    assert span.attributes["deployment.outcome"] == "succeeded"


def _create_jobs(container, api, release_id: str) -> list:
    """Jobs made the way the deploy step makes them (no worker runs here)."""
    return create_jobs(container, api.get("/targets/prod-1").json()["id"], release_id)


def test_deployment_jobs_store_the_trace_context_they_were_created_in(
    api, container, registry_url, repository, spans
):
    estate = build_estate(api, registry_url, repository)
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("deployment.execute") as span:
        jobs = _create_jobs(container, api, estate.release_id)
        trace_id = format(span.get_span_context().trace_id, "032x")
        span_id = format(span.get_span_context().span_id, "016x")
    assert jobs
    for job in jobs:
        version, job_trace, parent, _flags = job.trace_context["traceparent"].split("-")
        assert (version, job_trace, parent) == ("00", trace_id, span_id)
    # outside any trace there is nothing to carry
    assert all(j.trace_context is None for j in _create_jobs(container, api, estate.release_id))
