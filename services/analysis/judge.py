"""One judgement per story: the model with a JSON-schema guide, one retry on an invalid reply, and the rules
when the model server is down, too slow (the deadline covers queueing for a slot too) or wrong twice."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Literal

from opentelemetry import metrics, trace

from services.analysis.judgement import InvalidReply, Judgement, parse_reply, reply_schema
from services.analysis.prompt import Prompt, StoryView
from services.analysis.rules import judge_by_rules
from services.model_client import ModelClient, ModelError

log = logging.getLogger("tapewatch.analysis")
tracer = trace.get_tracer("tapewatch.analysis")
verdicts = metrics.get_meter("tapewatch.analysis").create_counter(
    "tapewatch.analysis.judgements", description="judgements, by who judged and why"
)


@dataclass(frozen=True)
class Verdict:
    judgement: Judgement
    judged_by: Literal["llm", "rules"]
    raw: str  # the model's replies as received, "" for the rules
    attempts: int
    model_ms: float
    fallback_reason: str = ""


@dataclass
class Judge:
    model: ModelClient | None
    prompt: Prompt
    deadline_s: float = 10.0
    max_tokens: int = 200
    retry_temperature: float = 0.3
    slots: asyncio.Semaphore | None = None

    async def judge(self, story: StoryView) -> Verdict:
        started = time.perf_counter()
        if self.model is None:
            return self._rules(story, "no model configured", "", 0, started)
        text = self.prompt.render(story)
        schema = reply_schema(story.assets)
        replies: list[str] = []
        problem = ""
        try:
            async with asyncio.timeout(self.deadline_s):
                async with self.slots or contextlib.nullcontext():
                    for attempt, temperature in enumerate((None, self.retry_temperature), start=1):
                        left = max(self.deadline_s - (time.perf_counter() - started), 0.05)
                        result = await self.model.generate(
                            text,
                            self.max_tokens,
                            temperature=temperature,
                            json_schema=schema,
                            deadline_s=left,
                        )
                        replies.append(result.text)
                        try:
                            judgement = parse_reply(result.text, story.assets)
                        except InvalidReply as exc:
                            problem = str(exc)
                            log.warning("invalid model reply (attempt %d): %s", attempt, exc)
                            continue
                        verdicts.add(1, {"judged_by": "llm", "attempts": attempt})
                        return Verdict(judgement, "llm", result.text, attempt, _ms(started))
            reason = f"model reply invalid twice: {problem}"
        except ModelError as exc:
            reason = f"model server unavailable: {exc}"
        except TimeoutError:
            reason = f"model past its {self.deadline_s:g} s deadline"
        return self._rules(story, reason, "\n".join(replies), len(replies), started)

    def _rules(self, story: StoryView, reason: str, raw: str, attempts: int, started: float) -> Verdict:
        log.warning("rules judge the story: %s", reason)
        trace.get_current_span().add_event("rules fallback", {"reason": reason})
        verdicts.add(1, {"judged_by": "rules"})
        return Verdict(judge_by_rules(story), "rules", raw, attempts, _ms(started), reason)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
