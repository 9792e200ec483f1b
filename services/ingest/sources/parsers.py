"""Pure mappings from the platforms' own JSON to NewsItem: X API v2, Telegram Bot API, Reddit, Discord.

Each parser takes the decoded JSON and an optional `source` override and returns a list of raw items (not
validated: ingest does that). Things that are not posts (service updates, comments, media without text)
are skipped; a shape that is not what the platform sends raises InvalidItem with the path of the fault.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from services.ingest.normalize import InvalidItem, decode_text
from services.ingest.sources.base import join_title, parse_iso, set_time
from tapewatch.news.v1 import news_pb2

Parser = Callable[..., list[news_pb2.NewsItem]]


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidItem(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if key not in obj:
        raise InvalidItem(f"{what}: '{key}' is missing")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        names = "/".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
        raise InvalidItem(f"{what}: '{key}' must be {names}, got {type(value).__name__}")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidItem(f"{what} must be a JSON array, got {type(value).__name__}")
    return value


def _from_unix(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _item(
    platform: news_pb2.Platform,
    source: str,
    source_item_id: str,
    author: str,
    text: str,
    published: datetime,
    url: str = "",
    language: str = "",
    attributes: dict[str, str] | None = None,
) -> news_pb2.NewsItem:
    item = news_pb2.NewsItem(
        platform=platform,
        source=source,
        source_item_id=source_item_id,
        author=author,
        text=decode_text(text),
        url=url,
        language=language,
        attributes={k: v for k, v in (attributes or {}).items() if v},
    )
    set_time(item.published_at, published)
    return item


# X / Twitter API v2: {"data": post | [post], "includes": {"users": [...], "tweets": [...]}, "errors": [...]}

_X_NO_LANGUAGE = {"und", "zxx", "art", "qme", "qht", "qam", "qct", "qst"}


def parse_x(payload: Any, *, source: str = "") -> list[news_pb2.NewsItem]:
    body = _obj(payload, "X payload")
    if "data" not in body:
        if errors := body.get("errors"):
            first = _obj(_list(errors, "X errors")[0], "X error")
            raise InvalidItem(f"X payload has no data: {first.get('detail') or first.get('title') or first}")
        return []  # a search with no results has only "meta"
    posts = body["data"] if isinstance(body["data"], list) else [_obj(body["data"], "X data")]
    includes = _obj(body.get("includes", {}), "X includes")
    users = {
        u.get("id"): u for u in _list(includes.get("users", []), "X includes.users") if isinstance(u, dict)
    }
    included = {
        t.get("id"): t for t in _list(includes.get("tweets", []), "X includes.tweets") if isinstance(t, dict)
    }

    def full_text(post: dict[str, Any], what: str) -> str:
        note = post.get("note_tweet")  # posts over 280 characters: "text" is cut, note_tweet has it all
        if isinstance(note, dict) and isinstance(note.get("text"), str):
            return str(note["text"])
        return str(_get(post, "text", str, what))

    def handle(post: dict[str, Any]) -> str:
        return str(users.get(post.get("author_id"), {}).get("username", ""))

    out = []
    for i, raw in enumerate(posts):
        what = f"X data[{i}]"
        post = _obj(raw, what)
        post_id = _get(post, "id", str, what)
        created = parse_iso(_get(post, "created_at", str, what), f"{what}.created_at")
        text = full_text(post, what)
        refs = [
            r
            for r in _list(post.get("referenced_tweets", []), f"{what}.referenced_tweets")
            if isinstance(r, dict)
        ]
        for ref in refs:  # a retweet's own text is cut at 140: use the original from includes
            original = included.get(ref.get("id"))
            if ref.get("type") == "retweeted" and original and "text" in original:
                text = f"RT @{handle(original)}: {full_text(original, f'{what} retweeted')}"
        author = handle(post)
        metrics = post.get("public_metrics")
        lang = str(post.get("lang", ""))
        attributes = {
            "referenced": ",".join(f"{r.get('type')}:{r.get('id')}" for r in refs),
            "conversation_id": str(post.get("conversation_id", "")),
            **({k: str(v) for k, v in metrics.items()} if isinstance(metrics, dict) else {}),
        }
        out.append(
            _item(
                news_pb2.PLATFORM_X,
                source or "x",
                post_id,
                author or str(post.get("author_id", "")),
                html.unescape(text),  # X escapes &, < and > in post text
                created,
                url=f"https://x.com/{author or 'i/web'}/status/{post_id}",
                language="" if lang in _X_NO_LANGUAGE else lang,
                attributes=attributes,
            )
        )
    return out


# Telegram Bot API: getUpdates {"ok": true, "result": [update]}, a list of updates, or one webhook update.


def _utf16_slice(text: str, offset: int, length: int) -> str:
    """Telegram entity offsets count UTF-16 code units."""
    return text.encode("utf-16-le")[2 * offset : 2 * (offset + length)].decode("utf-16-le", errors="replace")


def parse_telegram(payload: Any, *, source: str = "") -> list[news_pb2.NewsItem]:
    if isinstance(payload, dict) and "ok" in payload:  # the getUpdates envelope
        if payload["ok"] is not True:
            raise InvalidItem(f"Telegram error: {payload.get('description', 'ok is not true')}")
        updates = _list(payload.get("result"), "Telegram result")
    else:
        updates = payload if isinstance(payload, list) else [payload]
    out = []
    for i, raw in enumerate(updates):
        update = _obj(raw, f"Telegram update[{i}]")
        edited = "channel_post" not in update
        post = update.get("channel_post") or update.get("edited_channel_post")
        if post is None:
            continue  # not a channel post (member updates, private messages, ...)
        what = f"Telegram update[{i}].{'edited_channel_post' if edited else 'channel_post'}"
        post = _obj(post, what)
        chat = _obj(_get(post, "chat", dict, what), f"{what}.chat")
        message_id = _get(post, "message_id", int, what)
        date = _get(post, "date", int, what)
        text = post.get("text") or post.get("caption") or ""
        if not isinstance(text, str):
            raise InvalidItem(f"{what}: 'text' must be str, got {type(text).__name__}")
        if not text.strip():
            continue  # media without a caption
        entities = post.get("entities") or post.get("caption_entities") or []
        cashtags, links = [], []
        for e in _list(entities, f"{what}.entities"):
            if isinstance(e, dict) and e.get("type") == "cashtag":
                cashtags.append(_utf16_slice(text, int(e.get("offset", 0)), int(e.get("length", 0))))
            elif isinstance(e, dict) and e.get("type") == "text_link":
                links.append(str(e.get("url", "")))
        username = chat.get("username") or ""
        out.append(
            _item(
                news_pb2.PLATFORM_TELEGRAM,
                source
                or (f"t.me/{username}" if username else f"telegram:{_get(chat, 'id', int, what + '.chat')}"),
                str(message_id),
                username or str(chat.get("title", "")),
                text,
                _from_unix(date),
                url=f"https://t.me/{username}/{message_id}" if username else "",
                attributes={
                    "channel": str(chat.get("title", "")),
                    "signature": str(post.get("author_signature", "")),
                    "cashtags": ",".join(dict.fromkeys(cashtags)),
                    "links": " ".join(links),
                    "edited": "true" if edited else "",
                },
            )
        )
    return out


# Reddit: {"kind": "Listing", "data": {"children": [{"kind": "t3", "data": link}]}} or a list of listings.

_REDDIT_GONE = {"[removed]", "[deleted]"}


def parse_reddit(payload: Any, *, source: str = "") -> list[news_pb2.NewsItem]:
    out = []
    for i, raw in enumerate(payload if isinstance(payload, list) else [payload]):
        listing = _obj(raw, f"Reddit listing[{i}]")
        if listing.get("kind") != "Listing":
            raise InvalidItem(f"Reddit listing[{i}]: kind is {listing.get('kind')!r}, expected 'Listing'")
        data = _obj(_get(listing, "data", dict, f"Reddit listing[{i}]"), f"Reddit listing[{i}].data")
        for j, child in enumerate(_list(data.get("children", []), f"Reddit listing[{i}].data.children")):
            child = _obj(child, f"Reddit listing[{i}] child[{j}]")
            if child.get("kind") != "t3":
                continue  # comments (t1) and "more" stubs are not headlines
            what = f"Reddit listing[{i}] child[{j}]"
            link = _obj(_get(child, "data", dict, what), f"{what}.data")
            link_id = _get(link, "id", str, what)
            body = str(link.get("selftext") or "")
            is_self = bool(link.get("is_self", True))
            out.append(
                _item(
                    news_pb2.PLATFORM_REDDIT,
                    source or str(link.get("subreddit_name_prefixed") or f"r/{link.get('subreddit', '')}"),
                    str(link.get("name") or f"t3_{link_id}"),
                    "" if link.get("author") == "[deleted]" else str(link.get("author", "")),
                    html.unescape(
                        join_title(_get(link, "title", str, what), "" if body in _REDDIT_GONE else body)
                    ),
                    _from_unix(_get(link, "created_utc", (int, float), what)),
                    url=f"https://www.reddit.com{link['permalink']}" if link.get("permalink") else "",
                    attributes={
                        "score": str(link.get("score", "")),
                        "comments": str(link.get("num_comments", "")),
                        "flair": str(link.get("link_flair_text") or ""),
                        "link": "" if is_self else str(link.get("url", "")),
                    },
                )
            )
    return out


# Discord: a message object (gateway MESSAGE_CREATE) or a list of them (GET /channels/{id}/messages).


def parse_discord(payload: Any, *, source: str = "") -> list[news_pb2.NewsItem]:
    out = []
    for i, raw in enumerate(payload if isinstance(payload, list) else [payload]):
        what = f"Discord message[{i}]"
        msg = _obj(raw, what)
        message_id = _get(msg, "id", str, what)
        channel_id = _get(msg, "channel_id", str, what)
        author = _obj(_get(msg, "author", dict, what), f"{what}.author")
        content = msg.get("content") or ""
        if not isinstance(content, str):
            raise InvalidItem(f"{what}: 'content' must be str, got {type(content).__name__}")
        embeds = [e for e in _list(msg.get("embeds", []), f"{what}.embeds") if isinstance(e, dict)]
        parts = [
            content,
            *(join_title(str(e.get("title", "")), str(e.get("description", ""))) for e in embeds),
        ]
        text = "\n".join(p for p in parts if p.strip())
        if not text:
            continue  # attachments or stickers only
        guild_id = msg.get("guild_id")
        out.append(
            _item(
                news_pb2.PLATFORM_DISCORD,
                source or f"discord:{channel_id}",
                message_id,
                str(author.get("username", "")),
                text,
                parse_iso(_get(msg, "timestamp", str, what), f"{what}.timestamp"),
                url=f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}" if guild_id else "",
                attributes={
                    "channel_id": channel_id,
                    "bot": "true" if author.get("bot") else "",
                    "edited": "true" if msg.get("edited_timestamp") else "",
                    "links": " ".join(str(e["url"]) for e in embeds if e.get("url")),
                },
            )
        )
    return out


PARSERS: dict[str, Parser] = {
    "x": parse_x,
    "telegram": parse_telegram,
    "reddit": parse_reddit,
    "discord": parse_discord,
}
