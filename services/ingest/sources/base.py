"""What every source adapter is and the small helpers they share."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, ConfigDict

from services.ingest.normalize import InvalidItem
from tapewatch.news.v1 import news_pb2


@runtime_checkable
class Source(Protocol):
    """A producer of raw news items. Items are not validated here: ingest does that once for all."""

    name: str

    def items(self) -> AsyncIterator[news_pb2.NewsItem]:
        """Items as they arrive; ends when the source is exhausted or closed."""
        ...

    async def close(self) -> None:
        """Stop producing and release sockets; safe to call twice."""
        ...


class SourceConfig(BaseModel):
    """Base of every adapter config: frozen, unknown keys rejected at construction."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True)


def utc(dt: datetime) -> datetime:
    """Aware UTC datetime; a naive one is read as UTC."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def set_time(stamp: Timestamp, dt: datetime) -> None:
    stamp.FromDatetime(utc(dt))


def parse_iso(value: object, what: str = "timestamp") -> datetime:
    """ISO 8601 with a UTC offset ("Z" accepted) -> aware UTC datetime; InvalidItem otherwise."""
    if not isinstance(value, str):
        raise InvalidItem(f"{what} must be an ISO 8601 string, got {type(value).__name__}")
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidItem(f"{what} {value!r} is not an ISO 8601 timestamp") from None
    if dt.tzinfo is None:
        raise InvalidItem(f"{what} {value!r} has no UTC offset (e.g. 2024-01-10T21:11:00Z)")
    return dt.astimezone(UTC)


def join_title(title: str, body: str) -> str:
    """Title and body as one text: "Title. Body", without doubling the title's own end mark."""
    title, body = title.strip(), body.strip()
    if not title or not body:
        return title or body
    return f"{title} {body}" if title[-1] in ".!?:…" else f"{title}. {body}"


_BREAK_TAG = re.compile(r"<\s*(?:br|/p|/div|/li)\s*/?\s*>", re.I)
_TAG = re.compile(r"<[^<>]*>")
_CUT_TAGS = re.compile(r"^[a-z]+(?:\s[^<>]*)?/?>|<[^<>]*$")  # tags cut at either end, as in some exports


def strip_html(text: str) -> str:
    """Plain text from HTML: line breaks kept, tags dropped, entities decoded."""
    text = _TAG.sub("", _BREAK_TAG.sub("\n", _CUT_TAGS.sub("", text)))
    return html.unescape(text)


async def wait_or_closed(closed: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds` unless `closed` is set first; True when closed."""
    if seconds > 0:
        try:
            await asyncio.wait_for(closed.wait(), seconds)
        except TimeoutError:
            pass
    return closed.is_set()
