"""JSON webhook: POST /v1/news with one item object or a list of them.

Answers 202 {"ids": [...]} once every item is valid and handed on; 400 {"error", "index"} for invalid JSON,
an unknown field or platform, a bad timestamp or an item that `validate` refuses (then nothing of the
request is handed on); 401 without the configured bearer token; 413 for bodies over 1 MiB; 503 when the
items cannot be handed on (retry: ids are idempotent). `platform` defaults to "webhook"; `published_at`
must be ISO 8601 with a UTC offset.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import SecretStr

from services.ingest.normalize import InvalidItem, decode_text, platform_from_name, validate
from services.ingest.sources.base import SourceConfig, parse_iso, set_time
from tapewatch.news.v1 import news_pb2

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
STRING_FIELDS = ("text", "source", "platform", "author", "url", "source_item_id", "language", "published_at")
FIELDS = {*STRING_FIELDS, "attributes"}

OnItem = Callable[[news_pb2.NewsItem], Awaitable[None]]


def item_from_json(obj: Any) -> news_pb2.NewsItem:
    """One webhook JSON object -> NewsItem (not yet validated); InvalidItem for a wrong shape."""
    if not isinstance(obj, dict):
        raise InvalidItem(f"item must be a JSON object, got {type(obj).__name__}")
    if unknown := set(obj) - FIELDS:
        raise InvalidItem(
            f"unknown field(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(FIELDS))})"
        )
    values = {}
    for key in STRING_FIELDS:
        value = obj.get(key, "")
        if not isinstance(value, str):
            raise InvalidItem(f"{key} must be a string, got {type(value).__name__}")
        values[key] = decode_text(value, key)
    attributes = obj.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(
        isinstance(v, str | int | float | bool) for v in attributes.values()
    ):
        raise InvalidItem("attributes must be an object of strings, numbers or booleans")
    item = news_pb2.NewsItem(
        text=values["text"],
        source=values["source"],
        platform=platform_from_name(values["platform"] or "webhook"),
        author=values["author"],
        url=values["url"],
        source_item_id=values["source_item_id"],
        language=values["language"],
        attributes={
            decode_text(k, "attribute name"): decode_text(str(v), f"attribute {k}")
            for k, v in attributes.items()
        },
    )
    if values["published_at"]:
        set_time(item.published_at, parse_iso(values["published_at"], "published_at"))
    return item


def _error(status: int, reason: str, **extra: Any) -> web.Response:
    return web.json_response({"error": reason, **extra}, status=status)


def make_webhook_app(
    on_item: OnItem,
    *,
    path: str = "/v1/news",
    token: str | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> web.Application:
    """An aiohttp app that validates POSTed items and awaits `on_item` for each, in order."""

    async def publish(request: web.Request) -> web.Response:
        if token and not hmac.compare_digest(
            request.headers.get("Authorization", "").encode(), f"Bearer {token}".encode()
        ):
            return _error(401, "missing or wrong bearer token")
        if (request.content_length or 0) > MAX_BODY:
            return _error(413, f"body is {request.content_length:,} bytes, over the {MAX_BODY:,}-byte limit")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"body is over the {MAX_BODY:,}-byte limit")
        try:
            payload = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError as e:
            return _error(400, f"body is not valid UTF-8 (byte offset {e.start})")
        except json.JSONDecodeError as e:
            return _error(400, f"invalid JSON: {e}")
        batch = payload if isinstance(payload, list) else [payload]
        if not batch:
            return _error(400, "empty list: nothing to publish")
        now, items = clock(), []
        for i, obj in enumerate(batch):
            try:
                items.append(validate(item_from_json(obj), now))
            except InvalidItem as e:
                return _error(400, e.reason, index=i)
        try:
            for item in items:
                await on_item(item)
        except Exception as e:
            log.exception("webhook could not hand items on")
            return _error(503, f"items could not be handed on ({type(e).__name__}); retry")
        return web.json_response({"ids": [item.id for item in items]}, status=202)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post(path, publish)
    return app


class WebhookConfig(SourceConfig):
    host: str = "127.0.0.1"
    port: int = 8088  # 0: any free port (see WebhookSource.port)
    path: str = "/v1/news"
    token: SecretStr | None = None  # when set, requests need "Authorization: Bearer <token>"
    queue_size: int = 10_000  # items waiting for the consumer; beyond it requests get 503
    name: str = "webhook"


class WebhookSource:
    """Serves the webhook while `items()` runs; yields what was POSTed, in arrival order."""

    def __init__(self, config: WebhookConfig) -> None:
        self.config = config
        self.name = config.name
        self.port = config.port
        self._queue: asyncio.Queue[news_pb2.NewsItem | None] = asyncio.Queue()
        self._runner: web.AppRunner | None = None
        self._closed = False

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}{self.config.path}"

    async def _hand_on(self, item: news_pb2.NewsItem) -> None:
        if self._closed or self._queue.qsize() >= self.config.queue_size:
            raise RuntimeError("webhook queue is full or closed")
        self._queue.put_nowait(item)

    async def start(self) -> None:
        """Bind and serve; `items()` calls it, call it first to know the port."""
        if self._runner is not None or self._closed:
            return
        token = self.config.token.get_secret_value() if self.config.token else None
        runner = web.AppRunner(
            make_webhook_app(self._hand_on, path=self.config.path, token=token), access_log=None
        )
        await runner.setup()
        await web.TCPSite(runner, self.config.host, self.config.port).start()
        self.port = runner.addresses[0][1]
        self._runner = runner

    async def items(self) -> AsyncIterator[news_pb2.NewsItem]:
        await self.start()
        while (item := await self._queue.get()) is not None:
            yield item

    async def close(self) -> None:
        """Stop accepting; items already answered 202 are still yielded, then `items()` ends."""
        if self._closed:
            return
        self._closed = True
        if self._runner is not None:
            await self._runner.cleanup()
        self._queue.put_nowait(None)
