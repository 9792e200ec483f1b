from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.ingest.normalize import (
    InvalidItem,
    decode_text,
    guess_language,
    item_key,
    platform_from_name,
    validate,
)
from tapewatch.news.v1 import news_pb2

NOW = datetime(2025, 2, 21, 15, 0, tzinfo=UTC)


def news(**fields: object) -> news_pb2.NewsItem:
    base: dict[str, object] = {
        "source": "cointelegraph",
        "platform": news_pb2.PLATFORM_NEWSWIRE,
        "source_item_id": "bybit-hack-1",
        "text": "Bybit hacked for $1.4B in ETH",
    }
    item = news_pb2.NewsItem(**{**base, **fields})  # type: ignore[arg-type]
    return item


def at(dt: datetime) -> news_pb2.NewsItem:
    item = news()
    item.published_at.FromDatetime(dt)
    return item


def test_normalises_a_copy() -> None:
    item = news(
        text="  Cafe\u0301 \t lists  $DOGE\r\n\n  \u00a0 now\x07 ", author=" @elonmusk ", source=" x "
    )
    item.published_at.FromDatetime(datetime(2025, 2, 21, 16, 30, tzinfo=timezone(timedelta(hours=1))))

    out = validate(item, NOW)

    assert out.text == "Café lists $DOGE\nnow"
    assert out.author == "elonmusk"
    assert out.source == "x"
    assert out.published_at.ToDatetime(tzinfo=UTC) == datetime(2025, 2, 21, 15, 30, tzinfo=UTC)
    assert out.received_at.ToDatetime(tzinfo=UTC) == NOW
    assert out.language == "en"
    assert out.id == item_key(out) and out.id.startswith("nw_") and len(out.id) == 23
    assert item.text.startswith("  Cafe") and not item.id  # the input is untouched


def test_missing_published_at_is_received_time() -> None:
    out = validate(news(), NOW)
    assert out.published_at.ToDatetime(tzinfo=UTC) == NOW


def test_given_id_and_language_are_kept() -> None:
    out = validate(news(id="custom:42", language="ko"), NOW)
    assert (out.id, out.language) == ("custom:42", "ko")


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (news(source="  "), "source is missing"),
        (news(platform=news_pb2.PLATFORM_UNSPECIFIED), "platform is unspecified"),
        (news(platform=42), "platform 42 is not a known Platform value"),
        (news(text=" \n\t\u3000 "), "text is empty after stripping whitespace"),
        (news(text="x" * 65_537), "text is 65,537 bytes in UTF-8, over the 65,536-byte limit"),
        (news(text="€" * 21_846), "text is 65,538 bytes in UTF-8, over the 65,536-byte limit"),
        (
            at(NOW + timedelta(hours=25)),
            "published_at 2025-02-22T16:00:00Z is 25.0 h in the future"
            " (limit 24 h after 2025-02-21T15:00:00Z)",
        ),
        (news(id="has space"), "id 'has space' must be 1-128 characters of A-Z a-z 0-9 . _ : -"),
    ],
)
def test_rejections_say_what_is_wrong(item: news_pb2.NewsItem, reason: str) -> None:
    with pytest.raises(InvalidItem) as e:
        validate(item, NOW)
    assert e.value.reason == reason == str(e.value)
    assert isinstance(e.value, ValueError)


def test_limits_are_inclusive() -> None:
    assert validate(news(text="x" * 65_536), NOW).text == "x" * 65_536
    assert validate(at(NOW + timedelta(hours=23, minutes=59)), NOW).HasField("published_at")


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        validate(news(), datetime(2025, 2, 21))


def test_decode_text() -> None:
    assert decode_text("₿".encode()) == "₿"
    assert decode_text(b"\xef\xbb\xbfBOM first") == "BOM first"
    with pytest.raises(InvalidItem, match=r"^text is not valid UTF-8: byte 0xff at offset 3$"):
        decode_text(b"BTC\xff")
    with pytest.raises(InvalidItem, match=r"^text contains a lone surrogate U\+D800 at index 1$"):
        decode_text("a\ud800b")
    with pytest.raises(InvalidItem, match=r"^author contains a lone surrogate U\+DCFF at index 0$"):
        decode_text(b"\xff".decode("utf-8", "surrogateescape"), "author")


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("업비트, 비트코인 입출금 일시 중단", "ko"),
        ("币安暂停以太坊提现", "zh"),
        ("ビットコインETFが承認された", "ja"),
        ("SEC approves spot bitcoin ETFs", "en"),
        ("Upbit (업비트) halts BTC withdrawals after a wallet incident", "en"),
        ("$$$ 100%", "en"),
    ],
)
def test_language_guess(text: str, language: str) -> None:
    assert guess_language(text) == language
    assert validate(news(text=text), NOW).language == language


def test_item_key_is_stable_and_distinct() -> None:
    assert item_key(news()) == item_key(news(text="another text, same source item"))
    assert item_key(news()) != item_key(news(source="coindesk"))
    assert item_key(news()) != item_key(news(source_item_id="bybit-hack-2"))
    # ("ab", "c") and ("a", "bc") must not collide
    assert item_key(news(source="ab", source_item_id="c")) != item_key(news(source="a", source_item_id="bc"))


def test_item_key_without_source_item_id_uses_content() -> None:
    bare = news(source_item_id="", author="elonmusk", text="Dogecoin  is the people’s crypto")
    assert item_key(bare) == item_key(
        news(source_item_id="", author="@elonmusk", text="Dogecoin is the people’s crypto")
    )
    assert item_key(bare) != item_key(news(source_item_id="", author="elonmusk", text="Dogecoin is not"))
    assert item_key(bare) != item_key(news(source_item_id="", author="someone", text=bare.text))
    later = news(source_item_id="", author="elonmusk", text=bare.text)
    later.published_at.FromDatetime(NOW)
    assert item_key(bare) != item_key(later)


def test_retry_without_time_or_source_id_keeps_its_id() -> None:
    bare = news(source_item_id="")
    assert validate(bare, NOW).id == validate(bare, NOW + timedelta(seconds=5)).id


@pytest.mark.parametrize(
    ("name", "platform"),
    [
        ("x", news_pb2.PLATFORM_X),
        ("Twitter", news_pb2.PLATFORM_X),
        ("PLATFORM_TELEGRAM", news_pb2.PLATFORM_TELEGRAM),
        ("truth_social", news_pb2.PLATFORM_TRUTH_SOCIAL),
        ("truth-social", news_pb2.PLATFORM_TRUTH_SOCIAL),
        (8, news_pb2.PLATFORM_EXCHANGE),
    ],
)
def test_platform_from_name(name: str | int, platform: int) -> None:
    assert platform_from_name(name) == platform


@pytest.mark.parametrize("name", ["myspace", "unspecified", "", 0, 99])
def test_platform_from_name_rejects(name: str | int) -> None:
    with pytest.raises(InvalidItem, match="platform"):
        platform_from_name(name)
