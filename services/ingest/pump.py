"""`tapewatch source KIND key=value ...`: run one source adapter and publish what it yields to the
ingest service at TAPEWATCH_INGEST_ADDR. Values are JSON where they parse (numbers, lists), else text.

  tapewatch source csv path=../shared/data/trump_truth_social_2025.csv compress='[24, 60]'
  tapewatch source rss url=https://www.sec.gov/news/pressreleases.rss platform=regulator interval=30
  tapewatch source webhook port=8088
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import Any

from aiohttp import web

from services.ingest.publisher import publish_source
from services.ingest.sources import KINDS, make_source
from services.ingest.sources.webhook import WebhookConfig, make_webhook_app
from services.runtime.interceptors import insecure_channel
from services.runtime.server import wait_for_shutdown_signal
from services.runtime.settings import ServiceSettings
from tapewatch.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from tapewatch.news.v1 import news_pb2


def parse_config(pairs: list[str]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"expected key=value, got {pair!r}")
        try:
            config[key] = json.loads(value)
        except json.JSONDecodeError:
            config[key] = value
    return config


async def serve_webhook(config: dict[str, Any], ingest_addr: str) -> None:
    """The webhook answers 202 only once ingest has stored the item (503 otherwise, so the sender retries):
    nothing accepted lives only in this process's memory."""
    cfg = WebhookConfig(**config)
    channel = insecure_channel(ingest_addr, "source-webhook")
    stub = ingest_pb2_grpc.IngestServiceStub(channel)

    async def store(item: news_pb2.NewsItem) -> None:
        await stub.Publish(ingest_pb2.PublishRequest(item=item), timeout=5)

    token = cfg.token.get_secret_value() if cfg.token else None
    runner = web.AppRunner(make_webhook_app(store, path=cfg.path, token=token), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, cfg.host, cfg.port).start()
    print(
        f"webhook on http://{cfg.host}:{runner.addresses[0][1]}{cfg.path} -> ingest {ingest_addr}",
        file=sys.stderr,
    )
    try:
        await wait_for_shutdown_signal()
    finally:
        await runner.cleanup()
        await channel.close()


async def pump(kind: str, config: dict[str, Any], ingest_addr: str) -> None:
    if kind == "webhook":
        return await serve_webhook(config, ingest_addr)
    source = make_source(kind, **config)
    channel = insecure_channel(ingest_addr, f"source-{kind}")
    try:
        tally = await publish_source(source, ingest_pb2_grpc.IngestServiceStub(channel))
        print(
            f"{source.name}: sent {tally.sent} accepted {tally.accepted} duplicates {tally.duplicates} "
            f"rejected {tally.rejected}",
            file=sys.stderr,
        )
    finally:
        await source.close()
        await channel.close()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in KINDS:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        config = parse_config(argv[1:])
    except ValueError as exc:
        print(f"tapewatch source: {exc}", file=sys.stderr)
        return 2
    settings = ServiceSettings.load()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(pump(argv[0], config, settings.ingest_addr))
    return 0
