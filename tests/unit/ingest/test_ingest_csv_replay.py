import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.ingest.normalize import validate
from services.ingest.sources import make_source
from services.ingest.sources.csv_replay import SAMPLE_CSV, CsvLayout, CsvReplayConfig, CsvReplaySource
from tapewatch.news.v1 import news_pb2

SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
NOW = datetime(2026, 1, 1, tzinfo=UTC)

# Three stories over two hours, written newest first as the real file is.
TINY = """date,sentiment,source,subject,text,title,url
5-7-2022 06:00,{},CoinTelegraph,bitcoin,BTC reclaims $20K.,Bitcoin bounces,https://example.com/3
5-7-2022 04:00,{},CryptoNews,ethereum,Ether up 9%.,Ethereum rallies,https://example.com/1
5-7-2022 05:00,{},CryptoPotato,celsius,CEL keeps gaining.,CEL outperforms,https://example.com/2
5-7-2022 05:30,{},CryptoPotato,celsius,,,https://example.com/empty
5-7-2022 5 o'clock,{},CryptoPotato,celsius,Bad time.,Bad row,https://example.com/bad
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.csv"
    path.write_text(TINY, encoding="utf-8")
    return path


async def replay(source: CsvReplaySource) -> tuple[list[news_pb2.NewsItem], list[float]]:
    items, arrivals, start = [], [], time.monotonic()
    async for item in source.items():
        items.append(item)
        arrivals.append(time.monotonic() - start)
    return items, arrivals


async def test_replay_keeps_published_order_and_compresses_waiting(tiny: Path) -> None:
    source = CsvReplaySource(CsvReplayConfig(path=tiny, compress=(2, 2.0)))  # 2 h of news in 2 s

    items, arrivals = await replay(source)

    assert [i.url for i in items] == [
        "https://example.com/1",
        "https://example.com/2",
        "https://example.com/3",
    ]
    assert [i.published_at.ToJsonString() for i in items] == [
        "2022-07-05T04:00:00Z",  # original timestamps, not replay times
        "2022-07-05T05:00:00Z",
        "2022-07-05T06:00:00Z",
    ]
    # loose bounds: a loaded 2-core machine delays wake-ups, but never makes them early
    assert 1.9 <= arrivals[-1] < 6
    assert arrivals[0] < 0.9 and 0.95 <= arrivals[1] < arrivals[2]
    assert source.skipped == 2  # the row without text and the row with a bad time


async def test_replay_without_speed_does_not_wait(tiny: Path) -> None:
    items, arrivals = await replay(CsvReplaySource(CsvReplayConfig(path=tiny)))
    assert len(items) == 3 and arrivals[-1] < 1.0  # waiting at all would take hours


def test_rows_become_items(tiny: Path) -> None:
    first = CsvReplaySource(CsvReplayConfig(path=tiny)).load()[0]
    assert first.text == "Ethereum rallies. Ether up 9%."
    assert (first.source, first.platform, first.source_item_id) == (
        "cryptonews",
        news_pb2.PLATFORM_NEWSWIRE,
        first.url,
    )
    assert dict(first.attributes) == {"subject": "ethereum"}


def test_limit_and_time_window(tiny: Path) -> None:
    def urls(**config: object) -> list[str]:
        source = make_source("csv", path=tiny, **config)
        assert isinstance(source, CsvReplaySource)
        return [i.url[-1] for i in source.load()]

    assert urls(limit=2) == ["1", "2"]
    assert urls(since="2022-07-05T05:00:00Z") == ["2", "3"]
    assert urls(**{"from": "2022-07-05T04:30:00Z", "to": "2022-07-05T06:00:00Z"}) == ["2"]
    assert urls(until=datetime(2022, 7, 5, 5)) == ["1"]  # naive: UTC


def test_custom_layout(tmp_path: Path) -> None:
    path = tmp_path / "desk.csv"
    path.write_text(
        "when,headline,venue\n2025-02-21T15:20:04+00:00,ETH funding delayed,kraken\n", encoding="utf-8"
    )
    layout = CsvLayout(time=("when",), text=("headline",), platform="exchange", source_column="venue")

    (item,) = CsvReplaySource(CsvReplayConfig(path=path, layout=layout)).load()

    assert (item.source, item.platform, item.text) == (
        "kraken",
        news_pb2.PLATFORM_EXCHANGE,
        "ETH funding delayed",
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"speed": 10, "compress": (1, 1)}, "give speed or compress, not both"),
        ({"compress": (1, 0)}, "compress hours and seconds must be > 0"),
        ({"layout": "bloomberg"}, "unknown layout 'bloomberg'"),
        ({"speeed": 2}, "speeed"),
        ({"limit": -1}, "limit"),
    ],
)
def test_config_fails_fast(tiny: Path, config: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_source("csv", path=tiny, **config)


def test_unknown_header_needs_a_layout(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no preset matches the columns"):
        CsvReplaySource(CsvReplayConfig(path=path)).load()


def test_embedded_sample_reads_with_the_crypto_news_preset() -> None:
    items = CsvReplaySource(CsvReplayConfig(path=SAMPLE_CSV, layout="crypto_news")).load()
    assert 250 <= len(items) <= 350
    times = [i.published_at.ToDatetime(tzinfo=UTC) for i in items]
    assert times == sorted(times) and (times[-1] - times[0]).days >= 3
    assert {i.source for i in items} == {"cointelegraph", "cryptonews", "cryptopotato"}
    assert all(validate(i, NOW).text for i in items)
    assert CsvReplaySource(CsvReplayConfig(path=SAMPLE_CSV)).load() == items  # detected from the header


PRESET_FILES = [
    ("crypto_news", "crypto_news_2021_2022.csv", news_pb2.PLATFORM_NEWSWIRE, ""),
    ("trump_truth_social", "trump_truth_social_2025.csv", news_pb2.PLATFORM_TRUTH_SOCIAL, "realDonaldTrump"),
    ("musk_tweets", "musk_tweets_2010_2022.csv", news_pb2.PLATFORM_X, "elonmusk"),
    ("musk_crypto_curated", "musk_crypto_tweets_curated.csv", news_pb2.PLATFORM_X, "elonmusk"),
]


@pytest.mark.parametrize(("preset", "file", "platform", "author"), PRESET_FILES)
def test_preset_reads_the_real_file(
    tmp_path: Path, preset: str, file: str, platform: int, author: str
) -> None:
    real = SHARED_DATA / file
    if not real.is_file():
        pytest.skip(f"{real} is absent")
    head = tmp_path / file
    with real.open(encoding="utf-8", newline="") as f:  # the header and the first rows
        head.write_text("".join(line for _, line in zip(range(40), f, strict=False)), encoding="utf-8")

    source = CsvReplaySource(CsvReplayConfig(path=head))
    items = source.load()

    assert source.skipped == 0 and len(items) >= 20
    assert CsvReplaySource(CsvReplayConfig(path=head, layout=preset)).load() == items
    times = [i.published_at.ToNanoseconds() for i in items]
    assert times == sorted(times)
    for item in items:
        out = validate(item, NOW)
        assert out.platform == platform and out.text and out.source
        assert author == "" or out.author == author
        assert "<a " not in out.text and "&amp;" not in out.text


def test_a_bad_byte_skips_only_its_row(tiny: Path, caplog: pytest.LogCaptureFixture) -> None:
    tiny.write_bytes(tiny.read_bytes().replace(b"CEL keeps gaining.", b"CEL keeps \xffgaining."))
    source = CsvReplaySource(CsvReplayConfig(path=tiny))
    assert [i.url[-1] for i in source.load()] == ["1", "3"] and source.skipped == 3
    assert "tiny.csv:4 skipped: column 'text' is not valid UTF-8: byte 0xff at offset 10" in caplog.text
