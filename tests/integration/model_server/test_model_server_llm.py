"""The `llm` model on the real CPU server: guided JSON, plain completions, a burst of 16, and bad input."""

from __future__ import annotations

import asyncio
import json
from typing import Literal

import numpy as np
import pytest
import tritonclient.grpc.aio as triton_aio
from pydantic import BaseModel, Field
from tritonclient.grpc import InferInput
from tritonclient.utils import InferenceServerException

from services.model_client import ModelClient, ModelRejected
from services.model_server.contract import EMBEDDER, LLM
from services.model_server.process import ModelServerProcess

pytestmark = pytest.mark.integration

PROMPT = (
    "You judge whether a crypto news story moves markets. Answer with one JSON object.\n"
    "Story: Coinbase lists a small memecoin.\n"
    'Answer: {"material":false,"direction":"none","assets":[],"vol_prob":0.05,"score":0,'
    '"why":"minor listing"}\n'
    "Story: {story}\nAnswer: "
)


class Judgement(BaseModel):
    material: bool
    direction: Literal["up", "down", "none"]
    assets: list[Literal["BTC", "ETH", "SOL", "BNB", "DOGE"]] = Field(max_length=3)
    vol_prob: float = Field(ge=0, le=1)
    score: int = Field(ge=-5, le=5)
    why: str = Field(max_length=120)


@pytest.mark.parametrize(
    "story", ["BREAKING: Binance halts withdrawals after hack", "Elon Musk: Tesla will accept Dogecoin again"]
)
async def test_guided_answers_validate_against_the_schema(model_client: ModelClient, story: str) -> None:
    result = await model_client.generate(
        PROMPT.replace("{story}", story), max_tokens=96, json_schema=Judgement.model_json_schema()
    )
    Judgement.model_validate_json(result.text)


async def test_a_tight_budget_still_closes_the_json(model_client: ModelClient) -> None:
    schema = {"type": "object", "properties": {"why": {"type": "string"}}, "required": ["why"]}
    prompt = 'Explain the 2022 crypto crash at length.\nAnswer: {"why": "'
    result = await model_client.generate(prompt, max_tokens=12, json_schema=schema)
    assert set(json.loads(result.text)) >= {"why"}


async def test_plain_completion_without_a_guide(model_client: ModelClient) -> None:
    result = await model_client.generate("Bitcoin is a", max_tokens=8)
    assert result.text.strip() and result.attempts == 1
    assert 1 <= result.tokens <= 8  # sequence_length: what was generated, within the budget
    assert result.tokens_per_s == pytest.approx(result.tokens / result.latency_s)


async def test_sequence_length_counts_the_generated_tokens(model_client: ModelClient) -> None:
    short = await model_client.generate("Bitcoin is a", max_tokens=2, temperature=0.0)
    longer = await model_client.generate("Bitcoin is a", max_tokens=12, temperature=0.0)
    assert short.tokens == 2 and longer.tokens > short.tokens
    assert longer.text.startswith(short.text)  # greedy: the same first tokens


async def test_sixteen_concurrent_requests_queue_and_complete(model_client: ModelClient) -> None:
    stories = [f"Story {i}: exchange {i} pauses deposits" for i in range(16)]
    results = await asyncio.gather(*(model_client.generate(PROMPT.replace("{story}", s), 6) for s in stories))
    assert all(r.text for r in results)
    queued = [r.queue_s for r in results if r.queue_s is not None]
    assert queued and max(queued) > 0  # requests waited in Triton's queue, one at a time on the context
    reading = await model_client.queue_reading(LLM.name)
    assert reading.requests >= 16 and reading.queue_s > 0


@pytest.mark.parametrize(
    ("request_kwargs", "reason"),
    [
        ({"prompt": "", "max_tokens": 4}, "text_input is empty"),
        ({"prompt": "tick " * 5000, "max_tokens": 4}, "exceeds the context"),
        ({"prompt": "hi", "max_tokens": 16, "json_schema": {"type": "objectt"}}, "invalid json_schema guide"),
        ({"prompt": "hi", "max_tokens": 0}, "max_tokens must be at least 1"),
    ],
)
async def test_bad_llm_input_is_refused_and_the_server_keeps_serving(
    model_client: ModelClient, request_kwargs: dict[str, object], reason: str
) -> None:
    with pytest.raises(ModelRejected, match=reason):
        await model_client.generate(**request_kwargs)  # type: ignore[arg-type]
    assert (await model_client.generate("Ether is", 2)).text


async def test_empty_embedder_text_and_wrong_dtype_get_clear_triton_errors(
    model_server: ModelServerProcess,
) -> None:
    client = triton_aio.InferenceServerClient(model_server.grpc_url)
    try:
        empty = InferInput(EMBEDDER.inputs[0].name, [1, 1], "BYTES")
        empty.set_data_from_numpy(np.array([[b""]], dtype=np.object_))
        with pytest.raises(InferenceServerException, match="text is empty"):
            await client.infer(EMBEDDER.name, [empty])

        wrong = InferInput(EMBEDDER.inputs[0].name, [1, 1], "FP32")
        wrong.set_data_from_numpy(np.array([[1.0]], dtype=np.float32))
        expected = "data-type is 'FP32', but model 'embedder' expects 'BYTES'"
        with pytest.raises(InferenceServerException, match=expected) as caught:
            await client.infer(EMBEDDER.name, [wrong])
        assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"

        ok = InferInput(EMBEDDER.inputs[0].name, [1, 1], "BYTES")
        ok.set_data_from_numpy(np.array([[b"SOL breaks out"]], dtype=np.object_))
        assert (await client.infer(EMBEDDER.name, [ok])).as_numpy("embedding").shape == (1, 384)
    finally:
        await client.close()
