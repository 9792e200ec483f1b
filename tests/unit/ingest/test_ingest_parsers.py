import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.ingest.normalize import InvalidItem, validate
from services.ingest.sources.parsers import PARSERS, parse_discord, parse_reddit, parse_telegram, parse_x
from tapewatch.news.v1 import news_pb2

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sources"
NOW = datetime(2025, 3, 1, tzinfo=UTC)


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def when(item: news_pb2.NewsItem) -> str:
    return item.published_at.ToJsonString()


def test_x_posts() -> None:
    etf, doge, retweet, link_only = parse_x(load("x_posts.json"))

    assert (etf.source, etf.source_item_id, etf.author) == ("x", "1745208427536199716", "WatcherGuru")
    assert when(etf) == "2024-01-10T21:11:07Z"
    assert etf.text.endswith(
        "Analysts expect billions of inflows in the first weeks."
    )  # note_tweet, not the cut text
    assert "Fidelity & ARK" in etf.text
    assert etf.url == "https://x.com/WatcherGuru/status/1745208427536199716"
    assert etf.attributes["like_count"] == "41234" and etf.language == "en"

    assert (doge.author, doge.text, doge.platform) == (
        "elonmusk",
        "Dogecoin is the people’s crypto 🐕🚀",
        news_pb2.PLATFORM_X,
    )
    assert retweet.author == "elonmusk"
    assert retweet.text.startswith("RT @WatcherGuru: JUST IN: Crypto exchange Bybit hacked")
    assert retweet.text.endswith(
        "all client assets are backed 1:1."
    )  # the original, not the 140-character cut
    assert retweet.attributes["referenced"] == "retweeted:1892963508934545551"
    assert link_only.language == ""  # "zxx": no linguistic content


def test_x_empty_and_error_payloads() -> None:
    assert parse_x({"meta": {"result_count": 0}}) == []
    with pytest.raises(InvalidItem, match=r"^X payload has no data: Could not find tweet with ids: \[1\]\.$"):
        parse_x({"errors": [{"detail": "Could not find tweet with ids: [1].", "title": "Not Found Error"}]})
    with pytest.raises(InvalidItem, match=r"^X data\[0\]: 'created_at' is missing$"):
        parse_x({"data": [{"id": "1", "text": "gm"}]})
    with pytest.raises(
        InvalidItem, match=r"^X data\[0\]\.created_at 'yesterday' is not an ISO 8601 timestamp$"
    ):
        parse_x({"data": {"id": "1", "text": "gm", "created_at": "yesterday"}})
    with pytest.raises(InvalidItem, match=r"^X payload must be a JSON object, got list$"):
        parse_x([])


def test_telegram_channel_posts() -> None:
    hack, etf, edited, private = parse_telegram(
        load("telegram_updates.json")
    )  # photo without caption skipped

    assert (hack.source, hack.source_item_id, hack.author) == (
        "t.me/whale_alert_io",
        "4521",
        "whale_alert_io",
    )
    assert when(hack) == "2025-02-21T15:14:00Z"
    assert hack.url == "https://t.me/whale_alert_io/4521"
    assert hack.attributes["links"] == "https://etherscan.io/tx/0x46de...d7f6"  # hidden behind "Details"

    assert etf.text.startswith("⚡️ JUST IN: #Bitcoin spot ETFs")  # the photo's caption
    assert etf.attributes["cashtags"] == "$IBIT"  # UTF-16 offsets past the emoji

    assert edited.source_item_id == hack.source_item_id and edited.attributes["edited"] == "true"
    assert edited.attributes["cashtags"] == "$ETH"

    assert (private.source, private.author, private.url) == (
        "telegram:-1001987654321",
        "Desk Alerts (private)",
        "",
    )
    assert private.attributes["cashtags"] == "$BNB,$ETH" and private.attributes["signature"] == "Mia"


def test_telegram_shapes() -> None:
    assert (
        parse_telegram({"update_id": 1, "message": {"message_id": 1, "text": "hi"}}) == []
    )  # not a channel post
    with pytest.raises(InvalidItem, match=r"^Telegram error: Unauthorized$"):
        parse_telegram({"ok": False, "error_code": 401, "description": "Unauthorized"})
    with pytest.raises(InvalidItem, match=r"^Telegram update\[0\]\.channel_post: 'date' is missing$"):
        parse_telegram([{"update_id": 1, "channel_post": {"message_id": 5, "chat": {"id": -1}, "text": "x"}}])
    with pytest.raises(
        InvalidItem, match=r"^Telegram update\[0\]\.channel_post: 'message_id' must be int, got str$"
    ):
        parse_telegram({"update_id": 1, "channel_post": {"message_id": "5", "chat": {"id": -1}, "date": 1}})


def test_reddit_listing() -> None:
    hack, question, removed = parse_reddit(load("reddit_listing.json"))  # the "more" stub is skipped

    assert (hack.source, hack.source_item_id, hack.author) == (
        "r/CryptoCurrency",
        "t3_1iuqx2b",
        "CoinDeskBot",
    )
    assert when(hack) == "2025-02-21T15:22:31Z"
    assert hack.url.startswith("https://www.reddit.com/r/CryptoCurrency/comments/1iuqx2b/")
    assert (
        hack.attributes["link"].startswith("https://www.coindesk.com/") and hack.attributes["score"] == "5234"
    )
    assert question.text == (
        "Is this the end of the 4-year cycle? Spot ETFs bought 10x the daily issuance this week"
        " & miners are holding. Curious what people think > halving narrative."
    )
    assert "link" not in question.attributes  # a self post links to itself
    assert (removed.text, removed.author, when(removed)) == (
        "Binance halts ETH withdrawals?",
        "",
        "2025-02-21T15:50:00.500Z",
    )


def test_reddit_shapes() -> None:
    with pytest.raises(InvalidItem, match=r"^Reddit listing\[0\]: kind is 't3', expected 'Listing'$"):
        parse_reddit({"kind": "t3", "data": {}})
    with pytest.raises(
        InvalidItem, match=r"^Reddit listing\[0\] child\[0\]: 'created_utc' must be int/float, got str$"
    ):
        parse_reddit(
            {
                "kind": "Listing",
                "data": {
                    "children": [{"kind": "t3", "data": {"id": "a", "title": "t", "created_utc": "now"}}]
                },
            }
        )


def test_discord_messages() -> None:
    notice, embed = parse_discord(load("discord_messages.json"))  # the attachment-only message is skipped

    assert (notice.source, notice.source_item_id, notice.author) == (
        "discord:1012345678901234567",
        "1342509876543210001",
        "binance_announcements",
    )
    assert when(notice) == "2025-02-21T15:05:12.481Z"
    assert (
        notice.url
        == "https://discord.com/channels/998877665544332211/1012345678901234567/1342509876543210001"
    )
    assert notice.attributes["bot"] == "true"
    assert embed.text.startswith("BlackRock files for spot Ethereum ETF. The world's largest asset manager")
    assert when(embed) == "2025-02-21T16:06:40Z"  # +01:00 in the payload
    assert embed.attributes["edited"] == "true" and embed.attributes["links"].startswith(
        "https://www.theblock.co/"
    )
    assert (
        parse_discord(load("discord_messages.json"), source="binance-discord")[0].source == "binance-discord"
    )


def test_discord_shapes() -> None:
    with pytest.raises(InvalidItem, match=r"^Discord message\[0\]: 'author' is missing$"):
        parse_discord({"id": "1", "channel_id": "2", "content": "x", "timestamp": "2025-01-01T00:00:00Z"})
    with pytest.raises(InvalidItem, match=r"^Discord message\[1\] must be a JSON object, got str$"):
        parse_discord([{"id": "1", "channel_id": "2", "author": {}, "content": "", "timestamp": "x"}, "oops"])


@pytest.mark.parametrize(
    ("platform", "fixture"),
    [
        ("x", "x_posts.json"),
        ("telegram", "telegram_updates.json"),
        ("reddit", "reddit_listing.json"),
        ("discord", "discord_messages.json"),
    ],
)
def test_every_parsed_item_passes_validation(platform: str, fixture: str) -> None:
    items = PARSERS[platform](load(fixture))
    assert items
    for item in items:
        out = validate(item, NOW)
        assert out.platform == news_pb2.Platform.Value(f"PLATFORM_{platform.upper()}")
        assert out.id.startswith("nw_") and out.source_item_id
