"""Validation and normalisation of one news item at the door of the tape.

Rules (each rejection raises InvalidItem with the exact reason):
- source and platform are required; platform must be a known Platform value other than UNSPECIFIED.
- text must be UTF-8 without lone surrogates, at most 64 KiB (65,536 bytes UTF-8, measured as received)
  and not empty once cleaned.
- published_at may be at most 24 h ahead of `now`; a missing published_at becomes `now`.
- id, when given, is 1-128 characters of [A-Za-z0-9._:-] (it becomes a Redis key).

Normalisation: text in NFC, control characters dropped, every whitespace run that holds a line break
becomes one "\n" and every other run one space, ends stripped (paragraphs survive for the trader, the
embedding sees no noise); source, author, url, source_item_id stripped, a leading "@" dropped from
author; received_at = now; language guessed from the script when empty; id = item_key() when empty.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import UTC, datetime, timedelta

from tapewatch.news.v1 import news_pb2

MAX_TEXT_BYTES = 65_536
MAX_FUTURE = timedelta(hours=24)
ID_PREFIX = "nw_"

_ID_RE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_BREAK_RUN = re.compile(r"\s*[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]\s*")
_SPACE_RUN = re.compile(r"[^\S\n]+")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")  # category Cc less whitespace
_PLATFORM_ALIASES = {"twitter": "x", "truthsocial": "truth_social", "news": "newswire"}


class InvalidItem(ValueError):
    """An item the tape refuses; `reason` says exactly what is wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_text(raw: bytes | str, what: str = "text") -> str:
    """`what` from an adapter as str: strict UTF-8, no lone surrogates, no byte-order mark."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidItem(
                f"{what} is not valid UTF-8: byte 0x{raw[e.start]:02x} at offset {e.start}"
            ) from None
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidItem(
            f"{what} contains a lone surrogate U+{ord(raw[e.start]):04X} at index {e.start}"
        ) from None
    return raw.removeprefix("\ufeff")


def clean_text(text: str) -> str:
    """NFC, control characters dropped, whitespace collapsed (see the module docstring)."""
    text = _CONTROL.sub("", unicodedata.normalize("NFC", text))
    text = _BREAK_RUN.sub("\n", text.replace("\ufeff", "").replace("\u200b", ""))
    return _SPACE_RUN.sub(" ", text).strip()


def platform_from_name(name: str | int) -> news_pb2.Platform:
    """'x', 'truth_social', 'PLATFORM_X', 'twitter' or an enum number -> Platform; InvalidItem if unknown."""
    if isinstance(name, int):
        if name in news_pb2.Platform.values() and name != news_pb2.PLATFORM_UNSPECIFIED:
            return news_pb2.Platform.Value(news_pb2.Platform.Name(name))
        raise InvalidItem(f"platform {name} is not a known Platform value")
    key = name.strip().lower().removeprefix("platform_").replace("-", "_")
    key = _PLATFORM_ALIASES.get(key, key)
    if key and key != "unspecified" and f"PLATFORM_{key.upper()}" in news_pb2.Platform.keys():
        return news_pb2.Platform.Value(f"PLATFORM_{key.upper()}")
    raise InvalidItem(f"unknown platform {name!r} (known: {', '.join(platform_names())})")


def platform_names() -> list[str]:
    return [
        k.removeprefix("PLATFORM_").lower() for k in news_pb2.Platform.keys() if not k.endswith("UNSPECIFIED")
    ]


def guess_language(text: str) -> str:
    """Cheap script heuristic over the first 2,000 characters: Hangul -> ko, kana -> ja, Han -> zh, else en.

    CJK counts only when it is at least a fifth of the letters, so one Korean word in an English post
    stays "en"."""
    if text.isascii():
        return "en"
    hangul = kana = han = letters = 0
    for ch in text[:2000]:
        if not ch.isalpha():
            continue
        letters += 1
        o = ord(ch)
        if 0xAC00 <= o <= 0xD7A3 or 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F:
            hangul += 1
        elif 0x3040 <= o <= 0x30FF:
            kana += 1
        elif 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF:
            han += 1
    if (hangul + kana + han) * 5 < letters or letters == 0:
        return "en"
    if hangul and hangul >= kana:
        return "ko"
    return "ja" if kana else "zh"


def item_key(item: news_pb2.NewsItem) -> str:
    """Idempotency key: "nw_" + 20 hex of sha256(source, source_item_id).

    Without a source_item_id, the id is derived from sha256(source, author, published_at, cleaned text),
    published_at as given ("" when missing), so a retry of the same post gets the same key."""
    source = item.source.strip()
    source_item_id = item.source_item_id.strip()
    if not source_item_id:
        published = item.published_at.ToJsonString() if item.HasField("published_at") else ""
        author = item.author.strip().removeprefix("@")
        parts = "\x1f".join((source, author, published, clean_text(item.text)))
        source_item_id = "h_" + hashlib.sha256(parts.encode()).hexdigest()
    return ID_PREFIX + hashlib.sha256(f"{source}\x1f{source_item_id}".encode()).hexdigest()[:20]


def validate(item: news_pb2.NewsItem, now: datetime) -> news_pb2.NewsItem:
    """A normalised copy of `item`, or InvalidItem with the reason. `now` must be timezone-aware."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    out = news_pb2.NewsItem()
    out.CopyFrom(item)
    out.source = item.source.strip()
    if not out.source:
        raise InvalidItem("source is missing")
    if item.platform == news_pb2.PLATFORM_UNSPECIFIED:
        raise InvalidItem("platform is unspecified")
    platform_from_name(int(item.platform))

    text = decode_text(item.text)
    size = len(text.encode("utf-8"))
    if size > MAX_TEXT_BYTES:
        raise InvalidItem(f"text is {size:,} bytes in UTF-8, over the {MAX_TEXT_BYTES:,}-byte limit")
    out.text = clean_text(text)
    if not out.text:
        raise InvalidItem("text is empty after stripping whitespace")

    now = now.astimezone(UTC)
    if item.HasField("published_at"):
        ts = item.published_at
        if not 0 <= ts.nanos < 1_000_000_000:
            raise InvalidItem(f"published_at has invalid nanos {ts.nanos}")
        try:
            published = ts.ToDatetime(tzinfo=UTC)
        except (ValueError, OverflowError):
            raise InvalidItem(f"published_at seconds {ts.seconds} is out of range") from None
        if published - now > MAX_FUTURE:
            ahead = (published - now).total_seconds() / 3600
            raise InvalidItem(
                f"published_at {ts.ToJsonString()} is {ahead:.1f} h in the future"
                f" (limit 24 h after {now:%Y-%m-%dT%H:%M:%SZ})"
            )

    out.id = item.id.strip()
    if out.id and not _ID_RE.fullmatch(out.id):
        raise InvalidItem(f"id {out.id[:40]!r} must be 1-128 characters of A-Z a-z 0-9 . _ : -")
    out.author = item.author.strip().removeprefix("@")
    out.url = item.url.strip()
    out.source_item_id = item.source_item_id.strip()
    out.language = item.language.strip() or guess_language(out.text)
    if not out.id:
        out.id = item_key(out)  # before the published_at default: a retry without a time keeps its key
    if not out.HasField("published_at"):
        out.published_at.FromDatetime(now)
    out.received_at.FromDatetime(now)
    return out
