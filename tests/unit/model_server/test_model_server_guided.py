"""Guided decoding on a byte-level vocabulary: masks, forced runs and closing within any token budget."""

from __future__ import annotations

import json
from typing import ClassVar, Literal

import llguidance as llg
import numpy as np
import pytest
from pydantic import BaseModel, Field

from services.model_server.guided import Guide, GuideError, Vocabulary, bound_numbers, compile_guide


class ByteTokenizer:
    """One token per byte plus an end token: every path through a grammar is reachable."""

    eos_token_id = 256
    bos_token_id = None
    tokens: ClassVar[list[bytes]] = [bytes([i]) for i in range(256)] + [b"<eos>"]
    special_token_ids: ClassVar[list[int]] = [256]

    def __call__(self, text: bytes) -> list[int]:
        return list(text)


class Judgement(BaseModel):
    material: bool
    direction: Literal["up", "down", "none"]
    assets: list[Literal["BTC", "ETH", "SOL"]] = Field(max_length=3)
    vol_prob: float = Field(ge=0, le=1)
    score: int = Field(ge=-5, le=5)
    why: str


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    tokenizer = llg.LLTokenizer(llg.TokenizerWrapper(ByteTokenizer()))
    return Vocabulary.build(tokenizer, tokenizer.vocab_size)


def schema_guide(vocab: Vocabulary, schema: dict[str, object]) -> Guide:
    return Guide(vocab, compile_guide("json_schema", json.dumps(schema)))


def random_answer(guide: Guide, max_tokens: int, rng: np.random.Generator) -> list[int]:
    """Decode like the engine does, choosing uniformly among the allowed tokens (a worst-case model)."""
    out = guide.start(max_tokens)
    while len(out) < max_tokens and not guide.done:
        allowed = np.flatnonzero(guide.allowed())
        token = int(rng.choice(allowed))
        if token == ByteTokenizer.eos_token_id:
            break
        step, closed = guide.accept(token, max_tokens - len(out))
        out += step
        if closed:
            break
    return out


@pytest.mark.parametrize("max_tokens", [100, 120, 160, 400])
def test_every_answer_validates_within_the_budget(vocab: Vocabulary, max_tokens: int) -> None:
    rng = np.random.default_rng(max_tokens)
    for _ in range(10):
        guide = schema_guide(vocab, Judgement.model_json_schema())
        out = random_answer(guide, max_tokens, rng)
        text = vocab.tokenizer.decode_str(out)
        assert len(out) <= max_tokens
        Judgement.model_validate_json(text)


def test_a_budget_below_the_smallest_answer_is_refused(vocab: Vocabulary) -> None:
    guide = schema_guide(vocab, Judgement.model_json_schema())
    with pytest.raises(GuideError, match="too small"):
        guide.start(20)


def test_forced_runs_and_masks(vocab: Vocabulary) -> None:
    schema = {"type": "object", "properties": {"side": {"enum": ["bid", "ask"]}}, "required": ["side"]}
    guide = schema_guide(vocab, {**schema, "additionalProperties": False})
    assert vocab.tokenizer.decode_str(guide.start(50)) == '{"side":"'
    logits = np.zeros(vocab.n_vocab, dtype=np.float32)
    guide.mask(logits)
    assert sorted(chr(t) for t in np.flatnonzero(np.isfinite(logits))) == ["a", "b"]
    step, closed = guide.accept(ord("a"), 40)
    assert vocab.tokenizer.decode_str(step) == 'ask"}' and not closed
    assert guide.done


def test_closing_from_inside_a_string_escape(vocab: Vocabulary) -> None:
    schema = {"type": "object", "properties": {"why": {"type": "string"}, "n": {"type": "integer"}}}
    guide = schema_guide(vocab, {**schema, "required": ["why", "n"], "additionalProperties": False})
    text = vocab.tokenizer.decode_str(guide.start(100))
    for ch in 'a \\"q\\':  # ends right after a backslash: the closer must finish the escape first
        guide.accept(ord(ch), 100)
        text += ch
    tail = guide.closing(20)
    assert tail is not None
    assert json.loads(text + vocab.tokenizer.decode_str(tail)) == {"why": 'a "q"', "n": 0}
    assert guide.closing(len(tail) - 1) is None


@pytest.mark.parametrize(
    ("kind", "guide", "reason"),
    [
        ("json_schema", "not json", "not JSON"),
        ("json_schema", "[1, 2]", "JSON object"),
        ("json_schema", '{"type": "objectt"}', "objectt"),
        ("ebnf_grammar", "root ::= 'a'", "not one of"),
        ("regex", "(", "invalid regex"),
    ],
)
def test_bad_guides_name_the_reason(kind: str, guide: str, reason: str) -> None:
    with pytest.raises(GuideError, match=reason):
        compile_guide(kind, guide)


def test_numbers_get_a_decimal_step_unless_already_discrete() -> None:
    schema = {
        "type": "object",
        "properties": {
            "p": {"type": "number", "minimum": 0, "maximum": 1},
            "level": {"type": "number", "enum": [1.5, 2.5]},
            "n": {"type": "integer"},
            "type": {"type": "number", "multipleOf": 0.5},
        },
    }
    props = bound_numbers(schema)["properties"]
    assert props["p"]["multipleOf"] == pytest.approx(0.001)
    assert "multipleOf" not in props["level"] and "multipleOf" not in props["n"]
    assert props["type"]["multipleOf"] == 0.5
