"""The alias table: symbols resolved by code from tickers, names, cashtags, Chinese and Korean names."""

from __future__ import annotations

import pytest

from services.analysis.assets import ASSETS, BY_SYMBOL, mentions, resolve


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Dogecoin is the people's crypto", ["DOGE"]),
        ("Doge to the moon", ["DOGE"]),
        ("$doge and $BTC both up", ["DOGE", "BTC"]),
        ("Bitcoin Cash pumps while bitcoin dips", ["BCH", "BTC"]),
        ("Ethereum Classic forks; Ethereum flat", ["ETC", "ETH"]),
        ("SEC approves spot ETH ETF", ["ETH"]),
        ("I'm getting a Shiba Inu", ["SHIB"]),
        ("Tether mints 1B USDT", ["USDT"]),
        ("比特币突破10万美元，以太坊跟涨", ["BTC", "ETH"]),
        ("比特币现金暴涨", ["BCH"]),
        ("狗狗币暴涨", ["DOGE"]),
        ("비트코인이 급등, 이더리움은 하락", ["BTC", "ETH"]),
        ("업비트, 솔라나(SOL) 원화 마켓 상장", ["SOL"]),
        ("트리플 크라운 달성", []),  # 리플 inside another word is not XRP
        ("BITCOIN NEAR $100K", ["BTC"]),  # NEAR only as a cashtag
        ("$NEAR and $link rally", ["NEAR", "LINK"]),
        ("The avalanche buried the road", []),  # a common word unless capitalised
        ("Avalanche subnets go live", ["AVAX"]),
        ("SpaceX launches Starship", []),
        ("bitcoin bitcoin BTC", ["BTC"]),
    ],
)
def test_mentions(text: str, expected: list[str]) -> None:
    assert mentions(text) == expected


@pytest.mark.parametrize(
    ("name", "symbol"),
    [("Dogecoin", "DOGE"), ("$doge", "DOGE"), ("doge", "DOGE"), ("BTC", "BTC"), ("#bitcoin", "BTC"),
     ("狗狗币", "DOGE"), ("리플", "XRP"), ("Avalanche", "AVAX"), ("matic", "POL"), ("made-up", None),
     ("", None)],
)  # fmt: skip
def test_resolve(name: str, symbol: str | None) -> None:
    assert resolve(name) == symbol


def test_the_table_covers_the_majors_and_stablecoins() -> None:
    for symbol in ("BTC", "ETH", "SOL", "XRP", "DOGE", "BNB", "ADA", "USDT", "USDC", "DAI"):
        assert symbol in BY_SYMBOL
    assert len([a for a in ASSETS if not a.stablecoin]) >= 30
    assert {a.symbol for a in ASSETS if a.stablecoin} >= {"USDT", "USDC", "DAI", "FDUSD"}
