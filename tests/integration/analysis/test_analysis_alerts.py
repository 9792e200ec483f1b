"""Alerts for pending signals go to Slack (incoming webhook) and Telegram (Bot API sendMessage); a local
HTTP server stands in for both and records the requests."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis
from analysis_harness import Recorder, analysis_settings, make_story, start_harness

from services.runtime.streams import publish

pytestmark = pytest.mark.integration

HACK = "Binance halts withdrawals after a hot wallet hack; 7,000 BTC stolen"
TOKEN = "123456:AAHfiqksKZ8WmR2zSjiQ7_v4TMAKdiHk9w8"


def alert_settings(recorder: Recorder) -> dict[str, object]:
    return {
        "slack_webhook_url": f"{recorder.url}/services/T0001/B0001/abcdef",
        "telegram_bot_token": TOKEN,
        "telegram_chat_id": "-100123",
        "telegram_api_base": recorder.url,
    }


async def test_a_pending_signal_is_alerted_on_slack_and_telegram(
    redis: aioredis.Redis, tmp_path: Path, recorder: Recorder
) -> None:
    settings = analysis_settings(tmp_path, "127.0.0.1:1", **alert_settings(recorder))
    async for harness in start_harness(redis, settings, None):
        await publish(
            redis, "news.unique", make_story(HACK, "st_alert", "binance", 30).SerializeToString(), "x"
        )
        await publish(
            redis, "news.unique", make_story("Nice weather", "st_quiet", "someone").SerializeToString(), "y"
        )
        record = await harness.wait_done("st_alert")
        await harness.wait_done("st_quiet")
        [signal] = await harness.signals()
    assert record["alerts"] == {"slack": "ok", "telegram": "ok"}
    by_path = {r["path"]: r["json"] for r in recorder.requests}
    assert len(recorder.requests) == 2  # the routine story is not alerted
    slack = by_path["/services/T0001/B0001/abcdef"]
    telegram = by_path[f"/bot{TOKEN}/sendMessage"]
    assert telegram["chat_id"] == "-100123" and telegram["text"] == slack["text"]
    text = slack["text"]
    assert text.startswith("[HIGH] hack_or_exploit") and "pending approval" in text
    assert signal.id in text and "st_alert" in text and "BTC: bearish" in text and HACK in text


async def test_a_failing_alert_channel_is_recorded_and_the_signal_still_goes_out(
    redis: aioredis.Redis, tmp_path: Path, recorder: Recorder
) -> None:
    recorder.status = 500
    settings = analysis_settings(tmp_path, "127.0.0.1:1", **alert_settings(recorder))
    async for harness in start_harness(redis, settings, None):
        await publish(
            redis, "news.unique", make_story(HACK, "st_alert2", "binance", 30).SerializeToString(), "x"
        )
        record = await harness.wait_done("st_alert2")
        signals = await harness.signals()
    assert len(signals) == 1
    assert record["alerts"]["slack"].startswith("HTTP 500") and record["alerts"]["telegram"].startswith(
        "HTTP 500"
    )
    assert TOKEN not in str(record)  # the secret never lands in the archive
    assert (await redis.xpending("news.unique", "analysis"))["pending"] == 0
