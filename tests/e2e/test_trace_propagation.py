"""One trace covers a deployment end to end: the control plane's `deployment.execute` span and the
agent's `agent.task` span, exported over OTLP/HTTP by two processes, share a trace id because the
task handed to the agent carries the W3C trace context of the deployment that made it."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import free_port
from tests.support.deploy import (
    deploy_server,
    http_text,
    push_web_image,
    remove_containers,
    start_agent,
    wait_for,
    wait_settled,
    web_component,
)


@dataclass(frozen=True)
class ExportedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, str]


class OtlpSink:
    """A tiny OTLP/HTTP collector: remembers every span POSTed to /v1/traces."""

    def __init__(self) -> None:
        self.spans: list[ExportedSpan] = []
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                sink.receive(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def receive(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ExportedSpan(
                            service=resource.get("service.name", ""),
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes={
                                a.key: a.value.string_value or str(a.value.bool_value)
                                for a in span.attributes
                            },
                        )
                    )
        with self.lock:
            self.spans.extend(received)

    def named(self, name: str) -> list[ExportedSpan]:
        with self.lock:
            return [s for s in self.spans if s.name == name]

    def __enter__(self) -> OtlpSink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def otel_env(endpoint: str, service: str) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_SERVICE_NAME": service,
    }


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    with OtlpSink() as running:
        yield running


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_one_trace_covers_the_control_plane_and_the_agent(
    kind, sink, tmp_path, registry_url, monkeypatch
):
    suffix = uuid.uuid4().hex[:6]
    port = free_port()
    name = f"dev-{suffix}-web"
    image = push_web_image(f"app/tr-{suffix}", "v1", f"traced {suffix}\n", tmp_path)
    agent = None
    with deploy_server(kind, tmp_path, extra_env=otel_env(sink.endpoint, "stella-server")) as live:
        try:
            with live.api() as api:
                spec = {"name": "Dev", "slug": "dev", "promotion_order": 1}
                assert api.post("/environments", json=spec).status_code == 201
                target = {
                    "name": f"dev-{suffix}",
                    "environment": "dev",
                    "type": "docker_host",
                    "connection": {
                        "container_name_prefix": f"dev-{suffix}-",
                        "environment": {"PORT": str(port)},
                    },
                }
                assert api.post("/targets", json=target).status_code == 201
                component = web_component("web", image.repository)
                assert api.post("/components", json=component).status_code == 201
                # the security gate wants an SBOM (or scan) for the image
                sbom = {"bomFormat": "CycloneDX", "specVersion": "1.5", "components": []}
                attached = api.post(
                    "/sboms",
                    params={"digest": image.digest},
                    content=json.dumps(sbom),
                    headers={"Content-Type": "application/json"},
                )
                assert attached.status_code in {200, 201}, attached.text
            # start_agent passes os.environ on: the agent exports its spans to the same sink
            for variable, value in otel_env(sink.endpoint, "stella-agent").items():
                monkeypatch.setenv(variable, value)
            agent = start_agent(live, f"tr-{suffix}", "dev", tmp_path)
            live.cli(
                "release",
                "create",
                "--name",
                "web",
                "--version",
                "1.0.0",
                "-c",
                "web=v1",
                check=True,
            )
            promoted = live.cli("promote", "web@1.0.0", "--to", "dev", "-o", "json", check=True)
            settled = wait_settled(live, json.loads(promoted.stdout)["id"])
            assert settled == "deployed", live.log.read_text()[-3000:]
            assert http_text(port) == image.content

            wait_for(
                lambda: sink.named("agent.task") and sink.named("deployment.execute"),
                30,
                "agent.task and deployment.execute spans at the OTLP sink",
                agent.log,
            )
        finally:
            if agent is not None:
                agent.stop()
            remove_containers(name)

    [task] = sink.named("agent.task")
    executes = sink.named("deployment.execute")
    assert task.service == "stella-agent"
    assert {s.service for s in executes} == {"stella-server"}
    # the agent's span continues the control plane's trace ...
    [execute] = [s for s in executes if s.trace_id == task.trace_id]
    assert task.attributes["deployment.target"] == f"dev-{suffix}"
    # ... as a descendant of its deployment.execute span: the parent chain leads there
    same_trace = {s.span_id: s for s in sink.spans if s.trace_id == task.trace_id}
    assert task.parent_span_id, "agent.task has no parent"
    assert task.parent_span_id in same_trace
    chain, span_id = [], task.parent_span_id
    while span_id in same_trace:
        chain.append(same_trace[span_id].name)
        if span_id == execute.span_id:
            break
        span_id = same_trace[span_id].parent_span_id
    assert span_id == execute.span_id, chain
