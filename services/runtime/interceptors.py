"""gRPC interceptors shared by every service and client: traces, metrics, logs, error mapping, deadlines."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.runtime.errors import InvalidArgument, ServiceError
from services.runtime.telemetry import extract, inject

log = logging.getLogger("tapewatch.grpc")
tracer = trace.get_tracer("tapewatch.grpc")
meter = metrics.get_meter("tapewatch.grpc")
server_duration = meter.create_histogram(
    "rpc.server.duration", unit="ms", description="gRPC server call time"
)
client_duration = meter.create_histogram(
    "rpc.client.duration", unit="ms", description="gRPC client call time"
)


class Undecodable:
    """Stands in for a request whose bytes do not decode (e.g. invalid UTF-8 in a string field)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def reason(self, what: str) -> str:
        return (
            f"request is not a valid {what}: a string field holds invalid UTF-8 or the bytes are not "
            f"this message ({type(self.error).__name__})"
        )


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def decode(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception as exc:  # protobuf raises DecodeError; keep the call alive to answer clearly
            return Undecodable(exc)

    return decode


def _split(method: str) -> tuple[str, str]:
    service, _, name = method.lstrip("/").rpartition("/")
    return service, name


class ServerInterceptor(grpc.aio.ServerInterceptor):
    """One SERVER span per call (child of the caller's trace), duration metric, errors mapped to statuses.

    Handlers raise ServiceError subclasses for expected failures; anything else is logged with its
    traceback and answered INTERNAL. Unary calls are cut at the client's deadline. Requests that do not
    decode reach unary handlers as INVALID_ARGUMENT, and streaming handlers as `Undecodable` items.
    """

    def __init__(self, service_label: str) -> None:
        self.label = service_label

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method
        if method.startswith(("/grpc.health.", "/grpc.reflection.")):
            return handler
        metadata = {k: v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}
        rpc_service, rpc_method = _split(method)
        attrs = {
            "rpc.system": "grpc",
            "rpc.service": rpc_service,
            "rpc.method": rpc_method,
            "tapewatch.service": self.label,
        }
        span_name = f"{self.label}.{rpc_method}"

        def guard_unary(behavior: Any) -> Any:
            async def run(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
                with tracer.start_as_current_span(
                    span_name, context=extract(metadata), kind=SpanKind.SERVER, attributes=attrs
                ) as span:
                    started = time.perf_counter()
                    code = grpc.StatusCode.OK
                    try:
                        if isinstance(request_or_iterator, Undecodable):
                            raise InvalidArgument(request_or_iterator.reason(rpc_method + " request"))
                        remaining = context.time_remaining()
                        async with asyncio.timeout(remaining):
                            return await behavior(request_or_iterator, context)
                    except TimeoutError:
                        code = grpc.StatusCode.DEADLINE_EXCEEDED
                        span.set_status(Status(StatusCode.ERROR, "deadline exceeded"))
                        await context.abort(code, f"{rpc_method}: deadline exceeded")
                    except ServiceError as exc:
                        code = exc.code
                        span.set_status(Status(StatusCode.ERROR, str(exc)))
                        await context.abort(exc.code, str(exc))
                    except grpc.aio.AbortError:
                        code = context.code() or grpc.StatusCode.UNKNOWN
                        raise
                    except Exception as exc:
                        code = grpc.StatusCode.INTERNAL
                        span.record_exception(exc)
                        span.set_status(Status(StatusCode.ERROR, repr(exc)))
                        log.exception("unhandled error in %s", method)
                        await context.abort(code, f"{rpc_method}: internal error ({type(exc).__name__})")
                    finally:
                        ms = (time.perf_counter() - started) * 1000
                        server_duration.record(ms, {"rpc.method": rpc_method, "rpc.grpc.status": code.name})

            return run

        def guard_stream(behavior: Any) -> Any:
            async def run(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
                with tracer.start_as_current_span(
                    span_name, context=extract(metadata), kind=SpanKind.SERVER, attributes=attrs
                ) as span:
                    try:
                        if isinstance(request_or_iterator, Undecodable):
                            raise InvalidArgument(request_or_iterator.reason(rpc_method + " request"))
                        async for item in behavior(request_or_iterator, context):
                            yield item
                    except ServiceError as exc:
                        span.set_status(Status(StatusCode.ERROR, str(exc)))
                        await context.abort(exc.code, str(exc))
                    except (grpc.aio.AbortError, asyncio.CancelledError):
                        raise
                    except Exception as exc:
                        span.record_exception(exc)
                        log.exception("unhandled error in %s", method)
                        await context.abort(
                            grpc.StatusCode.INTERNAL, f"{rpc_method}: internal error ({type(exc).__name__})"
                        )

            return run

        kwargs = {
            "request_deserializer": _tolerant(handler.request_deserializer),
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(guard_unary(handler.unary_unary), **kwargs)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(guard_unary(handler.stream_unary), **kwargs)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(guard_stream(handler.unary_stream), **kwargs)
        return grpc.stream_stream_rpc_method_handler(guard_stream(handler.stream_stream), **kwargs)


_pending: set[asyncio.Future[None]] = set()


class ClientInterceptor(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
):
    """One CLIENT span per call with the trace context sent in metadata, and a duration metric."""

    def __init__(self, caller: str) -> None:
        self.caller = caller

    def _start(self, details: grpc.aio.ClientCallDetails) -> tuple[trace.Span, grpc.aio.ClientCallDetails]:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        service, name = _split(method)
        span = tracer.start_span(
            f"{self.caller} -> {name}",
            kind=SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        )
        carrier: dict[str, str] = {}
        inject(carrier, trace.set_span_in_context(span))
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        for key, value in carrier.items():
            metadata[key] = value
        new = grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )
        return span, new

    def _finish(self, span: trace.Span, started: float, method: str) -> Callable[[Any], None]:
        async def finish(call: Any) -> None:
            code = await call.code()
            if code != grpc.StatusCode.OK:
                span.set_status(Status(StatusCode.ERROR, code.name))
            client_duration.record((time.perf_counter() - started) * 1000, {"rpc.method": method})
            span.end()

        def done(call: Any) -> None:
            _pending.add(task := asyncio.ensure_future(finish(call)))
            task.add_done_callback(_pending.discard)

        return done

    async def _intercept(self, continuation: Any, details: grpc.aio.ClientCallDetails, request: Any) -> Any:
        span, new_details = self._start(details)
        started = time.perf_counter()
        call = await continuation(new_details, request)
        call.add_done_callback(self._finish(span, started, str(details.method)))
        return call

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await self._intercept(continuation, details, request)

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await self._intercept(continuation, details, request)

    async def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return await self._intercept(continuation, details, request_iterator)


def insecure_channel(address: str, caller: str, **options: Any) -> grpc.aio.Channel:
    """A channel to another Tapewatch service with tracing and sane keepalive."""
    opts = [("grpc.keepalive_time_ms", 30_000), ("grpc.enable_retries", 1), *options.items()]
    return grpc.aio.insecure_channel(address, options=opts, interceptors=[ClientInterceptor(caller)])
