"""OpenTelemetry tracing, off unless the standard `OTEL_*` variables ask for it.

Set `OTEL_TRACES_EXPORTER=otlp` (or an `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`) and spans go to an
OTLP/HTTP collector configured by the usual `OTEL_EXPORTER_OTLP_*` variables; `OTEL_SERVICE_NAME`
names the process (default `stella`). Without them, the API's no-op tracer costs nothing.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def tracing_requested() -> bool:
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "")
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    return "otlp" in exporter or (bool(endpoint) and exporter != "none")


def configure_tracing(role: str) -> bool:
    """Install an OTLP exporting tracer provider when asked to; True when tracing is on."""
    if not tracing_requested():
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    name = os.environ.get("OTEL_SERVICE_NAME", "stella")
    provider = TracerProvider(resource=Resource.create({"service.name": name, "stella.role": role}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True
