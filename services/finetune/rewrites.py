"""Rules and templates that turn one real headline or post into a copy (same facts, other platform) or a
hard negative (same template, one material fact changed).

Copies (label 1), facts unchanged:
- `x`: an X post with emoji, cashtags of the assets the text names, hashtags or a link;
- `telegram`: a channel alert (sirens, "ALERT", the outlet, a tag line);
- `reddit`: a post title (a flair, sentence case, "(via outlet)");
- `discord`: a bot alert (bold, @everyone, a quote block with the outlet);
- `quoted`: a quoted repost ("RT @outlet:", "Outlet reports:", the text in quotes);
- `truncated`: the text cut at a word boundary with "…" where the cut keeps every entity, number and
  direction word the second look finds (services/dedup/second_look.py), so no fact is lost;
- `zh`, `ko`: a Chinese or Korean headline for the few event shapes a small template can say without
  losing a fact (price moves, listings, hacks, raises, SEC decisions, bans, record highs), with the asset
  names of services/analysis/assets.py and a few exchanges and countries; other names stay in Latin.

Negatives (label 0), everything else kept:
- `direction`: a direction word flipped (rises/falls, approves/rejects, inflows/outflows, lists/delists);
- `numbers`: each number scaled by a factor between 0.4 and 3 in the text's own format;
- `entity_swap`: one exchange, asset, regulator, country, company or person swapped for another of its kind;
- `action`: the same entity doing something else (partners with / ends partnership with, hires / fires);
- `follow_up`: the headline plus a new material fact (withdrawals halted, CEO steps down, ...).

Every template family and every table (direction words, actions, replacement entities, number factors,
follow-up facts) is split in two: every third entry is kept for the held-out split, so the held-out pairs use
wordings and substitutions the model never saw in training (`heldout=True` picks only from those).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

from services.analysis.assets import BY_SYMBOL, mentions, resolve
from services.dedup.second_look import extract

Platform = Literal["x", "telegram", "reddit", "discord", "quoted", "truncated", "zh", "ko"]
PLATFORMS: tuple[Platform, ...] = ("x", "telegram", "reddit", "discord", "quoted", "truncated", "zh", "ko")
EDITS = ("direction", "numbers", "entity_swap", "action", "follow_up")


T = TypeVar("T")


def variants(items: Sequence[T], heldout: bool) -> list[T]:
    """Every third variant belongs to the held-out split, the rest to training."""
    return [v for i, v in enumerate(items) if (i % 3 == 2) == heldout] or list(items)


# --- copies -------------------------------------------------------------------------------------------

_TEMPLATES: dict[str, tuple[str, ...]] = {
    "x": (
        "🚨 {t} {cash}",
        "JUST IN: {t} 👀",
        "{t} 🚀🚀 {hash} #Crypto",
        "BREAKING — {t} {cash}",
        "{t}\n\n{url}",
        "🔥 {t} 🔥 {cash} #crypto",
    ),
    "telegram": (
        "⚡️ ALERT ⚡️\n{t}\n\n{hash} | @{handle}",
        "🔴 {t}",
        "📢 {outlet}: {t}",
        "❗️{t}❗️\nSource: {outlet}",
        "{T}",
        "🟢 {t}\n👉 {url}",
    ),
    "reddit": (
        "{t} [NEWS]",
        "{t} (via {outlet})",
        "[Discussion] {t}",
        "{s}",
        "{t}. Thoughts?",
        "{s} | {outlet}",
    ),
    "discord": (
        "**{t}** | {outlet} <{url}>",
        "@everyone 📰 {t}",
        "> {t}\n— {outlet}",
        "📰 **{outlet}** — {t}",
        "🚨 {t} 🚨 @here",
        "**NEWS** {t}",
    ),
    "quoted": (
        "RT @{handle}: {t}",
        '"{t}" — {outlet}',
        "{outlet} reports: {t}",
        "Via @{handle}: {t} {url}",
        "“{t}” (@{handle})",
        "{outlet}: {t}",
    ),
}
_HANDLES = {"cointelegraph": "Cointelegraph", "cryptonews": "cryptonews", "cryptopotato": "Crypto_Potato"}


def _sentence_case(text: str) -> str:
    """ "Bitcoin Returns Above USD 20K" -> "Bitcoin returns above USD 20K": capitals kept in tickers."""
    words = text.split(" ")
    out = [words[0]]
    for w in words[1:]:
        keep = sum(c.isupper() for c in w) > 1 or bool(resolve(w.strip(",.:;'’")))
        out.append(w if keep else w[:1].lower() + w[1:])
    return " ".join(out)


def copy_of(
    text: str, platform: Platform, rng: random.Random, heldout: bool, outlet: str = "", url: str = ""
) -> str | None:
    """`text` as `platform` would carry it, facts unchanged; None when the platform cannot say it."""
    if platform == "truncated":
        return truncate(text, rng)
    if platform in ("zh", "ko"):
        return translate(text, platform)
    symbols = mentions(text)[:2]
    outlet = outlet or "Crypto News"
    fields = {
        "t": text,
        "T": text.upper(),
        "s": _sentence_case(text),
        "cash": " ".join(f"${s}" for s in symbols) or "#crypto",
        "hash": " ".join(f"#{s}" for s in symbols) or "#Crypto",
        "outlet": outlet,
        "handle": _HANDLES.get(outlet.lower(), re.sub(r"\W", "", outlet)),
        "url": url or f"https://t.me/{_HANDLES.get(outlet.lower(), 'news')}/{rng.randrange(1000, 99999)}",
    }
    return rng.choice(variants(_TEMPLATES[platform], heldout)).format(**fields).strip()


def _facts(text: str) -> tuple[object, ...]:
    f = extract(text)
    return (f.entities, f.numbers, f.directions)


def truncate(text: str, rng: random.Random) -> str | None:
    """The text cut after 55-80 % of its words, where the cut keeps every fact the second look finds."""
    words = text.split()
    if len(words) < 8:
        return None
    full = _facts(text)
    for keep in sorted(
        range(max(5, int(len(words) * 0.55)), int(len(words) * 0.8) + 1), key=lambda _: rng.random()
    ):
        head = " ".join(words[:keep]).rstrip(",;:–—-")
        if _facts(head) == full:
            return head + rng.choice(("…", "...", "… (1/2)"))
    return None


# --- Chinese and Korean -------------------------------------------------------------------------------

_EXCHANGES_CJK = {
    "Binance": ("币安", "바이낸스"), "Coinbase": ("Coinbase", "코인베이스"),
    "Kraken": ("Kraken", "크라켄"), "FTX": ("FTX", "FTX"), "OKX": ("欧易", "OKX"),
    "Huobi": ("火币", "후오비"), "KuCoin": ("KuCoin", "쿠코인"), "Upbit": ("Upbit", "업비트"),
    "Bithumb": ("Bithumb", "빗썸"), "Bybit": ("Bybit", "바이비트"), "Gemini": ("Gemini", "제미니"),
    "Robinhood": ("Robinhood", "로빈후드"), "Crypto.com": ("Crypto.com", "크립토닷컴"),
}  # fmt: skip
_COUNTRIES_CJK = {
    "China": ("中国", "중국"), "Russia": ("俄罗斯", "러시아"), "India": ("印度", "인도"),
    "US": ("美国", "미국"), "United States": ("美国", "미국"), "South Korea": ("韩国", "한국"),
    "Japan": ("日本", "일본"), "Thailand": ("泰国", "태국"), "Turkey": ("土耳其", "튀르키예"),
    "Egypt": ("埃及", "이집트"), "Nigeria": ("尼日利亚", "나이지리아"), "Iran": ("伊朗", "이란"),
    "Qatar": ("卡塔尔", "카타르"), "Nepal": ("尼泊尔", "네팔"), "Pakistan": ("巴基斯坦", "파키스탄"),
    "Indonesia": ("印度尼西亚", "인도네시아"),
}  # fmt: skip
_ASSET_NAMES = (
    r"Bitcoin|Ethereum|Ether|BTC|ETH|XRP|Solana|SOL|Cardano|ADA|Dogecoin|DOGE|Shiba Inu|SHIB|Litecoin|LTC"
    r"|BNB|Tron|TRX|Polkadot|DOT|Avalanche|AVAX"
)
_NUM = r"(?:\$|USD\s?)?\d[\d,]*(?:\.\d+)?\s?(?:[KMB]|million|billion|%)?"
_NAME = r"[\w .'’$-]"
_EXCHANGE = "|".join(map(re.escape, _EXCHANGES_CJK))
_COUNTRY = "|".join(map(re.escape, _COUNTRIES_CJK))
_PATTERNS: dict[str, re.Pattern[str]] = {
    "high": re.compile(
        rf"^(?P<asset>{_ASSET_NAMES}) (?:hits|sets|reaches) (?:a )?new (?:all-time|record) high"
        rf"(?: (?:of|above|at) (?P<num>{_NUM}))?$",
        re.I,
    ),
    "list": re.compile(
        rf"^(?P<ex>{_EXCHANGE})(?: to)? (?P<verb>lists?|adds|delists?) (?P<what>{_NAME}{{2,40}})$"
    ),
    "hack": re.compile(
        rf"^(?P<who>{_NAME}{{2,40}}?) (?:is |gets )?(?:hacked|exploited|drained) for "
        rf"(?:over |nearly |about )?(?P<num>{_NUM})$",
        re.I,
    ),
    "raise": re.compile(
        rf"^(?P<who>{_NAME}{{2,40}}?) (?:raises|secures|closes) (?P<num>{_NUM})"
        r"(?: in (?:a )?(?:Series [A-D]|seed|funding|strategic)(?: funding)?(?: round)?)?$"
    ),
    "sec": re.compile(
        rf"^(?:US |U\.S\. )?SEC (?P<verb>approves|delays|rejects|postpones) (?P<what>{_NAME}{{3,50}})$"
    ),
    "ban": re.compile(rf"^(?P<country>{_COUNTRY}) (?P<verb>bans|outlaws) (?P<what>{_NAME}{{3,40}})$"),
}
# One price clause: "Bitcoin drops below $30K", "ETH price jumps 9% to $1,200", "Ethereum Rallies".
_PRICE = re.compile(
    r"^(?P<asset>[A-Za-z]+(?: [A-Z][a-z]+)?)(?:'s|’s)?(?: price)? (?P<verb>drops|falls|plunges|dips|slides"
    r"|tumbles|crashes|sinks|surges|jumps|rises|climbs|soars|rallies|spikes|rebounds|breaks|reclaims|returns"
    r"|hits|tops|nears|tests)(?: (?P<prep>below|under|above|over|past|to|by|toward|towards|back above))?"
    rf"(?: (?P<num>{_NUM}))?(?: to (?P<to>{_NUM}))?$",
    re.I,
)
_UP = {
    "surges",
    "jumps",
    "rises",
    "climbs",
    "soars",
    "rallies",
    "spikes",
    "rebounds",
    "breaks",
    "reclaims",
    "returns",
}
_LEVEL = {
    "hits": ("触及", "도달"),
    "tops": ("突破", "돌파"),
    "nears": ("逼近", "근접"),
    "tests": ("测试", "테스트"),
}


def _cjk_name(name: str, lang: int) -> str:
    """An asset, exchange or country in Chinese (0) or Korean (1); other names as written."""
    if name in _EXCHANGES_CJK:
        return _EXCHANGES_CJK[name][lang]
    if name in _COUNTRIES_CJK:
        return _COUNTRIES_CJK[name][lang]
    symbol = resolve(name)
    if symbol and symbol in BY_SYMBOL:
        names = [n for n in BY_SYMBOL[symbol].cjk if bool(re.search("[가-힣]", n)) == (lang == 1)]
        if names:
            return names[0]
    return name


def _cjk_text(text: str, lang: int) -> str:
    return re.sub(rf"\b(?:{_ASSET_NAMES})\b", lambda m: _cjk_name(m[0], lang), text.strip())


def _cjk_number(raw: str, lang: int) -> str | None:
    """ "$30K" -> 3万美元 / 3만 달러; "9%" stays; a number with no unit is not converted (None)."""
    raw = raw.strip()
    if raw.endswith("%"):
        return raw.replace(" ", "")
    m = re.fullmatch(r"(\$|USD\s?)?(\d[\d,]*(?:\.\d+)?)\s?([KMB]|million|billion)?", raw)
    if not m or not (m[1] or m[3]):
        return None
    value = float(m[2].replace(",", "")) * {"K": 1e3, "M": 1e6, "B": 1e9, "million": 1e6, "billion": 1e9}.get(
        m[3] or "", 1.0
    )
    units = (("亿美元", "万美元", "美元"), ("억 달러", "만 달러", " 달러"))[lang]
    for size, unit in zip((1e8, 1e4, 1.0), units, strict=True):
        if value >= size:
            return f"{value / size:.4g}{unit}"
    return None


def _price_clause(clause: str, lang: int) -> str | None:
    m = _PRICE.match(clause)
    if not m or resolve(m["asset"]) is None:
        return None
    asset, verb, prep = _cjk_name(m["asset"], lang), m["verb"].lower(), (m["prep"] or "").lower()
    num = _cjk_number(m["num"], lang) if m["num"] else ""
    to = _cjk_number(m["to"], lang) if m["to"] else ""
    if num is None or to is None or (verb in _LEVEL and not num):
        return None
    up = verb in _UP
    if verb in _LEVEL:
        zh, ko = _LEVEL[verb]
    elif prep in ("below", "under", "above", "over", "past", "back above") or verb in ("breaks", "reclaims"):
        zh, ko = ("突破", "돌파") if up else ("跌破", "아래로 하락")
    elif prep in ("to", "toward", "towards"):
        zh, ko = ("涨至", "까지 상승") if up else ("跌至", "까지 하락")
    else:
        zh, ko = ("上涨", "상승") if up else ("下跌", "하락")
    if lang == 0:
        return f"{asset}{zh}{num}" + (f"至{to}" if to else "")
    return f"{asset} {num} {ko}".replace("  ", " ").replace(" 까지", "까지") + (f", {to}" if to else "")


def translate(text: str, language: str) -> str | None:
    """A Chinese or Korean headline with the same facts, for the event shapes above; None otherwise. A
    headline of price clauses ("Bitcoin Returns Above USD 20K, Ethereum Rallies") is said clause by clause."""
    lang = 0 if language == "zh" else 1
    text = text.strip().rstrip(".")
    clauses = [_price_clause(c.strip(), lang) for c in text.split(", ")]
    if all(clauses):
        return ("，" if lang == 0 else ", ").join(c for c in clauses if c)
    for shape, pattern in _PATTERNS.items():
        m = pattern.match(text)
        if not m:
            continue
        g = m.groupdict()
        num = _cjk_number(g["num"], lang) if g.get("num") else ""
        if num is None:
            return None
        if shape == "high":
            asset = _cjk_name(g["asset"], lang)
            return (
                f"{asset}创历史新高{num}"
                if lang == 0
                else f"{asset}, 사상 최고가 {num} 경신".replace("  ", " ")
            )
        if shape == "list":
            ex, what = _cjk_name(g["ex"], lang), _cjk_text(g["what"], lang)
            off = g["verb"].startswith("delist")
            if lang == 0:
                return f"{ex}{'下架' if off else '上线'}{what}"
            return f"{ex}, {what} {'상장폐지' if off else '상장'}"
        if shape == "hack":
            who = _cjk_text(g["who"], lang)
            return f"{who}遭黑客攻击，损失{num}" if lang == 0 else f"{who} 해킹 피해, {num} 유출"
        if shape == "raise":
            who = _cjk_text(g["who"], lang)
            return f"{who}完成{num}融资" if lang == 0 else f"{who}, {num} 투자 유치"
        if shape == "sec":
            verb, what = g["verb"].lower(), _cjk_text(g["what"], lang)
            zh = {"approves": "批准", "delays": "推迟", "postpones": "推迟", "rejects": "拒绝"}[verb]
            ko = {"approves": "승인", "delays": "연기", "postpones": "연기", "rejects": "거부"}[verb]
            return f"美国SEC{zh}{what}" if lang == 0 else f"미국 SEC, {what} {ko}"
        if shape == "ban":
            country, what = _cjk_name(g["country"], lang), _cjk_text(g["what"], lang)
            return f"{country}禁止{what}" if lang == 0 else f"{country}, {what} 금지"
    return None


# --- hard negatives -----------------------------------------------------------------------------------

_FLIPS = (
    ("rises", "falls"), ("rise", "fall"), ("rising", "falling"), ("rose", "fell"), ("surges", "plunges"),
    ("surge", "plunge"), ("surged", "plunged"), ("surging", "plunging"), ("jumps", "drops"), ("jump", "drop"),
    ("jumped", "dropped"), ("climbs", "slides"), ("climbed", "slid"), ("soars", "plummets"),
    ("soared", "plummeted"), ("rallies", "tumbles"), ("rallied", "tumbled"), ("gains", "losses"),
    ("above", "below"), ("higher", "lower"), ("all-time high", "all-time low"), ("record high", "record low"),
    ("bullish", "bearish"), ("bulls", "bears"), ("inflows", "outflows"), ("inflow", "outflow"),
    ("approves", "rejects"), ("approved", "rejected"), ("approve", "reject"), ("approval", "rejection"),
    ("buys", "sells"), ("bought", "sold"), ("buying", "selling"), ("buy", "sell"), ("buyers", "sellers"),
    ("lists", "delists"), ("listing", "delisting"), ("listed", "delisted"), ("halts", "resumes"),
    ("halted", "resumed"), ("bans", "legalizes"), ("banned", "legalized"), ("hikes", "cuts"), ("hike", "cut"),
    ("wins", "loses"), ("won", "lost"), ("increase", "decrease"), ("increases", "decreases"),
    ("increased", "decreased"), ("gainers", "losers"), ("uptrend", "downtrend"), ("longs", "shorts"),
    ("optimistic", "pessimistic"), ("adds", "removes"), ("added", "removed"), ("delays", "approves"),
    ("suspends", "resumes"), ("pauses", "resumes"), ("outperforms", "underperforms"), ("boosts", "cuts"),
)  # fmt: skip
_ACTIONS = (
    ("partners with", "ends partnership with"), ("acquires", "sells"), ("acquired", "sold"),
    ("invests in", "pulls out of"), ("hires", "fires"), ("joins", "leaves"), ("sues", "settles with"),
    ("files for", "withdraws"), ("opens", "closes"), ("enters", "exits"), ("integrates", "drops"),
    ("backs", "opposes"), ("supports", "drops support for"), ("adopts", "rejects"), ("passes", "rejects"),
    ("signs", "vetoes"), ("confirms", "denies"), ("completes", "cancels"), ("launches", "delays"),
    ("launched", "scrapped"), ("unveils", "shelves"), ("introduces", "withdraws"),
    ("accepts", "stops accepting"), ("allows", "bans"), ("plans", "abandons plans"),
    ("expands", "scales back"), ("announces", "cancels"),
    ("raises", "fails to raise"), ("restores", "suspends"), ("recovers", "loses"), ("secures", "loses"),
    ("to launch", "to shut down"), ("to list", "to delist"), ("to acquire", "to sell"),
    ("to allow", "to ban"),
)  # fmt: skip
_ENTITIES: dict[str, tuple[str, ...]] = {
    "exchange": ("Binance", "Coinbase", "Kraken", "FTX", "Gemini", "OKX", "Huobi", "KuCoin", "Bybit",
                 "Bitfinex", "Crypto.com", "Bitstamp", "Robinhood", "Bittrex", "Upbit", "Bithumb"),
    "asset": ("Bitcoin", "Ethereum", "Solana", "Cardano", "Dogecoin", "XRP", "Polkadot", "Avalanche",
              "Litecoin", "Shiba Inu", "Tron", "Polygon", "Chainlink", "Cosmos", "Tether", "Monero"),
    "ticker": ("BTC", "ETH", "SOL", "ADA", "DOGE", "XRP", "DOT", "AVAX", "LTC", "SHIB", "TRX", "MATIC",
               "LINK", "ATOM", "USDT", "BNB"),
    "agency": ("SEC", "CFTC", "Fed", "ECB", "IMF", "DOJ", "FCA", "FBI", "IRS"),
    "country": ("China", "Russia", "India", "Japan", "South Korea", "UK", "Germany", "Brazil", "Singapore",
                "Australia", "Canada", "Nigeria", "Turkey", "El Salvador", "Ukraine", "Argentina", "Thailand",
                "Switzerland", "France", "Mexico"),
    "nationality": ("Chinese", "Russian", "Indian", "Japanese", "Korean", "British", "German", "Brazilian",
                    "Australian", "Canadian", "Turkish", "Ukrainian", "Swiss", "French", "Thai"),
    "company": ("BlackRock", "Fidelity", "Goldman Sachs", "JPMorgan", "Morgan Stanley", "Visa", "Mastercard",
                "PayPal", "Tesla", "MicroStrategy", "Meta", "Twitter", "Google", "Apple", "Amazon",
                "Microsoft", "Nvidia", "Grayscale", "Circle", "Ripple", "Nike", "Adidas", "Samsung"),
    "person": ("Elon Musk", "Michael Saylor", "Vitalik Buterin", "Gary Gensler", "Changpeng Zhao",
               "Sam Bankman-Fried", "Do Kwon", "Jack Dorsey", "Cathie Wood", "Brian Armstrong",
               "Nayib Bukele", "Janet Yellen", "Jerome Powell", "Charles Hoskinson", "Justin Sun"),
    "surname": ("Musk", "Saylor", "Buterin", "Gensler", "Dorsey", "Bukele", "Yellen", "Powell", "Hoskinson",
                "Armstrong", "Novogratz", "Wood"),
}  # fmt: skip
_FOLLOW_UPS = (
    "{t}; withdrawals halted", "{t} — CEO steps down", "{t}, SEC opens probe", "{t}; {n} arrested",
    "{t} as firm files for bankruptcy", "{t}; trading suspended", "{t}, losses reach ${n}M",
    "{t}; funds frozen by authorities", "{t}: class-action lawsuit filed", "{t}, token delisted",
    "{t}; exchange blocks deposits", "{t} as founder is charged with fraud", "{t}; regulators order a halt",
    "{t}, co-founder detained at airport", "{t}; stablecoin loses its peg",
    "{t} after auditor withdraws its report", "{t}; users report missing balances",
    "{t}, DOJ unseals indictment", "{t}; bridge drained in second exploit",
    "{t} as lender pauses redemptions", "{t}; {n}% of staff laid off", "{t}, licence revoked",
    "{t}; hacker returns the funds", "{t} — trading resumes", "{t}; Treasury sanctions the wallets",
    "{t}, ETF application withdrawn", "{t}; chain halted by validators",
    "{t} as bank cuts ties with the exchange", "{t}; liquidations top ${n}M", "{t}, insurance fund tapped",
    "{t}; court appoints a receiver", "{t} — exchange seeks a buyer", "{t}; founder flees the country",
    "{t}, emergency governance vote passes", "{t}; customer data leaked", "{t} as CFO resigns",
    "{t}; app pulled from the App Store", "{t}, state regulators issue cease-and-desist",
    "{t}; contract paused after exploit", "{t} as rival walks away from the deal",
    "{t}; Interpol red notice issued", "{t}, mining pool goes offline", "{t}; hard fork postponed",
    "{t} as auditor flags missing reserves", "{t}; FBI seizes the servers",
    "{t}, deposits frozen for {n} days", "{t}; shareholders sue the board",
    "{t} as stablecoin issuer halts minting",
)  # fmt: skip


def _table(pairs: Sequence[tuple[str, str]], both_ways: bool) -> dict[str, str]:
    table = {a: b for a, b in pairs}
    if both_ways:
        table.update({b: a for a, b in pairs if b not in table})
    return table


def _case_like(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def _replace_words(text: str, table: dict[str, str], first_only: bool) -> str | None:
    pattern = re.compile(
        r"(?<![\w-])(" + "|".join(re.escape(k) for k in sorted(table, key=len, reverse=True)) + r")(?![\w-])",
        re.I,
    )
    out, n = pattern.subn(lambda m: _case_like(table[m[1].lower()], m[1]), text, count=1 if first_only else 0)
    return out if n else None


def flip_direction(text: str, heldout: bool = False) -> str | None:
    return _replace_words(text, _table(variants(_FLIPS, heldout), both_ways=True), first_only=False)


def change_action(text: str, heldout: bool = False) -> str | None:
    return _replace_words(text, _table(variants(_ACTIONS, heldout), both_ways=False), first_only=True)


_NUMBER = re.compile(
    r"(?P<pre>\$|USD\s?|€|£)?(?<![\w.,])(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"(?P<suf>\s?(?:%|[KMB]\b|k\b|bn\b|million\b|billion\b|trillion\b|thousand\b))?"
    r"(?!\s?(?:h|hrs?|hours?|days?|weeks?|months?|years?|mins?|minutes?|am|pm|th|st|nd|rd|x)\b)"
)


def _is_year(m: re.Match[str]) -> bool:
    raw = m["num"]
    return not m["pre"] and not m["suf"] and raw.isdigit() and 1990 <= int(raw) <= 2039


def change_numbers(text: str, rng: random.Random, heldout: bool = False) -> str | None:
    """Every number (not years, times or durations) scaled by one factor, written as the text writes it."""
    factor = rng.choice(variants((0.4, 0.5, 0.6, 1.5, 2.5, 2.0, 3.0, 0.3, 4.0), heldout))

    def scaled(m: re.Match[str]) -> str:
        if _is_year(m):
            return m[0]
        raw = m["num"]
        value = float(raw.replace(",", "")) * factor
        decimals = len(raw.split(".")[1]) if "." in raw else 0
        if decimals == 0 and value != int(value) and value < 10:
            decimals = 1
        body = f"{value:,.{decimals}f}" if "," in raw else f"{value:.{decimals}f}"
        if body == raw:
            body = f"{float(raw.replace(',', '')) + 1:.{decimals}f}"
        return f"{m['pre'] or ''}{body}{m['suf'] or ''}"

    out = _NUMBER.sub(scaled, text)
    return out if out != text else None


def swap_entity(text: str, rng: random.Random, heldout: bool = False) -> str | None:
    """The first known exchange, asset, agency, country, company or person swapped for another of its kind."""
    found: list[tuple[int, str, str]] = []
    for kind, names in _ENTITIES.items():
        for name in names:
            flags = 0 if kind in ("ticker", "agency") or name.isupper() else re.I
            m = re.search(rf"(?<![\w$-]){re.escape(name)}(?![\w-])", text, flags)
            if m:
                found.append((m.start(), kind, m[0]))
    if not found:
        return None
    start, kind, name = min(found)
    lowered = text.lower()
    others = [n for n in variants(_ENTITIES[kind], heldout) if n.lower() not in lowered]
    if not others:
        return None
    other = rng.choice(others)
    return text[:start] + other + text[start + len(name) :]


def follow_up(text: str, rng: random.Random, heldout: bool) -> str:
    template = rng.choice(variants(_FOLLOW_UPS, heldout))
    return template.format(t=text.rstrip(". "), n=rng.choice((3, 5, 12, 40, 150)))


def edit(kind: str, text: str, rng: random.Random, heldout: bool) -> str | None:
    """A hard negative of `kind` (EDITS) for `text`, None when the text has nothing to edit."""
    makers: dict[str, Callable[[], str | None]] = {
        "direction": lambda: flip_direction(text, heldout),
        "numbers": lambda: change_numbers(text, rng, heldout),
        "entity_swap": lambda: swap_entity(text, rng, heldout),
        "action": lambda: change_action(text, heldout),
        "follow_up": lambda: follow_up(text, rng, heldout),
    }
    out = makers[kind]()
    return out if out and out.strip() != text.strip() else None
