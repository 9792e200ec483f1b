"""The CPU model server: a real Triton server (through PyTriton) serving `embedder` and `llm` with the tensors
of contract.py, so the services cannot tell it from the GPU deployment."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from opentelemetry import metrics
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, QueuePolicy, Tensor
from pytriton.proxy.types import Request
from pytriton.triton import DEFAULT_PROTECTED_ENDPOINTS, Triton, TritonConfig, TritonSecurityConfig

from services.model_server.contract import EMBEDDER, LLM, ModelContract
from services.model_server.embedder import Encoder
from services.model_server.llm import LlamaEngine, default_gguf
from services.model_server.settings import ModelServerSettings

log = logging.getLogger("tapewatch.model_server")

DTYPES: dict[str, type] = {"BYTES": np.bytes_, "FP32": np.float32, "INT32": np.int32}
LLM_MAX_QUEUE = 64  # requests past this are refused (UNAVAILABLE) instead of waiting minutes

_meter = metrics.get_meter(__name__)
_ttft = _meter.create_histogram("tapewatch.llm.time_to_first_token", unit="s")
_decode_rate = _meter.create_histogram("tapewatch.llm.decode_rate", unit="{token}/s")
_tokens = _meter.create_counter(
    "tapewatch.llm.tokens", unit="{token}", description="by kind: prompt, cached, output"
)


def tensors(contract: ModelContract) -> tuple[list[Tensor], list[Tensor]]:
    def convert(t: Any) -> Tensor:
        return Tensor(name=t.name, dtype=DTYPES[t.dtype], shape=t.shape, optional=t.optional)

    return [convert(t) for t in contract.inputs], [convert(t) for t in contract.outputs]


def embedder_infer(encoder: Encoder) -> Callable[..., dict[str, np.ndarray]]:
    @batch
    def infer(text: np.ndarray) -> dict[str, np.ndarray]:
        texts = [bytes(t).decode("utf-8", errors="replace").strip() for t in text.reshape(-1)]
        empty = [i for i, t in enumerate(texts) if not t]
        if empty:
            raise ValueError(f"embedder: text is empty (batch rows {empty})")
        return {"embedding": encoder.encode(texts)}

    return infer


def _scalar(request: Request, name: str) -> Any:
    return request[name].reshape(-1)[0] if name in request.keys() else None


def _text(value: Any) -> str | None:
    return None if value is None else bytes(value).decode("utf-8", errors="replace")


def llm_infer(engine: LlamaEngine) -> Callable[[list[Request]], list[dict[str, np.ndarray]]]:
    def infer(requests: list[Request]) -> list[dict[str, np.ndarray]]:
        responses = []
        for request in requests:
            prompt = _text(_scalar(request, "text_input")) or ""
            max_tokens = int(_scalar(request, "max_tokens"))
            temperature = _scalar(request, "temperature")
            kind = _text(_scalar(request, "guided_decoding_guide_type"))
            guide = (
                engine.guide(kind, _text(_scalar(request, "guided_decoding_guide")) or "") if kind else None
            )
            result = engine.generate(
                prompt, max_tokens, None if temperature is None else float(temperature), guide
            )
            attributes = {"guided": kind or "none"}
            _ttft.record(result.ttft_s, attributes)
            if result.decode_tok_s:
                _decode_rate.record(result.decode_tok_s, attributes)
            for token_kind, n in (
                ("prompt", result.prompt_tokens),
                ("cached", result.cached_tokens),
                ("output", result.completion_tokens),
            ):
                _tokens.add(n, {**attributes, "kind": token_kind})
            log.info(
                "llm: %d prompt tokens (%d cached), %d out (%d sampled, %s), ttft %.0f ms, %.1f tok/s, %s",
                result.prompt_tokens,
                result.cached_tokens,
                result.completion_tokens,
                result.sampled_tokens,
                result.finish_reason,
                result.ttft_s * 1000,
                result.decode_tok_s,
                f"guide {kind}" if kind else "no guide",
            )
            responses.append(
                {
                    "text_output": np.array([[result.text.encode()]], dtype=np.bytes_),
                    "sequence_length": np.array([[result.completion_tokens]], dtype=np.int32),
                }
            )
        return responses

    return infer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Ports:
    grpc: int
    http: int
    metrics: int


def resolve_ports(
    settings: ModelServerSettings, grpc: int | None, http: int | None, metrics: int | None
) -> Ports:
    """Command-line ports win over settings; 0 picks a free port."""
    chosen = (
        settings.grpc_port if grpc is None else grpc,
        settings.model_server_http_port if http is None else http,
        settings.model_server_metrics_port if metrics is None else metrics,
    )
    grpc_port, http_port, metrics_port = (p or free_port() for p in chosen)
    return Ports(grpc_port, http_port, metrics_port)


def serve(
    settings: ModelServerSettings, ports: Ports, ready_file: Path | None, stop: threading.Event
) -> None:
    """Load both models, start Triton, write the ready file, serve until `stop` is set or Triton dies."""
    started = time.perf_counter()
    cpu = threading.Lock()  # both models use every core: they take turns, a token step or a batch at a time
    encoder = Encoder(settings.embedder_model, settings.embedder_pooling, settings.embedder_max_length, cpu)
    model = settings.llm_model or default_gguf()
    engine = LlamaEngine(model, settings.llm_context, settings.threads, settings.llm_prefix_slots, cpu)
    log.info("embedder %s (%s): %s", encoder.name, encoder.folder, encoder.chosen_because)
    encoder.encode(["warm-up"])
    engine.generate("Warm-up", 1)
    log.info("models loaded in %.1f s", time.perf_counter() - started)

    config = TritonConfig(
        grpc_address=settings.listen_host,
        grpc_port=ports.grpc,
        http_address=settings.listen_host,
        http_port=ports.http,
        metrics_address=settings.listen_host,
        metrics_port=ports.metrics,
        exit_timeout_secs=5,
    )
    # Statistics (queue and compute time per model) are read-only and clients read them: leave them open.
    security = TritonSecurityConfig(
        restricted_endpoints=[e for e in DEFAULT_PROTECTED_ENDPOINTS if e != "statistics"]
    )
    triton = Triton(config=config, security_config=security)
    inputs, outputs = tensors(EMBEDDER)
    triton.bind(
        model_name=EMBEDDER.name,
        infer_func=embedder_infer(encoder),
        inputs=inputs,
        outputs=outputs,
        config=ModelConfig(
            max_batch_size=settings.embedder_max_batch,
            batcher=DynamicBatcher(max_queue_delay_microseconds=settings.embedder_queue_delay_us),
        ),
        strict=True,
    )
    inputs, outputs = tensors(LLM)
    # One request at a time on one llama.cpp context: the rest wait in Triton's queue, where the
    # statistics endpoint measures their queue time. Clients may shorten the queue wait (timeout).
    queue = QueuePolicy(allow_timeout_override=True, max_queue_size=LLM_MAX_QUEUE)
    triton.bind(
        model_name=LLM.name,
        infer_func=llm_infer(engine),
        inputs=inputs,
        outputs=outputs,
        config=ModelConfig(max_batch_size=1, batcher=DynamicBatcher(default_queue_policy=queue)),
        strict=True,
    )
    try:
        triton.run()
        log.info("model server ready: gRPC %d, HTTP %d, metrics %d", ports.grpc, ports.http, ports.metrics)
        if ready_file is not None:
            partial = ready_file.with_suffix(".partial")
            partial.write_text(json.dumps({"grpc_port": ports.grpc, "http_port": ports.http}))
            partial.replace(ready_file)
        while not stop.wait(1.0):
            if not triton.is_alive():
                raise RuntimeError("Triton stopped unexpectedly")
    finally:
        triton.stop()
