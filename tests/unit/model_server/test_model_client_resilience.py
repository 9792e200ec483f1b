"""ModelClient failure handling against a fake Triton: retry UNAVAILABLE only, deadlines, circuit breaker."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from opentelemetry.trace import SpanKind
from tritonclient.utils import InferenceServerException

from services.model_client import (
    Backoff,
    CircuitBreaker,
    ModelClient,
    ModelRejected,
    ModelTimeout,
    ModelUnavailable,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeResult:
    outputs: dict[str, np.ndarray]

    def as_numpy(self, name: str) -> np.ndarray | None:
        return self.outputs.get(name)  # tritonclient: None for an output not in the reply


def unavailable() -> InferenceServerException:
    return InferenceServerException("failed to connect to all addresses", status="StatusCode.UNAVAILABLE")


@dataclass
class FakeTriton:
    """Answers from a script: an exception is raised, anything else is returned as the llm's text."""

    script: Iterator[Any]
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def infer(self, model: str, inputs: list[Any], **kwargs: Any) -> FakeResult:
        self.calls.append({"model": model, "inputs": [i.name() for i in inputs], **kwargs})
        answer = next(self.script)
        if isinstance(answer, Exception):
            raise answer
        return FakeResult({"text_output": np.array([[answer.encode()]], dtype=np.object_)})

    async def get_inference_statistics(self, model: str, **_: Any) -> dict[str, Any]:
        queue = {"count": str(len(self.calls)), "ns": str(len(self.calls) * 2_000_000)}
        return {"model_stats": [{"name": model, "inference_stats": {"queue": queue}}]}

    async def close(self) -> None:
        pass


def make_client(
    script: list[Any], retries: int = 3, breaker: CircuitBreaker | None = None
) -> tuple[ModelClient, FakeTriton, list[float]]:
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    fake = FakeTriton(iter(script))
    client = ModelClient(
        "fake:8001",
        deadline_s=30,
        retries=retries,
        breaker=breaker or CircuitBreaker(failures=5, reset_after_s=10),
        backoff=Backoff(base_s=0.1, cap_s=1.0, jitter=lambda: 1.0),
        triton=fake,
        sleep=sleep,
    )
    return client, fake, slept


async def test_unavailable_is_retried_with_exponential_backoff() -> None:
    client, fake, slept = make_client([unavailable(), unavailable(), "ok"])
    result = await client.generate("story", 8)
    assert (result.text, result.attempts) == ("ok", 3)
    assert slept == [0.1, 0.2]
    assert fake.calls[0]["inputs"] == ["text_input", "max_tokens"]
    assert 0 < fake.calls[0]["client_timeout"] <= 30


async def test_retries_give_up_with_model_unavailable() -> None:
    client, fake, slept = make_client([unavailable()] * 10, retries=2)
    with pytest.raises(ModelUnavailable, match="after 3 attempts"):
        await client.generate("story", 8)
    assert len(fake.calls) == 3 and slept == [0.1, 0.2]


@pytest.mark.parametrize("status", ["INTERNAL", "INVALID_ARGUMENT", "NOT_FOUND"])
async def test_other_errors_are_not_retried_and_keep_the_circuit_closed(status: str) -> None:
    breaker = CircuitBreaker(failures=1)
    error = InferenceServerException(
        "Traceback (most recent call last):\n  File x\nValueError: text_input is empty\n\nAt:\n",
        status=f"StatusCode.{status}",
    )
    client, fake, _ = make_client([error], breaker=breaker)
    with pytest.raises(ModelRejected, match="ValueError: text_input is empty") as caught:
        await client.generate("", 8)
    assert caught.value.status == status and len(fake.calls) == 1
    assert breaker.state == "closed"


async def test_deadline_exceeded_is_a_timeout_and_not_retried() -> None:
    client, fake, _ = make_client(
        [InferenceServerException("Deadline Exceeded", status="StatusCode.DEADLINE_EXCEEDED")]
    )
    with pytest.raises(ModelTimeout):
        await client.generate("story", 8, deadline_s=0.5)
    assert len(fake.calls) == 1 and fake.calls[0]["client_timeout"] <= 0.5


async def test_guided_request_carries_the_schema_and_queue_time() -> None:
    client, fake, _ = make_client(['{"a":1}', '{"a":2}'])
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    await client.generate("story", 16, temperature=0.2, json_schema=schema)
    result = await client.generate("story", 16, json_schema=schema)
    assert result.json() == {"a": 2}
    assert fake.calls[0]["inputs"] == [
        "text_input",
        "max_tokens",
        "temperature",
        "guided_decoding_guide_type",
        "guided_decoding_guide",
    ]
    assert result.queue_s == pytest.approx(0.002)


async def test_circuit_opens_fails_fast_then_half_opens() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=2, reset_after_s=10, clock=clock)
    client, fake, _ = make_client(
        [unavailable(), unavailable(), unavailable(), "ok"], retries=0, breaker=breaker
    )
    for _ in range(2):
        with pytest.raises(ModelUnavailable):
            await client.generate("story", 8)
    assert breaker.state == "open"
    with pytest.raises(ModelUnavailable, match="circuit open") as caught:
        await client.generate("story", 8)
    assert caught.value.status == "CIRCUIT_OPEN" and len(fake.calls) == 2  # failed fast, nothing sent

    clock.now = 10.0
    assert breaker.state == "half_open"
    with pytest.raises(ModelUnavailable):  # the trial call fails: open for another cool-down
        await client.generate("story", 8)
    assert breaker.state == "open" and len(fake.calls) == 3

    clock.now = 20.0
    assert (await client.generate("story", 8)).text == "ok"
    assert breaker.state == "closed"


def test_half_open_lets_a_single_trial_through() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=1, reset_after_s=5, clock=clock)
    breaker.failure()
    assert not breaker.allow() and breaker.retry_in_s() == 5
    clock.now = 5
    assert breaker.allow() and not breaker.allow()
    breaker.success()
    assert breaker.allow() and breaker.state == "closed"


async def test_embed_refuses_empty_texts_before_sending() -> None:
    client, fake, _ = make_client([])
    with pytest.raises(ValueError, match="non-empty"):
        await client.embed(["BTC up", "  "])
    assert fake.calls == []


async def test_each_call_is_one_client_span(spans: Any) -> None:
    client, _, _ = make_client([unavailable(), "ok"])
    await client.generate("story", 8)
    (span,) = [s for s in spans.get_finished_spans() if s.name == "model llm"]
    assert span.kind == SpanKind.CLIENT
    assert span.attributes is not None and span.attributes["attempts"] == 2


async def test_a_cancelled_trial_call_does_not_wedge_the_breaker() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=1, reset_after_s=5, clock=clock)
    breaker.failure()
    clock.now = 5

    class Hanging(FakeTriton):
        async def infer(self, model: str, inputs: list[Any], **kwargs: Any) -> FakeResult:
            await asyncio.sleep(60)
            raise AssertionError("unreachable")

    client = ModelClient("fake:8001", breaker=breaker, triton=Hanging(iter([])))
    call = asyncio.create_task(client.generate("story", 8))
    await asyncio.sleep(0.01)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert breaker.allow()  # the next caller gets the trial
