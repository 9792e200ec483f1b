from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from services.runtime.settings import ServiceSettings, listen_port


class ModelServerSettings(ServiceSettings):
    """TAPEWATCH_EMBEDDER_MODEL, TAPEWATCH_LLM_MODEL, ... or the `[model_server]` table of the config file."""

    section: ClassVar[str] = "model_server"

    listen_host: str = "127.0.0.1"
    # gRPC listens on the port of model_server_addr; 0 picks a free port.
    model_server_http_port: int = Field(default=8000, ge=0, lt=65536)
    model_server_metrics_port: int = Field(default=8002, ge=0, lt=65536)

    # A sentence-transformers / FlagEmbedding folder (BGE-M3, a fine-tuned model); unset: all-MiniLM-L6-v2.
    embedder_model: Path | None = None
    embedder_pooling: Literal["auto", "mean", "cls"] = "auto"
    embedder_max_length: int = Field(default=128, ge=8, le=8192)
    embedder_max_batch: int = Field(default=64, ge=1, le=1024)
    embedder_queue_delay_us: int = Field(default=2000, ge=0, description="dynamic batching wait")

    # Any GGUF file; unset: Gemma 3 270M Q4_K_M.
    llm_model: Path | None = None
    llm_context: int = Field(default=4096, ge=256)
    llm_threads: int = Field(default=0, ge=0, description="0: every core")
    llm_prefix_slots: int = Field(default=4, ge=0, description="saved prompt prefixes besides the live one")

    @property
    def grpc_port(self) -> int:
        return listen_port(self.model_server_addr)

    @property
    def threads(self) -> int:
        return self.llm_threads or os.cpu_count() or 1
