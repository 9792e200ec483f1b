"""RSS / Atom poller: conditional GET every `interval` seconds, each entry yielded once per poller lifetime.

Entries come oldest first within a poll; the entry id is the feed's guid/id, else its link. A failed poll
(network, HTTP error, not a feed) is logged and retried on the next interval. Polls run while the consumer
pulls from `items()`: a slow consumer slows the polling, nothing piles up.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import feedparser
from pydantic import Field

from services.ingest.normalize import InvalidItem, decode_text, platform_from_name
from services.ingest.sources.base import SourceConfig, join_title, set_time, strip_html, wait_or_closed
from tapewatch.news.v1 import news_pb2

log = logging.getLogger(__name__)


class RssConfig(SourceConfig):
    url: str
    interval: float = Field(60.0, gt=0)  # seconds between polls
    source: str = ""  # default: the feed's host without "www."
    platform: str = "rss"  # e.g. "regulator" for the SEC feed, "exchange" for an exchange's notices
    timeout: float = Field(10.0, gt=0)
    user_agent: str = "tapewatch-ingest/0.1"
    name: str = ""


class RssSource:
    def __init__(self, config: RssConfig) -> None:
        self.config = config
        host = (urlsplit(config.url).hostname or "").removeprefix("www.")
        self.source = config.source or host
        self.name = config.name or f"rss:{host}"
        self.platform = platform_from_name(config.platform)
        self._seen: set[str] = set()
        self._etag = ""
        self._modified = ""
        self._session: aiohttp.ClientSession | None = None
        self._closed = asyncio.Event()

    async def poll(self) -> list[news_pb2.NewsItem]:
        """One conditional GET; the entries not yielded before, oldest first ([] on 304 or once closed)."""
        if self._closed.is_set():
            return []
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.config.timeout)
            self._session = aiohttp.ClientSession(
                timeout=timeout, headers={"User-Agent": self.config.user_agent}
            )
        headers = {}
        if self._etag:
            headers["If-None-Match"] = self._etag
        if self._modified:
            headers["If-Modified-Since"] = self._modified
        async with self._session.get(self.config.url, headers=headers) as resp:
            if resp.status == 304:
                return []
            resp.raise_for_status()
            body = await resp.read()
            etag, modified = resp.headers.get("ETag", ""), resp.headers.get("Last-Modified", "")
        feed = await asyncio.to_thread(feedparser.parse, body)
        if feed.bozo and not feed.entries:
            raise ValueError(f"{self.config.url} is not an RSS/Atom feed: {feed.get('bozo_exception')}")
        self._etag, self._modified = etag, modified  # only once the body was read as a feed
        language, author = str(feed.feed.get("language", "")), str(feed.feed.get("author", ""))
        new = []
        for entry in feed.entries:
            entry_id = _entry_id(entry)
            if entry_id in self._seen:
                continue
            self._seen.add(entry_id)
            try:
                new.append(self._item(entry, entry_id, language, author))
            except InvalidItem as e:
                log.warning("%s: entry %s skipped: %s", self.name, entry_id, e.reason)
        new.sort(key=lambda i: i.published_at.ToNanoseconds())  # undated entries (0) first
        return new

    def _item(self, entry: Any, entry_id: str, language: str, feed_author: str) -> news_pb2.NewsItem:
        text = join_title(strip_html(entry.get("title", "")), strip_html(entry.get("summary", "")))
        tags = ",".join(t.get("term", "") for t in entry.get("tags", []))
        item = news_pb2.NewsItem(
            source=self.source,
            source_item_id=decode_text(entry_id, "entry id"),
            platform=self.platform,
            author=decode_text(entry.get("author") or feed_author, "author"),
            url=entry.get("link", ""),
            text=decode_text(text),
            language=language,
            attributes={"tags": tags} if tags else {},
        )
        parsed = entry.get("published_parsed") or entry.get("updated_parsed")  # struct_time in UTC
        if parsed:
            set_time(item.published_at, datetime.fromtimestamp(calendar.timegm(parsed), UTC))
        return item

    async def items(self) -> AsyncIterator[news_pb2.NewsItem]:
        while not self._closed.is_set():
            try:
                batch = await self.poll()
            except (aiohttp.ClientError, TimeoutError, ValueError) as e:
                log.warning("%s: poll of %s failed: %s", self.name, self.config.url, e)
                batch = []
            for item in batch:
                yield item
            if await wait_or_closed(self._closed, self.config.interval):
                return

    async def close(self) -> None:
        self._closed.set()
        if self._session is not None:
            await self._session.close()
            self._session = None


def _entry_id(entry: Any) -> str:
    if entry_id := entry.get("id") or entry.get("link"):
        return str(entry_id)
    return (
        "sha256:"
        + hashlib.sha256(f"{entry.get('title', '')}\x1f{entry.get('summary', '')}".encode()).hexdigest()
    )
