from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from services.runtime.settings import ServiceSettings, listen_port


class IngestSettings(ServiceSettings):
    section: ClassVar[str] = "ingest"

    listen_host: str = "127.0.0.1"
    raw_stream: str = "news.raw"
    seen_ttl_s: int = Field(default=7 * 86400, ge=60, description="how long an item id is remembered")
    stream_maxlen: int = Field(default=1_000_000, ge=1000)

    @property
    def listen(self) -> str:
        return f"{self.listen_host}:{listen_port(self.ingest_addr)}"
