"""OpenTelemetry set-up and trace-context propagation through gRPC metadata and stream messages.

The exporter is configuration: "otlp" (gRPC endpoint), "console", or "none". Each message on a stream
carries `traceparent` (and `tracestate`) so one news item is one trace from ingest to the quote change.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

from opentelemetry import context, metrics, trace
from opentelemetry.propagate import set_global_textmap
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()
_configured = False


def setup_telemetry(service: str, exporter: str = "none", endpoint: str = "http://127.0.0.1:4317") -> None:
    """Install the global tracer and meter providers once per process."""
    global _configured
    if _configured or type(trace.get_tracer_provider()).__name__ == "TracerProvider":
        return  # already set up (by this process or by the embedding program, e.g. tests)
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

    resource = Resource.create({"service.name": f"tapewatch-{service}", "service.namespace": "tapewatch"})
    # With no exporter, spans are not recorded (cheap), but trace ids still travel with every item.
    sampler = ParentBased(ALWAYS_OFF) if exporter == "none" else None
    tracer_provider = TracerProvider(resource=resource, sampler=sampler)
    readers = []
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        tracer_provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True), schedule_delay_millis=500)
        )
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint, insecure=True)))
    elif exporter == "console":
        tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=30_000))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
    set_global_textmap(_propagator)
    _configured = True


def shutdown_telemetry() -> None:
    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        shutdown = getattr(provider, "shutdown", None)
        if shutdown:
            shutdown()


def inject(carrier: MutableMapping[str, str], ctx: context.Context | None = None) -> MutableMapping[str, str]:
    """Write the current (or given) trace context into a message's fields or gRPC metadata."""
    _propagator.inject(carrier, context=ctx)
    return carrier


def extract(carrier: Mapping[str, str]) -> context.Context:
    return _propagator.extract(carrier)


def trace_id_hex(span: trace.Span | None = None) -> str:
    ctx = (span or trace.get_current_span()).get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""
