"""Prefix reuse in the llama.cpp engine (in process): the static prompt prefix is evaluated once, two prompt
families that interleave each keep theirs, and a cached prefix never changes the answer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.model_server.llm import LlamaEngine, default_gguf

pytestmark = pytest.mark.integration

ANALYST = "You are a crypto risk analyst. Rate each story from -5 to 5 and explain briefly.\n" * 6
TRANSLATOR = "You translate crypto headlines into plain French, one line per headline, no comments.\n" * 6


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaEngine]:
    engine = LlamaEngine(default_gguf(), n_ctx=1024, prefix_slots=2)
    yield engine
    engine.close()


def test_the_shared_prefix_is_evaluated_once(engine: LlamaEngine) -> None:
    first = engine.generate(f"{ANALYST}Story: Binance halts withdrawals\nRating:", 4)
    second = engine.generate(f"{ANALYST}Story: Tether mints $1B\nRating:", 4)
    prefix = len(engine.tokenize(ANALYST))
    assert first.cached_tokens < prefix <= second.cached_tokens + 2


def test_interleaved_prompt_families_keep_their_prefixes(engine: LlamaEngine) -> None:
    for story in ("SOL outage", "ETF approved"):
        engine.generate(f"{TRANSLATOR}Headline: {story}\nFrench:", 2)
    back = engine.generate(f"{ANALYST}Story: Kraken settles with the SEC\nRating:", 2)
    assert back.cached_tokens >= len(engine.tokenize(ANALYST)) - 2  # restored, not evaluated again


def test_a_cached_prefix_gives_the_same_answer(engine: LlamaEngine) -> None:
    prompt = f"{ANALYST}Story: Circle pauses USDC minting\nRating:"
    engine.forget()
    cold = engine.generate(prompt, 12)
    warm = engine.generate(prompt, 12)
    assert cold.cached_tokens <= 1 and warm.cached_tokens == warm.prompt_tokens - 1
    assert warm.text == cold.text
