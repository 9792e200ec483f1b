from __future__ import annotations

import os
import socket
from typing import ClassVar

from pydantic import Field, model_validator

from services.runtime.settings import ServiceSettings, listen_port


class DedupSettings(ServiceSettings):
    """TAPEWATCH_DUPLICATE_THRESHOLD, TAPEWATCH_WINDOW_S, ... or the `[dedup]` table of the config file."""

    section: ClassVar[str] = "dedup"

    listen_host: str = "127.0.0.1"
    raw_stream: str = "news.raw"
    unique_stream: str = "news.unique"
    group: str = "dedup"
    consumer_name: str = Field(default="", description="unique per consumer; empty: host-pid")
    consumers: int = Field(default=1, ge=1, le=64, description="stream consumers in this process")
    concurrency: int = Field(default=32, ge=1, le=1024, description="items in flight per consumer")
    read_batch: int = Field(default=32, ge=1, le=1024, description="messages per XREADGROUP")
    max_deliveries: int = Field(default=5, ge=1)
    reclaim_idle_ms: int = Field(default=30_000, ge=0)

    # The rule (DESIGN.md).
    duplicate_threshold: float = Field(default=0.75, ge=-1.0, le=1.0)
    new_threshold: float = Field(default=0.50, ge=-1.0, le=1.0)
    min_anchors: int = Field(default=2, ge=0, description="shared facts the second look needs in the middle")
    neighbours: int = Field(default=4, ge=1, le=100, description="stories in the window the rule looks at")

    # The window and the stories.
    window_s: int = Field(default=24 * 3600, ge=1, description="stories older than this leave the index")
    story_ttl_s: int = Field(
        default=7 * 86400, ge=60, description="kept for GetStory after leaving the window"
    )
    echoes_kept: int = Field(default=20, ge=0, description="fastest echoes kept per story (all are counted)")
    sweep_interval_s: float = Field(default=60.0, gt=0)
    unique_maxlen: int = Field(default=1_000_000, ge=1000)
    key_prefix: str = "tw:dedup:"

    # The vector index (RediSearch HNSW, cosine).
    hnsw_m: int = Field(default=16, ge=2, le=512)
    hnsw_ef_construction: int = Field(default=200, ge=1)
    hnsw_ef_runtime: int = Field(default=20, ge=1)

    # The embedder on the model server.
    embed_batch: int = Field(default=64, ge=1, le=1024, description="most texts per embed call")
    model_deadline_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _thresholds(self) -> DedupSettings:
        if not self.new_threshold < self.duplicate_threshold:
            raise ValueError(
                f"new_threshold ({self.new_threshold}) must be below "
                f"duplicate_threshold ({self.duplicate_threshold})"
            )
        return self

    @property
    def listen(self) -> str:
        return f"{self.listen_host}:{listen_port(self.dedup_addr)}"

    @property
    def consumer(self) -> str:
        return self.consumer_name or f"{socket.gethostname()}-{os.getpid()}"
