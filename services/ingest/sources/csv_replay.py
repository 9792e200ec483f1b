"""Replay of a news CSV: items in published order with their original timestamps, the waiting compressed.

`speed=720` or `compress=(2, 10)` both play 2 hours of news in 10 seconds; neither means no waiting.
Times without an offset in the file are read as UTC.
"""

from __future__ import annotations

import asyncio
import csv
import functools
import html
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.ingest.normalize import InvalidItem, decode_text, platform_from_name
from services.ingest.sources.base import SourceConfig, join_title, set_time, strip_html, utc, wait_or_closed
from tapewatch.news.v1 import news_pb2

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE_CSV = REPO / "tests" / "data" / "news_sample.csv"


class CsvLayout(BaseModel):
    """Which columns make a NewsItem. Fixed values (source, author) apply when no column is named."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    time: tuple[str, ...]  # joined with a space, e.g. ("Date", "Time")
    time_format: str | None = None  # strptime format; None: ISO 8601
    text: tuple[str, ...]  # (title, body) are joined as "Title. Body"
    platform: str = "newswire"
    source: str = ""
    source_column: str = ""  # values lower-cased: "CoinTelegraph" -> "cointelegraph"
    author: str = ""
    author_column: str = ""
    id_column: str = ""
    url_column: str = ""
    url_template: str = ""  # "{id}" is the row's id
    attributes: dict[str, str] = {}  # attribute name -> column
    markup: Literal["text", "entities", "html"] = "text"  # entities: &amp; decoded; html: tags dropped too

    def columns(self) -> set[str]:
        named = (self.source_column, self.author_column, self.id_column, self.url_column)
        return {*self.time, *self.text, *self.attributes.values(), *filter(None, named)}


PRESETS: dict[str, CsvLayout] = {
    "crypto_news": CsvLayout(
        time=("date",),
        time_format="%d-%m-%Y %H:%M",
        text=("title", "text"),
        source_column="source",
        id_column="url",
        url_column="url",
        attributes={"subject": "subject"},
    ),
    "trump_truth_social": CsvLayout(
        time=("Created",),
        text=("Text",),
        platform="truth_social",
        source="truthsocial",
        author="realDonaldTrump",
        id_column="Tweet_ID",
        url_template="https://truthsocial.com/@realDonaldTrump/{id}",
        attributes={"session": "Session"},
        markup="html",
    ),
    "musk_tweets": CsvLayout(
        time=("Datetime",),
        text=("Text",),
        id_column="Tweet Id",
        url_template="https://x.com/elonmusk/status/{id}",
        attributes={"replies": "reply count", "retweets": "retweet count", "likes": "like count"},
        platform="x",
        source="x",
        author="elonmusk",
        markup="entities",
    ),
    "musk_crypto_curated": CsvLayout(
        time=("Date", "Time"),
        time_format="%d/%m/%Y %I:%M:%S %p",
        text=("Tweet",),
        attributes={"coin": "Coin"},
        platform="x",
        source="x",
        author="elonmusk",
        markup="entities",
    ),
}


def detect_layout(header: list[str]) -> str:
    """The preset whose columns the header has."""
    for name, layout in PRESETS.items():
        if layout.columns() <= set(header):
            return name
    raise ValueError(f"no preset matches the columns {header}; pass a layout")


def default_replay_csv(data_dir: Path = SHARED_DATA) -> Path:
    """The full crypto news file when the shared data is there, else the small sample in tests/data."""
    full = data_dir / "crypto_news_2021_2022.csv"
    return full if full.is_file() else SAMPLE_CSV


class CsvReplayConfig(SourceConfig):
    path: Path
    layout: str | CsvLayout | None = None  # a PRESETS name, a layout, or None: detected from the header
    speed: float | None = Field(None, gt=0)  # news seconds per replay second
    compress: tuple[float, float] | None = None  # (hours of news, seconds of replay)
    limit: int | None = Field(None, ge=0)
    since: datetime | None = Field(None, alias="from")  # published_at >= since
    until: datetime | None = Field(None, alias="to")  # published_at < until
    name: str = ""

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        return None if v is None else utc(v)

    @model_validator(mode="after")
    def _check(self) -> CsvReplayConfig:
        if self.speed is not None and self.compress is not None:
            raise ValueError("give speed or compress, not both")
        if self.compress is not None and min(self.compress) <= 0:
            raise ValueError("compress hours and seconds must be > 0")
        if isinstance(self.layout, str) and self.layout not in PRESETS:
            raise ValueError(f"unknown layout {self.layout!r} (presets: {', '.join(PRESETS)})")
        return self

    @property
    def factor(self) -> float | None:
        """News seconds per replay second, None for no waiting."""
        if self.compress is not None:
            return self.compress[0] * 3600 / self.compress[1]
        return self.speed


class CsvReplaySource:
    def __init__(self, config: CsvReplayConfig) -> None:
        self.config = config
        self.name = config.name or f"csv:{config.path.name}"
        self.skipped = 0  # rows without a usable time or text
        self._closed = asyncio.Event()

    def load(self) -> list[news_pb2.NewsItem]:
        """Rows as items, filtered, in published order (ties keep file order), limited."""
        cfg = self.config
        self.skipped = 0
        # surrogateescape: a bad byte fails its own row (decode_text), not the whole file
        with cfg.path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            layout = (
                cfg.layout
                if isinstance(cfg.layout, CsvLayout)
                else PRESETS[cfg.layout or detect_layout(header)]
            )
            if missing := layout.columns() - set(header):
                raise ValueError(f"{cfg.path}: columns {sorted(missing)} missing (header: {header})")
            items = []
            for row in reader:
                try:
                    item = _row_item(row, layout)
                except InvalidItem as e:
                    self.skipped += 1
                    log.warning("%s:%d skipped: %s", cfg.path, reader.line_num, e.reason)
                    continue
                if self._in_window(item):
                    items.append(item)
        items.sort(key=lambda i: i.published_at.ToNanoseconds())
        return items[: cfg.limit] if cfg.limit is not None else items

    def _in_window(self, item: news_pb2.NewsItem) -> bool:
        since, until = self.config.since, self.config.until
        t = item.published_at.ToDatetime(tzinfo=UTC)
        return (since is None or t >= since) and (until is None or t < until)

    async def items(self) -> AsyncIterator[news_pb2.NewsItem]:
        items = await asyncio.to_thread(self.load)
        factor = self.config.factor
        loop = asyncio.get_running_loop()
        start = loop.time()
        for item in items:
            due = 0.0
            if factor:
                due = (
                    (item.published_at.ToNanoseconds() - items[0].published_at.ToNanoseconds()) / 1e9 / factor
                )
            if await wait_or_closed(self._closed, start + due - loop.time()):
                return
            yield item

    async def close(self) -> None:
        self._closed.set()


def _row_item(row: dict[str, str | None], layout: CsvLayout) -> news_pb2.NewsItem:
    def cell(column: str) -> str:
        raw = (row.get(column) or "").strip().encode("utf-8", "surrogateescape")  # back to the file's bytes
        return decode_text(raw, f"column {column!r}") if column else ""

    raw_time = " ".join(cell(c) for c in layout.time)
    try:
        fmt = layout.time_format
        published = datetime.strptime(raw_time, fmt) if fmt else datetime.fromisoformat(raw_time)
    except ValueError:
        raise InvalidItem(f"time {raw_time!r} does not match {layout.time_format or 'ISO 8601'}") from None
    text = functools.reduce(join_title, [_plain(cell(c), layout.markup) for c in layout.text]).strip()
    if not text:
        raise InvalidItem("text is empty")
    item = news_pb2.NewsItem(
        source=cell(layout.source_column).lower() or layout.source,
        source_item_id=cell(layout.id_column),
        platform=platform_from_name(layout.platform),
        author=cell(layout.author_column) or layout.author,
        url=cell(layout.url_column),
        text=text,
        attributes={k: v for k, c in layout.attributes.items() if (v := cell(c))},
    )
    if not item.url and layout.url_template and item.source_item_id:
        item.url = layout.url_template.format(id=item.source_item_id)
    set_time(item.published_at, published)
    return item


def _plain(value: str, markup: str) -> str:
    if markup == "html":
        return strip_html(value)
    return html.unescape(value) if markup == "entities" else value
