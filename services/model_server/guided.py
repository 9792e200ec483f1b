"""Guided decoding with llguidance: a JSON schema (or a regex) becomes a matcher over the model's vocabulary.

Each step masks the logits to the tokens the grammar allows (a bitmask computed lazily over a token trie,
about 0.1 ms for Gemma's 262k tokens), forced runs such as the next key are appended without sampling, and
when the token budget runs low the document is closed along the shortest path the grammar allows, so every
answer parses and validates against the schema.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import llguidance as llg
import numpy as np
import numpy.typing as npt

GUIDE_TYPES = ("json_schema", "json", "regex")
WATCH_MARGIN = 8  # tokens of headroom on top of twice the smallest answer before budget checks start
NUMBER_DECIMALS = 3  # a `number` without multipleOf gets 0.001: a small model cannot spin out digits
_JSON_OPTIONS: Any = {"whitespace_flexible": False}  # compact JSON: no room to ramble in whitespace
# Single characters tried when closing a document; outside a string closers come first, inside the quote.
_OUTSIDE = '}]",0ftn123456789-.:[{'
_INSIDE = '"0abcdefghijklmnopqrstuvwxyz123456789 -.,'


class GuideError(ValueError):
    """The guide cannot be compiled: unknown type, not JSON, or an invalid schema / regex."""


@dataclass(frozen=True)
class Vocabulary:
    """The model's tokens as llguidance sees them, and the single-character tokens that close documents."""

    tokenizer: llg.LLTokenizer
    n_vocab: int
    outside: tuple[int, ...]
    inside: tuple[int, ...]

    @classmethod
    def build(cls, tokenizer: llg.LLTokenizer, n_vocab: int) -> Vocabulary:
        def single(chars: str) -> tuple[int, ...]:
            found = (tokenizer.tokenize_str(c) for c in dict.fromkeys(chars))
            return tuple(t[0] for t in found if len(t) == 1)

        extra = [chr(c) for c in range(0x20, 0x7F)]
        return cls(tokenizer, n_vocab, single(_OUTSIDE + "".join(extra)), single(_INSIDE + "".join(extra)))


@functools.lru_cache(maxsize=64)
def compile_guide(kind: str, guide: str) -> str:
    """The llguidance grammar for a guide type and its text; raises GuideError with the reason."""
    if kind == "json_schema":
        try:
            schema = json.loads(guide)
        except json.JSONDecodeError as exc:
            raise GuideError(f"guided_decoding_guide is not JSON: {exc}") from None
        if not isinstance(schema, dict):
            raise GuideError("guided_decoding_guide must be a JSON object (a JSON schema)")
        grammar = llg.LLMatcher.grammar_from_json_schema(bound_numbers(schema), overrides=_JSON_OPTIONS)
    elif kind == "json":
        grammar = llg.LLMatcher.grammar_from_json_schema({"type": "object"}, overrides=_JSON_OPTIONS)
    elif kind == "regex":
        grammar = llg.LLMatcher.grammar_from_regex(guide)
    else:
        raise GuideError(f"guided_decoding_guide_type {kind!r} is not one of {', '.join(GUIDE_TYPES)}")
    error = llg.LLMatcher.validate_grammar(grammar)
    if error:
        raise GuideError(f"invalid {kind} guide: {error}")
    return grammar


def bound_numbers(schema: Any) -> Any:
    """A copy of the schema where every `number` without multipleOf, enum or const gets a decimal step."""
    if isinstance(schema, list):
        return [bound_numbers(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: bound_numbers(v) for k, v in schema.items()}
    kinds = out.get("type")
    is_number = kinds == "number" or (isinstance(kinds, list) and "number" in kinds)
    if is_number and not {"multipleOf", "enum", "const"} & out.keys():
        out["multipleOf"] = 10.0**-NUMBER_DECIMALS
    return out


class Guide:
    """One request's grammar state: mask the logits, advance on the chosen token, close when out of budget."""

    def __init__(self, vocab: Vocabulary, grammar: str) -> None:
        self.vocab = vocab
        self.matcher = llg.LLMatcher(vocab.tokenizer, grammar, log_level=0)
        if self.matcher.is_error():
            raise GuideError(self.matcher.get_error())
        self._mask = np.zeros((vocab.n_vocab + 31) // 32, dtype=np.int32)
        self._in_string = False
        self._escaped = False
        self._watch_from = 0  # budget left below which every token is checked for room to close

    def start(self, max_tokens: int) -> list[int]:
        """Check the smallest answer fits in max_tokens; consume and return the tokens forced at the start."""
        smallest = self.closing(max_tokens)
        if smallest is None:
            raise GuideError(f"max_tokens {max_tokens} is too small for the smallest valid answer")
        self._watch_from = 2 * len(smallest) + WATCH_MARGIN
        return self.forced()

    def accept(self, token: int, budget: int) -> tuple[list[int], bool]:
        """The tokens to append for the chosen token with `budget` tokens left, and whether the answer ended.

        Near the end of the budget the token is taken only if the answer can still be closed after it;
        otherwise the answer is closed now along the shortest path.
        """
        if budget > self._watch_from:
            return [token, *self.advance(token)], False
        trial = self._copy()
        forced = trial.advance(token)
        if trial.closing(budget - 1 - len(forced)) is not None:
            self.__dict__.update(trial.__dict__)
            return [token, *forced], False
        tail = self.closing(budget)
        if tail is None:
            raise GuideError(
                f"max_tokens ran out {budget} tokens before the end with no way to close the answer"
            )
        self.matcher.consume_tokens(tail)
        self._track(tail)
        return tail, True

    def _copy(self) -> Guide:
        twin = object.__new__(Guide)
        twin.__dict__.update(self.__dict__, matcher=self.matcher.deep_copy())
        return twin

    @property
    def done(self) -> bool:
        """Nothing but the end can follow."""
        return bool(self.matcher.is_stopped())

    @property
    def complete(self) -> bool:
        return bool(self.matcher.is_accepting())

    def allowed(self) -> npt.NDArray[np.bool_]:
        self.matcher.unsafe_compute_mask_ptr(self._mask.ctypes.data, self._mask.nbytes)
        bits = np.unpackbits(self._mask.view(np.uint8), bitorder="little", count=self.vocab.n_vocab)
        return bits.view(np.bool_)

    def mask(self, logits: npt.NDArray[np.float32]) -> None:
        """Set the logits of every token the grammar forbids here to -inf, in place."""
        np.copyto(logits, np.float32(-np.inf), where=~self.allowed())

    def advance(self, token: int) -> list[int]:
        """Consume the chosen token; return the tokens the grammar now forces (already consumed)."""
        if not self.matcher.consume_token(token):
            raise RuntimeError(f"guide rejected token {token}: {self.matcher.get_error()}")
        self._track([token])
        return self.forced()

    def forced(self) -> list[int]:
        """Consume and return the tokens the grammar forces from here (e.g. `{"material":` at the start)."""
        forced = list(self.matcher.compute_ff_tokens())
        if forced:
            self.matcher.consume_tokens(forced)
            self._track(forced)
        return forced

    def closing(self, limit: int) -> list[int] | None:
        """A short token path from here to a complete document within `limit` tokens, or None.

        Greedy over single characters on a copy of the matcher: forced runs first, then the characters that
        close a string, an array or an object, then the smallest values ("0", "false", "", the first enum).
        """
        matcher = self.matcher.deep_copy()
        state = (self._in_string, self._escaped)
        path: list[int] = []
        while not matcher.is_accepting():
            if len(path) >= limit:
                return None
            step = list(matcher.compute_ff_tokens())
            if step:
                matcher.consume_tokens(step)
            else:
                candidates = self.vocab.inside if state[0] else self.vocab.outside
                chosen = next((t for t in candidates if matcher.try_consume_tokens([t]) == 1), None)
                if chosen is None:
                    return None
                step = [chosen]
            path += step
            state = _scan(self.vocab.tokenizer.decode_bytes(step), *state)
        return path if len(path) <= limit else None

    def _track(self, tokens: Sequence[int]) -> None:
        self._in_string, self._escaped = _scan(
            self.vocab.tokenizer.decode_bytes(list(tokens)), self._in_string, self._escaped
        )


def _scan(text: bytes, in_string: bool, escaped: bool) -> tuple[bool, bool]:
    """Whether JSON text ends inside a string (and right after a backslash), given the state before it."""
    for byte in text:
        if escaped:
            escaped = False
        elif in_string and byte == 0x5C:  # backslash
            escaped = True
        elif byte == 0x22:  # quote
            in_string = not in_string
    return in_string, escaped
