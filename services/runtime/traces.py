"""`tapewatch traces`: a local OTLP/gRPC trace receiver that prints, per trace, its stages and latencies.

Point the services at it with TAPEWATCH_OTEL_EXPORTER=otlp TAPEWATCH_OTEL_ENDPOINT=http://127.0.0.1:4317.
Tests use TraceCollector directly to assert the shape of a trace.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


@dataclass(frozen=True)
class SpanRecord:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    service: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind and kind not in ("array_value", "kvlist_value") else str(v)


class TraceCollector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: dict[str, list[SpanRecord]] = defaultdict(list)
        self.last_update: dict[str, float] = {}
        self.changed = asyncio.Event()

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.aio.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        now = time.monotonic()
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for s in scope.spans:
                    attrs = {a.key: _value(a.value) for a in s.attributes}
                    record = SpanRecord(
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_id=s.parent_span_id.hex(),
                        name=s.name,
                        service=str(attrs.get("tapewatch.service") or resource.get("service.name", "?")),
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                        attributes=attrs,
                    )
                    self.spans[record.trace_id].append(record)
                    self.last_update[record.trace_id] = now
        self.changed.set()
        return trace_service_pb2.ExportTraceServiceResponse()

    def edges(self, trace_id: str) -> set[tuple[str, str]]:
        """(parent span name, child span name) pairs of one trace."""
        spans = self.spans.get(trace_id, [])
        by_id = {s.span_id: s for s in spans}
        return {(by_id[s.parent_id].name, s.name) for s in spans if s.parent_id in by_id}

    async def wait_for(self, predicate: Any, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("traces did not reach the expected shape in time")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                pass


def summarise(spans: list[SpanRecord]) -> dict[str, Any]:
    """A trace as its stages in time order, each with its offset from the start and its latency."""
    ordered = sorted(spans, key=lambda s: s.start_ns)
    t0 = ordered[0].start_ns
    by_id = {s.span_id: s for s in spans}

    def depth(s: SpanRecord) -> int:
        d = 0
        while s.parent_id in by_id and d < 50:
            s, d = by_id[s.parent_id], d + 1
        return d

    return {
        "trace_id": ordered[0].trace_id,
        "total_ms": round((max(s.end_ns for s in spans) - t0) / 1e6, 3),
        "stages": [
            {
                "name": s.name,
                "service": s.service,
                "depth": depth(s),
                "offset_ms": round((s.start_ns - t0) / 1e6, 3),
                "latency_ms": round(s.duration_ms, 3),
            }
            for s in ordered
        ],
    }


def format_trace(summary: dict[str, Any]) -> str:
    lines = [f"trace {summary['trace_id']}  total {summary['total_ms']:.1f} ms"]
    for st in summary["stages"]:
        indent = "  " * (st["depth"] + 1)
        lines.append(
            f"{indent}+{st['offset_ms']:>9.1f} ms  {st['name']}  [{st['service']}]  {st['latency_ms']:.2f} ms"
        )
    return "\n".join(lines)


async def start_collector(
    host: str = "127.0.0.1", port: int = 0
) -> tuple[grpc.aio.Server, TraceCollector, int]:
    collector = TraceCollector()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server, collector, bound


async def _run(args: argparse.Namespace) -> None:
    server, collector, port = await start_collector(args.host, args.port)
    print(f"OTLP trace receiver on {args.host}:{port}; Ctrl-C stops it", file=sys.stderr)
    printed: set[str] = set()
    try:
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for trace_id, updated in list(collector.last_update.items()):
                if trace_id in printed or now - updated < args.idle:
                    continue
                summary = summarise(collector.spans[trace_id])
                print(json.dumps(summary) if args.json else format_trace(summary), flush=True)
                printed.add(trace_id)
    finally:
        await server.stop(0)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tapewatch traces", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4317)
    parser.add_argument("--idle", type=float, default=2.0, help="print a trace once quiet this many seconds")
    parser.add_argument("--json", action="store_true", help="one JSON object per trace")
    try:
        asyncio.run(_run(parser.parse_args(argv)))
    except KeyboardInterrupt:
        pass
    return 0
