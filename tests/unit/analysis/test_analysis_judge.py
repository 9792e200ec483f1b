"""The judge's control flow: one retry on an invalid reply, then the rules; deadlines; a down server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from services.analysis.judge import Judge
from services.analysis.prompt import StoryView, load_prompt
from services.model_client import GenerateResult, ModelUnavailable

GOOD = json.dumps(
    {
        "materiality": "notable",
        "event_type": "influencer_post",
        "assets": {"DOGE": {"direction": "bullish", "vol_burst_probability": 0.6}},
        "urgency": "medium",
        "horizon_minutes": 30,
        "confidence": 0.5,
        "rationale": "Musk on Doge",
    }
)
STORY = StoryView("Doge to the moon", "x", "x", "elonmusk", ("DOGE",), 5)


class ScriptedModel:
    """Stands in for ModelClient.generate (unit test of the judge's logic only)."""

    def __init__(self, *replies: str | Exception, delay_s: float = 0.0) -> None:
        self.replies = list(replies)
        self.calls: list[dict[str, Any]] = []
        self.delay_s = delay_s

    async def generate(self, prompt: str, max_tokens: int, **kw: Any) -> GenerateResult:
        self.calls.append({"prompt": prompt, "max_tokens": max_tokens, **kw})
        await asyncio.sleep(self.delay_s)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return GenerateResult(text=reply, latency_s=0.01, attempts=1)


def judge(model: ScriptedModel, deadline_s: float = 5.0) -> Judge:
    return Judge(model, load_prompt(), deadline_s=deadline_s)  # type: ignore[arg-type]


async def test_a_valid_reply_is_the_llm_judgement() -> None:
    model = ScriptedModel(GOOD)
    v = await judge(model).judge(STORY)
    assert v.judged_by == "llm" and v.attempts == 1 and v.raw == GOOD
    call = model.calls[0]
    assert call["json_schema"]["properties"]["assets"]["required"] == ["DOGE"]
    assert call["temperature"] is None and call["prompt"].endswith("Judgement: ")


async def test_one_retry_on_an_invalid_reply() -> None:
    model = ScriptedModel('{"materiality": "huge"}', GOOD)
    v = await judge(model).judge(STORY)
    assert v.judged_by == "llm" and v.attempts == 2 and model.calls[1]["temperature"] == 0.3


async def test_invalid_twice_falls_back_to_rules_and_keeps_the_replies() -> None:
    v = await judge(ScriptedModel("nope", '{"materiality": "huge"}')).judge(STORY)
    assert v.judged_by == "rules" and v.attempts == 2
    assert v.fallback_reason.startswith("model reply invalid twice") and "nope" in v.raw
    assert v.judgement.rationale.startswith("rules: ")


async def test_a_down_server_falls_back_to_rules() -> None:
    v = await judge(ScriptedModel(ModelUnavailable("llm", "UNAVAILABLE", "connection refused"))).judge(STORY)
    assert v.judged_by == "rules" and "unavailable" in v.fallback_reason


async def test_a_slow_model_is_cut_at_the_deadline() -> None:
    v = await judge(ScriptedModel(GOOD, delay_s=5), deadline_s=0.2).judge(STORY)
    assert v.judged_by == "rules" and "deadline" in v.fallback_reason and v.model_ms < 1000


async def test_queueing_for_a_slot_counts_against_the_deadline() -> None:
    j = judge(ScriptedModel(GOOD, GOOD, delay_s=0.5), deadline_s=0.7)
    j.slots = asyncio.Semaphore(1)
    first, second = await asyncio.gather(j.judge(STORY), j.judge(STORY))
    assert first.judged_by == "llm" and second.judged_by == "rules"


@pytest.mark.parametrize("model", [None])
async def test_no_model_means_rules(model: None) -> None:
    v = await Judge(model, load_prompt()).judge(STORY)
    assert v.judged_by == "rules" and v.fallback_reason == "no model configured"
