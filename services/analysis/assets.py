"""The asset alias table: which coins a text (or the model) names, resolved by code, never taken verbatim.

Matching rules, per alias kind:
- tickers ("BTC") match upper-case as whole words, or as cashtags in any case ("$btc"); tickers that
  are also English words (NEAR, TON, DOT, UNI, OP, LINK, SUI, APT, ICP, POL, ONE) only as cashtags;
- names ("Bitcoin", "Shiba Inu") match as whole words in any case, except the few that are common words,
  which must be capitalised ("Avalanche", "Polygon", "Stellar", "Near Protocol");
- Chinese names match anywhere (no word boundaries); Korean names anywhere not preceded by a Hangul
  syllable (particles attach after a name; "트리플" must not read as 리플).
Longer aliases win over shorter ones at the same place ("Bitcoin Cash" over "Bitcoin", "以太坊经典" over
"以太坊").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class Asset:
    symbol: str
    names: tuple[str, ...] = ()  # English names, any case
    capitalised: tuple[str, ...] = ()  # names that are also common words: exact case only
    cjk: tuple[str, ...] = ()  # Chinese (simplified, traditional, slang) and Korean names
    ticker_cashtag_only: bool = False
    stablecoin: bool = False


# Top 30 by market value plus the main stablecoins.
ASSETS: tuple[Asset, ...] = (
    Asset("BTC", ("bitcoin", "xbt"), (), ("比特币", "比特幣", "大饼", "大餅", "비트코인")),
    Asset("ETH", ("ethereum", "ether"), (), ("以太坊", "以太币", "以太幣", "二饼", "이더리움")),
    Asset("XRP", ("ripple",), (), ("瑞波币", "瑞波幣", "瑞波", "리플")),
    Asset("BNB", ("binance coin", "bnb chain"), (), ("币安币", "幣安幣", "바이낸스코인")),
    Asset("SOL", ("solana",), (), ("索拉纳", "索拉納", "솔라나")),
    Asset("DOGE", ("dogecoin", "doge"), (), ("狗狗币", "狗狗幣", "도지코인")),
    Asset("ADA", ("cardano",), (), ("艾达币", "艾達幣", "卡尔达诺", "卡爾達諾", "에이다", "카르다노")),
    Asset("TRX", ("tron",), (), ("波场", "波場", "트론")),
    Asset("LINK", ("chainlink",), (), ("체인링크",), ticker_cashtag_only=True),
    Asset("AVAX", (), ("Avalanche",), ("雪崩协议", "아발란체")),
    Asset("SUI", (), ("Sui Network",), (), ticker_cashtag_only=True),
    Asset("XLM", ("stellar lumens",), ("Stellar",), ("恒星币", "恆星幣", "스텔라루멘")),
    Asset("TON", ("toncoin",), (), ("톤코인",), ticker_cashtag_only=True),
    Asset("SHIB", ("shiba inu", "shibainu"), (), ("柴犬币", "柴犬幣", "시바이누")),
    Asset("HBAR", ("hedera",), (), ("헤데라",)),
    Asset("BCH", ("bitcoin cash",), (), ("比特币现金", "比特幣現金", "비트코인캐시")),
    Asset("DOT", ("polkadot",), (), ("波卡", "폴카닷"), ticker_cashtag_only=True),
    Asset("LTC", ("litecoin",), (), ("莱特币", "萊特幣", "라이트코인")),
    Asset("UNI", ("uniswap",), (), ("유니스왑",), ticker_cashtag_only=True),
    Asset("NEAR", (), ("Near Protocol", "NEAR Protocol"), ("니어프로토콜",), ticker_cashtag_only=True),
    Asset("APT", ("aptos",), (), ("앱토스",), ticker_cashtag_only=True),
    Asset("PEPE", ("pepecoin",), (), ("佩佩币", "페페")),
    Asset("ICP", ("internet computer",), (), ("인터넷컴퓨터",), ticker_cashtag_only=True),
    Asset("ETC", ("ethereum classic",), (), ("以太坊经典", "以太經典", "이더리움클래식")),
    Asset("POL", ("matic",), ("Polygon",), ("폴리곤",), ticker_cashtag_only=True),
    Asset("XMR", ("monero",), (), ("门罗币", "門羅幣", "모네로")),
    Asset("FIL", ("filecoin",), (), ("文件币", "文件幣", "파일코인")),
    Asset("ARB", ("arbitrum",), (), ("아비트럼",)),
    Asset("OP", (), ("Optimism",), ("옵티미즘",), ticker_cashtag_only=True),
    Asset("ONE", (), ("Harmony ONE",), (), ticker_cashtag_only=True),
    # Stablecoins.
    Asset("USDT", ("tether",), (), ("泰达币", "泰達幣", "테더"), stablecoin=True),
    Asset("USDC", ("usd coin",), (), ("USD코인",), stablecoin=True),
    Asset("DAI", ("makerdao dai",), (), (), stablecoin=True),
    Asset("FDUSD", ("first digital usd",), (), (), stablecoin=True),
    Asset("USDE", ("ethena usde",), (), (), stablecoin=True),
    Asset("PYUSD", ("paypal usd",), (), (), stablecoin=True),
    Asset("TUSD", ("trueusd",), (), (), stablecoin=True),
)
BY_SYMBOL = {a.symbol: a for a in ASSETS}
SYMBOLS = tuple(BY_SYMBOL)

_EDGE_L, _EDGE_R = r"(?<![A-Za-z0-9_$])", r"(?![A-Za-z0-9_])"
_HANGUL = re.compile("[가-힣]")


@cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str], dict[str, str]]:
    """(any-case pattern, exact-case pattern, alias -> symbol) with longest aliases first."""
    any_case: dict[str, str] = {}
    exact: dict[str, str] = {}
    for a in ASSETS:
        for name in a.names:
            any_case[name.lower()] = a.symbol
        for name in (*a.capitalised, *((a.symbol,) if not a.ticker_cashtag_only else ())):
            exact[name] = a.symbol
        for name in a.cjk:
            exact[name] = a.symbol

    def alternation(words: Iterable[str]) -> str:
        return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))

    latin = [w for w in exact if w.isascii()]
    hangul = [w for w in exact if _HANGUL.search(w)]
    han = [w for w in exact if not w.isascii() and w not in hangul]
    any_re = re.compile(
        rf"\$(?P<cash>[A-Za-z]{{2,10}}){_EDGE_R}|{_EDGE_L}(?:{alternation(any_case)}){_EDGE_R}", re.I
    )
    exact_re = re.compile(
        rf"{_EDGE_L}(?:{alternation(latin)}){_EDGE_R}|(?<![가-힣])(?:{alternation(hangul)})|{alternation(han)}"
    )
    return any_re, exact_re, {**exact, **any_case}


def resolve(name: str) -> str | None:
    """One name as a model or a trader writes it ("Dogecoin", "$doge", "DOGE", "狗狗币") -> "DOGE"."""
    key = name.strip().removeprefix("$").removeprefix("#")
    if not key:
        return None
    if key.upper() in BY_SYMBOL:
        return key.upper()
    _, _, table = _patterns()
    return table.get(key.lower()) or table.get(key)


def mentions(text: str) -> list[str]:
    """The assets a text names, in order of first mention, each once."""
    any_re, exact_re, table = _patterns()
    found: list[tuple[int, int, str]] = []  # (start, -length, symbol)
    for m in any_re.finditer(text):
        symbol = resolve(m["cash"]) if m["cash"] else table.get(m[0].lower())
        if symbol:
            found.append((m.start(), -len(m[0]), symbol))
    for m in exact_re.finditer(text):
        found.append((m.start(), -len(m[0]), table[m[0]]))
    found.sort()
    out: list[str] = []
    covered_to = -1
    for start, neg_len, symbol in found:
        if start < covered_to:
            continue  # inside a longer alias found at an earlier or the same place
        covered_to = start - neg_len
        if symbol not in out:
            out.append(symbol)
    return out
