"""Source adapters of the ingest service. Each adapter module has the same shape: a frozen `<Kind>Config`
and a `<Kind>Source(config)` with `name`, `items()` and `close()`; `make_source` builds one by kind."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from services.ingest.sources.base import Source, SourceConfig
from services.ingest.sources.csv_replay import CsvReplayConfig, CsvReplaySource
from services.ingest.sources.rss import RssConfig, RssSource
from services.ingest.sources.webhook import WebhookConfig, WebhookSource

KINDS: dict[str, tuple[type[SourceConfig], type[Any]]] = {
    "csv": (CsvReplayConfig, CsvReplaySource),
    "rss": (RssConfig, RssSource),
    "webhook": (WebhookConfig, WebhookSource),
}


def make_source(kind: str, **config: Any) -> Source:
    """A source by kind ("csv", "rss", "webhook"); ValueError naming the bad kind or config key."""
    if kind not in KINDS:
        raise ValueError(f"unknown source kind {kind!r} (known: {', '.join(KINDS)})")
    config_type, source_type = KINDS[kind]
    try:
        cfg = config_type(**config)
    except ValidationError as e:
        raise ValueError(f"{kind} source config: {e}") from None
    source: Source = source_type(cfg)
    return source


__all__ = ["KINDS", "Source", "SourceConfig", "make_source"]
