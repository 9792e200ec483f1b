"""Async client of the model server (KServe v2 gRPC): the same code talks to the CPU server and to the GPU
Triton, with tensors built from the contract.

Every call has a deadline; UNAVAILABLE (server down or queue full) is retried with exponential back-off
within that deadline; N failures in a row open a circuit breaker that fails fast with ModelUnavailable until
a trial call succeeds. Each call is one CLIENT span and lands in the latency histogram; `generate` also
records the server's queue time, read from Triton's statistics endpoint.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from services.model_client.breaker import (
    Backoff,
    CircuitBreaker,
    ModelError,
    ModelRejected,
    ModelTimeout,
    ModelUnavailable,
)
from services.model_server.contract import EMBEDDER, LLM, ModelContract

tracer = trace.get_tracer(__name__)
_meter = metrics.get_meter(__name__)
_latency = _meter.create_histogram(
    "tapewatch.model.request.duration", unit="s", description="model call latency"
)
_tokens_per_s = _meter.create_histogram(
    "tapewatch.model.llm.tokens_per_second", unit="{token}/s", description="tokens generated / call latency"
)
_queue = _meter.create_histogram(
    "tapewatch.model.queue.duration", unit="s", description="time requests waited in the server's queue"
)

_BREAKER_FAILURES = {"UNAVAILABLE", "DEADLINE_EXCEEDED"}  # the server is not answering; anything else did


@dataclass(frozen=True)
class GenerateResult:
    text: str
    latency_s: float
    attempts: int
    queue_s: float | None = None  # mean queue time of the llm requests finished since the previous reading
    tokens: int = 0  # generated, from the server's sequence_length

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.latency_s if self.latency_s > 0 else 0.0

    def json(self) -> Any:
        return json.loads(self.text)


@dataclass(frozen=True)
class QueueReading:
    requests: int
    queue_s: float


def _status(exc: InferenceServerException) -> str:
    return (exc.status() or "UNKNOWN").removeprefix("StatusCode.")


def _short(message: str) -> str:
    """Triton wraps model errors in a traceback; keep its last line, where the reason is."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    reasons = [
        line for line in lines if ("Error: " in line or "Exception: " in line) and "Traceback" not in line
    ]
    return (reasons[-1] if reasons else lines[-1] if lines else message)[:500]


def _input(contract: ModelContract, name: str, values: npt.NDArray[Any]) -> InferInput:
    tensor = next(t for t in contract.inputs if t.name == name)
    infer_input = InferInput(tensor.name, list(values.shape), tensor.dtype)
    infer_input.set_data_from_numpy(values)
    return infer_input


class ModelClient:
    def __init__(
        self,
        url: str,
        deadline_s: float = 30.0,
        retries: int = 3,
        *,
        breaker: CircuitBreaker | None = None,
        backoff: Backoff | None = None,
        embed_batch: int = 32,
        triton: Any = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`url` is host:port of the gRPC endpoint; `triton` replaces the tritonclient (tests)."""
        if triton is None:
            from tritonclient.grpc.aio import InferenceServerClient

            triton = InferenceServerClient(url)
        self.url = url
        self.deadline_s = deadline_s
        self.retries = retries
        self.breaker = breaker or CircuitBreaker()
        self.backoff = backoff or Backoff()
        self.embed_batch = embed_batch
        self._triton = triton
        self._sleep = sleep
        self._last_queue: dict[str, QueueReading] = {}

    async def close(self) -> None:
        await self._triton.close()

    async def __aenter__(self) -> ModelClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def embed(self, texts: Sequence[str], deadline_s: float | None = None) -> npt.NDArray[np.float32]:
        """L2-normalised embeddings, one row per text."""
        if any(not t.strip() for t in texts):
            raise ValueError("embed: every text must be non-empty")  # one empty row fails its whole batch
        deadline = self._deadline(deadline_s)
        rows = []
        for start in range(0, len(texts), self.embed_batch):
            chunk = texts[start : start + self.embed_batch]
            values = np.array([[t.encode()] for t in chunk], dtype=np.object_)
            result, _ = await self._call(EMBEDDER, [_input(EMBEDDER, "text", values)], deadline, len(chunk))
            rows.append(result.as_numpy("embedding").astype(np.float32, copy=False))
        return np.concatenate(rows) if rows else np.zeros((0, 0), dtype=np.float32)

    async def generate(
        self,
        prompt: str,
        max_tokens: int,
        temperature: float | None = None,
        json_schema: dict[str, Any] | None = None,
        deadline_s: float | None = None,
    ) -> GenerateResult:
        """A completion of `prompt`; with `json_schema` the text is JSON valid against it."""
        inputs = [
            _input(LLM, "text_input", np.array([[prompt.encode()]], dtype=np.object_)),
            _input(LLM, "max_tokens", np.array([[max_tokens]], dtype=np.int32)),
        ]
        if temperature is not None:
            inputs.append(_input(LLM, "temperature", np.array([[temperature]], dtype=np.float32)))
        if json_schema is not None:
            inputs.append(
                _input(LLM, "guided_decoding_guide_type", np.array([[b"json_schema"]], dtype=np.object_))
            )
            guide = json.dumps(json_schema).encode()
            inputs.append(_input(LLM, "guided_decoding_guide", np.array([[guide]], dtype=np.object_)))
        started = time.perf_counter()
        result, attempts = await self._call(LLM, inputs, self._deadline(deadline_s), 1)
        latency = time.perf_counter() - started
        text = result.as_numpy("text_output").reshape(-1)[0].decode("utf-8", errors="replace")
        lengths = result.as_numpy("sequence_length")
        tokens = int(lengths.reshape(-1)[0]) if lengths is not None else 0
        outcome = GenerateResult(text, latency, attempts, await self._queue_time(LLM.name), tokens)
        if tokens:
            _tokens_per_s.record(outcome.tokens_per_s, {"model": LLM.name})
        return outcome

    async def queue_reading(self, model: str) -> QueueReading:
        """Cumulative requests and queue time of a model since the server started."""
        stats = await self._triton.get_inference_statistics(model, as_json=True, client_timeout=5.0)
        totals = [s["inference_stats"]["queue"] for s in stats.get("model_stats", [])]
        return QueueReading(
            requests=sum(int(q.get("count", 0)) for q in totals),
            queue_s=sum(int(q.get("ns", 0)) for q in totals) / 1e9,
        )

    async def _queue_time(self, model: str) -> float | None:
        try:
            now = await self.queue_reading(model)
        except InferenceServerException:
            return None  # statistics are best effort: a locked-down server may refuse them
        before = self._last_queue.get(model)
        self._last_queue[model] = now
        if before is None or now.requests <= before.requests:
            return None
        mean = (now.queue_s - before.queue_s) / (now.requests - before.requests)
        _queue.record(mean, {"model": model})
        return mean

    def _deadline(self, deadline_s: float | None) -> float:
        return time.monotonic() + (deadline_s or self.deadline_s)

    async def _call(
        self, contract: ModelContract, inputs: list[InferInput], deadline: float, items: int
    ) -> tuple[Any, int]:
        model = contract.name
        outputs = [InferRequestedOutput(t.name) for t in contract.outputs]
        with tracer.start_as_current_span(f"model {model}", kind=SpanKind.CLIENT) as span:
            span.set_attributes(
                {"rpc.system": "grpc", "server.address": self.url, "model": model, "items": items}
            )
            started = time.perf_counter()
            outcome = "error"
            try:
                result, attempts = await self._attempts(model, inputs, outputs, deadline, span)
                outcome = "ok"
                return result, attempts
            except ModelError as exc:
                outcome = exc.status.lower()
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                raise
            finally:
                _latency.record(time.perf_counter() - started, {"model": model, "outcome": outcome})

    async def _attempts(
        self,
        model: str,
        inputs: list[InferInput],
        outputs: list[InferRequestedOutput],
        deadline: float,
        span: Any,
    ) -> tuple[Any, int]:
        headers: dict[str, str] = {}
        propagate.inject(headers)
        attempt = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ModelTimeout(model, "DEADLINE_EXCEEDED", "deadline passed before the call")
            if not self.breaker.allow():
                raise ModelUnavailable(
                    model,
                    "CIRCUIT_OPEN",
                    f"circuit open after repeated failures; retry in {self.breaker.retry_in_s():.1f}s",
                )
            attempt += 1
            span.set_attribute("attempts", attempt)
            try:
                result = await self._triton.infer(
                    model,
                    inputs,
                    outputs=outputs,
                    headers=headers,
                    client_timeout=left,
                    timeout=int(left * 1e6),  # the server drops it from its queue when the caller gave up
                )
            except asyncio.CancelledError:
                self.breaker.abandon()
                raise
            except InferenceServerException as exc:
                status, message = _status(exc), _short(exc.message() or str(exc))
                if status not in _BREAKER_FAILURES:
                    self.breaker.success()  # the server answered: it is up, the request was wrong
                    raise ModelRejected(model, status, message) from None
                self.breaker.failure()
                if status == "DEADLINE_EXCEEDED":
                    raise ModelTimeout(model, status, message) from None
                delay = self.backoff.delay(attempt - 1)
                if attempt > self.retries or time.monotonic() + delay >= deadline:
                    raise ModelUnavailable(model, status, f"{message} (after {attempt} attempts)") from None
                await self._sleep(delay)
                continue
            self.breaker.success()
            return result, attempt
