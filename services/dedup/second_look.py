"""The second look: what two texts say, compared beyond their embeddings.

From each text it pulls three kinds of facts:

- entities by kind: assets (names, tickers in capitals, any $CASHTAG), organisations (exchanges,
  regulators, banks, funds, companies), people, places (countries and their adjectives, a few cities)
  and protocols, each mapped to one canonical name ("Ether",
  "ETH", "$ETH" and "Ethereum" are all `ETH`);
- numbers with their unit: percentages, and values (money, magnitudes, plain numbers); "$500M",
  "USD 500 million" and "500,000,000" are one value. Years, times and durations are not facts here;
- direction words, each on an axis with poles: approval (approve / delay / reject), flows (in / out),
  price (up / down), trade (buy / sell), security (hack / recovered), operations (halt / resume),
  listing (list / delist), legal (ban / legal), rates (hike / cut), sentiment (bullish / bearish),
  deal (done / off).

`compare` says where the facts of two texts conflict and which of them they share:

- a conflict is a kind (or number family, or direction axis) that both texts speak of with nothing in
  common: {Binance} vs {Coinbase}; {$500M} vs {$300M}; approve vs delay. Two numbers are the same value
  within 2 % ("$602M" vs "$0.6B") and different values when more than 5 % apart; in between they
  neither agree nor conflict (prose rounds: "falls to $29K" vs "under $30K");
- shared anchors are the entities and numbers both texts name, less the background of the whole
  tape (Bitcoin, Ether), which agrees with nearly everything. Shared direction poles are listed in
  the explanation but are not anchors.

Negation ("not approved") is not parsed: a negated direction word counts as the word itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

# (kind, canonical) -> (case-insensitive names, case-sensitive tickers). Short or common-word tickers
# (NEAR, LINK, ONE, OP, DOT) only count in capitals or as $CASHTAGS.
_ENTITIES: dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]] = {
    # assets
    ("asset", "BTC"): (("bitcoin", "bitcoins", "btc", "xbt"), ()),
    ("asset", "ETH"): (("ethereum", "ether", "eth"), ()),
    ("asset", "SOL"): (("solana",), ("SOL",)),
    ("asset", "DOGE"): (("dogecoin", "doge"), ()),
    ("asset", "XRP"): (("xrp", "ripple"), ()),
    ("asset", "ADA"): (("cardano",), ("ADA",)),
    ("asset", "BNB"): (("bnb", "binance coin"), ()),
    ("asset", "USDT"): (("tether", "usdt"), ()),
    ("asset", "USDC"): (("usdc", "usd coin"), ()),
    ("asset", "LUNA"): (("terra", "luna", "terraform"), ()),
    ("asset", "UST"): (("terrausd",), ("UST",)),
    ("asset", "AVAX"): (("avalanche", "avax"), ()),
    ("asset", "DOT"): (("polkadot",), ("DOT",)),
    ("asset", "MATIC"): (("polygon", "matic"), ()),
    ("asset", "LTC"): (("litecoin", "ltc"), ()),
    ("asset", "SHIB"): (("shiba inu", "shib"), ()),
    ("asset", "TRX"): (("tron", "trx"), ()),
    ("asset", "LINK"): (("chainlink",), ("LINK",)),
    ("asset", "ATOM"): (("cosmos",), ("ATOM",)),
    ("asset", "NEAR"): (("near protocol",), ("NEAR",)),
    ("asset", "ONE"): (("harmony",), ("ONE",)),
    ("asset", "BCH"): (("bitcoin cash", "bch"), ()),
    ("asset", "ETC"): (("ethereum classic",), ("ETC",)),
    ("asset", "XMR"): (("monero", "xmr"), ()),
    ("asset", "ZEC"): (("zcash", "zec"), ()),
    ("asset", "APE"): (("apecoin",), ("APE",)),
    ("asset", "AXS"): (("axs",), ()),
    ("asset", "CEL"): (("celsius",), ("CEL",)),
    ("asset", "FTT"): (("ftt",), ()),
    ("asset", "UNI"): (("uniswap",), ("UNI",)),
    ("asset", "AAVE"): (("aave",), ()),
    ("asset", "ARB"): (("arbitrum",), ("ARB",)),
    ("asset", "OP"): (("optimism",), ("OP",)),
    ("asset", "FIL"): (("filecoin",), ("FIL",)),
    ("asset", "ALGO"): (("algorand",), ("ALGO",)),
    ("asset", "XLM"): (("stellar", "xlm"), ()),
    ("asset", "SNX"): (("synthetix", "snx"), ()),
    ("asset", "PEPE"): (("pepe",), ()),
    # exchanges (organisations: "Circle" vs "Coinbase" is a conflict whatever kind of firm each is)
    ("org", "Binance"): (("binance",), ()),
    ("org", "Coinbase"): (("coinbase",), ()),
    ("org", "Kraken"): (("kraken",), ()),
    ("org", "FTX"): (("ftx",), ()),
    ("org", "Bitfinex"): (("bitfinex",), ()),
    ("org", "OKX"): (("okx", "okex"), ()),
    ("org", "Huobi"): (("huobi",), ()),
    ("org", "KuCoin"): (("kucoin",), ()),
    ("org", "Gemini"): (("gemini",), ()),
    ("org", "Bybit"): (("bybit",), ()),
    ("org", "BitMEX"): (("bitmex",), ()),
    ("org", "Crypto.com"): (("crypto.com",), ()),
    ("org", "Bitstamp"): (("bitstamp",), ()),
    ("org", "Upbit"): (("upbit",), ()),
    ("org", "Bithumb"): (("bithumb",), ()),
    ("org", "Robinhood"): (("robinhood",), ()),
    ("org", "CME"): (("cme",), ()),
    ("org", "Gate.io"): (("gate.io",), ()),
    ("org", "Bittrex"): (("bittrex",), ()),
    ("org", "WazirX"): (("wazirx",), ()),
    # people
    ("person", "Elon Musk"): (("elon musk", "musk", "elonmusk"), ()),
    ("person", "Michael Saylor"): (("saylor",), ()),
    ("person", "Changpeng Zhao"): (("changpeng zhao", "cz_binance"), ("CZ",)),
    ("person", "Sam Bankman-Fried"): (("bankman-fried", "bankman fried"), ("SBF",)),
    ("person", "Gary Gensler"): (("gensler",), ()),
    ("person", "Vitalik Buterin"): (("vitalik", "buterin"), ()),
    ("person", "Do Kwon"): (("do kwon",), ()),
    ("person", "Jerome Powell"): (("powell",), ()),
    ("person", "Janet Yellen"): (("yellen",), ()),
    ("person", "Donald Trump"): (("trump", "realdonaldtrump"), ()),
    ("person", "Joe Biden"): (("biden",), ()),
    ("person", "Cathie Wood"): (("cathie wood",), ()),
    ("person", "Mike Novogratz"): (("novogratz",), ()),
    ("person", "Jack Dorsey"): (("dorsey",), ()),
    ("person", "Brian Armstrong"): (("brian armstrong",), ()),
    ("person", "Nayib Bukele"): (("bukele",), ()),
    ("person", "Roger Ver"): (("roger ver",), ()),
    ("person", "Arthur Hayes"): (("arthur hayes",), ()),
    ("person", "Charles Hoskinson"): (("hoskinson",), ()),
    ("person", "Justin Sun"): (("justin sun",), ()),
    ("person", "Edward Snowden"): (("snowden",), ()),
    # organisations: regulators, central banks, governments' agencies, banks, funds, companies
    ("org", "SEC"): (("securities and exchange commission",), ("SEC",)),
    ("org", "CFTC"): (("cftc",), ()),
    ("org", "Fed"): (("federal reserve", "the fed", "fomc"), ("Fed",)),
    ("org", "ECB"): (("european central bank", "ecb"), ()),
    ("org", "IMF"): (("international monetary fund", "imf"), ()),
    ("org", "DOJ"): (("department of justice", "doj"), ()),
    ("org", "Treasury"): (("treasury",), ()),
    ("org", "BlackRock"): (("blackrock",), ()),
    ("org", "Grayscale"): (("grayscale", "gbtc"), ()),
    ("org", "Fidelity"): (("fidelity",), ()),
    ("org", "MicroStrategy"): (("microstrategy",), ()),
    ("org", "Tesla"): (("tesla",), ()),
    ("org", "Twitter"): (("twitter",), ()),
    ("org", "Meta"): (("meta", "facebook"), ()),
    ("org", "PayPal"): (("paypal",), ()),
    ("org", "Visa"): (("visa",), ()),
    ("org", "Mastercard"): (("mastercard",), ()),
    ("org", "Goldman Sachs"): (("goldman sachs", "goldman"), ()),
    ("org", "JPMorgan"): (("jpmorgan", "jp morgan"), ()),
    ("org", "Circle"): (("circle",), ()),
    ("org", "Chainalysis"): (("chainalysis",), ()),
    ("org", "Alameda"): (("alameda",), ()),
    ("org", "Three Arrows"): (("three arrows", "3ac"), ()),
    ("org", "Galaxy Digital"): (("galaxy digital",), ()),
    ("org", "Voyager"): (("voyager",), ()),
    ("org", "BlockFi"): (("blockfi",), ()),
    ("org", "Nexo"): (("nexo",), ()),
    ("org", "BNY Mellon"): (("bny mellon", "bank of new york"), ()),
    # places: countries (with their adjectives), a few cities and blocs
    ("place", "United States"): (("united states", "u.s.", "american", "america"), ("US", "USA")),
    ("place", "China"): (("china", "chinese", "beijing"), ()),
    ("place", "Hong Kong"): (("hong kong",), ()),
    ("place", "Japan"): (("japan", "japanese"), ()),
    ("place", "South Korea"): (("south korea", "south korean", "korea", "korean"), ()),
    ("place", "India"): (("india", "indian"), ()),
    ("place", "Russia"): (("russia", "russian"), ()),
    ("place", "Ukraine"): (("ukraine", "ukrainian"), ()),
    ("place", "United Kingdom"): (("united kingdom", "britain", "british", "england"), ("UK",)),
    ("place", "European Union"): (("european union", "european commission", "european parliament"), ("EU",)),
    ("place", "Germany"): (("germany", "german"), ()),
    ("place", "France"): (("france", "french"), ()),
    ("place", "Switzerland"): (("switzerland", "swiss"), ()),
    ("place", "Singapore"): (("singapore", "singaporean"), ()),
    ("place", "Taiwan"): (("taiwan", "taiwanese"), ()),
    ("place", "Thailand"): (("thailand", "thai"), ()),
    ("place", "Malaysia"): (("malaysia", "malaysian"), ()),
    ("place", "Indonesia"): (("indonesia", "indonesian"), ()),
    ("place", "Philippines"): (("philippines", "philippine"), ()),
    ("place", "Vietnam"): (("vietnam", "vietnamese"), ()),
    ("place", "Australia"): (("australia", "australian"), ()),
    ("place", "Canada"): (("canada", "canadian"), ()),
    ("place", "Brazil"): (("brazil", "brazilian"), ()),
    ("place", "Argentina"): (("argentina", "argentinian", "argentine"), ()),
    ("place", "Mexico"): (("mexico", "mexican"), ()),
    ("place", "El Salvador"): (("el salvador", "salvadoran"), ()),
    ("place", "Panama"): (("panama", "panamanian"), ()),
    ("place", "Venezuela"): (("venezuela", "venezuelan"), ()),
    ("place", "Central African Republic"): (("central african republic",), ("CAR",)),
    ("place", "Nigeria"): (("nigeria", "nigerian"), ()),
    ("place", "Kenya"): (("kenya", "kenyan"), ()),
    ("place", "South Africa"): (("south africa", "south african"), ()),
    ("place", "Turkey"): (("turkey", "turkish"), ()),
    ("place", "Iran"): (("iran", "iranian"), ()),
    ("place", "Israel"): (("israel", "israeli"), ()),
    ("place", "UAE"): (("united arab emirates", "dubai", "abu dhabi", "emirati"), ("UAE",)),
    ("place", "Kazakhstan"): (("kazakhstan", "kazakh"), ()),
    ("place", "Belgium"): (("belgium", "belgian"), ()),
    ("place", "Netherlands"): (("netherlands", "dutch"), ()),
    ("place", "Italy"): (("italy", "italian"), ()),
    ("place", "Spain"): (("spain", "spanish"), ()),
    ("place", "Portugal"): (("portugal", "portuguese"), ()),
    ("place", "Norway"): (("norway", "norwegian"), ()),
    ("place", "Sweden"): (("sweden", "swedish"), ()),
    ("place", "Liechtenstein"): (("liechtenstein",), ()),
    ("place", "Hawaii"): (("hawaii",), ()),
    ("place", "New York"): (("new york",), ("NY", "NYC")),
    ("place", "Texas"): (("texas",), ()),
    ("place", "Lugano"): (("lugano",), ()),
    # protocols and projects
    ("protocol", "Uniswap"): (("uniswap",), ()),
    ("protocol", "Curve"): (("curve finance",), ()),
    ("protocol", "MakerDAO"): (("makerdao", "maker dao"), ()),
    ("protocol", "Lido"): (("lido",), ()),
    ("protocol", "OpenSea"): (("opensea",), ()),
    ("protocol", "MetaMask"): (("metamask",), ()),
    ("protocol", "Tornado Cash"): (("tornado cash",), ()),
    ("protocol", "Ronin"): (("ronin",), ()),
    ("protocol", "Axie Infinity"): (("axie infinity", "axie"), ()),
    ("protocol", "Wormhole"): (("wormhole",), ()),
    ("protocol", "Nomad"): (("nomad bridge",), ()),
    ("protocol", "Solend"): (("solend",), ()),
    ("protocol", "Anchor"): (("anchor protocol",), ()),
    ("protocol", "Lightning"): (("lightning network",), ()),
    ("protocol", "Bored Ape"): (("bored ape", "bayc"), ()),
}

# axis -> pole -> word patterns (regex, matched case-insensitively on word boundaries).
_DIRECTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "approval": {
        "approve": (r"approv\w*", r"green[- ]?light\w*", r"authori[sz]\w*", r"greenlit"),
        "delay": (r"delay\w*", r"postpon\w*", r"extend\w* (?:the )?(?:review|deadline)"),
        "reject": (r"reject\w*", r"denie[sd]", r"deny\w*", r"disapprov\w*", r"turn\w* down"),
    },
    "flows": {
        "in": (r"inflows?", r"deposits? surge"),
        "out": (r"outflows?", r"withdrawals? surge"),
    },
    "price": {
        "up": (
            r"ris(?:e|es|ing)",
            r"rose",
            r"surg\w*",
            r"jump\w*",
            r"climb\w*",
            r"rall(?:y|ies|ied|ying)",
            r"soar\w*",
            r"gain(?:s|ed|ing)?",
            r"pump\w*",
            r"spik\w*",
            r"skyrocket\w*",
            r"rebound\w*",
            r"recover(?:s|ed|ing)?",
            r"higher",
            r"high",
            r"tops?",
            r"breaks? above",
            r"reclaim\w*",
            r"moon\w*",
            r"bull run",
            r"up(?!\s+to\b)",
        ),
        "down": (
            r"fall(?:s|ing)?",
            r"fell",
            r"drop\w*",
            r"plung\w*",
            r"slid\w*",
            r"slide\w*",
            r"tumbl\w*",
            r"crash\w*",
            r"sink\w*",
            r"sank",
            r"(?<!shut )(?<!crack )(?<!steps )(?<!turn )down",
            r"lower",
            r"low",
            r"dump\w*",
            r"dip\w*",
            r"slump\w*",
            r"dives?",
            r"dove",
            r"tank\w*",
            r"loss(?:es)?",
            r"plummet\w*",
            r"breaks? below",
            r"declin\w*",
        ),
    },
    "trade": {
        "buy": (r"buy(?:s|ing)?", r"bought", r"purchas\w*", r"acquir\w*", r"accumulat\w*"),
        "sell": (r"sell(?:s|ing)?", r"sold", r"offload\w*", r"liquidat\w*"),
    },
    "security": {
        "hack": (r"hack\w*", r"exploit\w*", r"breach\w*", r"stolen", r"steal\w*", r"drain\w*", r"attack\w*"),
        "recovered": (
            r"restor\w*",
            r"recovered",
            r"return(?:s|ed)? (?:the )?(?:stolen )?funds",
            r"refund\w*",
        ),
    },
    "operations": {
        "halt": (r"halt\w*", r"suspend\w*", r"paus\w*", r"freez\w*", r"froze\w*", r"outage", r"shut\w* down"),
        "resume": (r"resum\w*", r"reopen\w*", r"unfreez\w*", r"back online", r"restart\w*"),
    },
    "listing": {
        "list": (r"lists", r"listing", r"listed", r"adds support", r"to list"),
        "delist": (r"delist\w*", r"remov\w* support", r"drops support"),
    },
    "legal": {
        "ban": (r"bans?", r"banned", r"banning", r"outlaw\w*", r"prohibit\w*", r"crack\w* down"),
        "legal": (r"legali[sz]\w*", r"legal tender", r"allow\w*", r"lifts? (?:the )?ban", r"adopt\w*"),
    },
    "rates": {
        "hike": (r"hik\w*", r"raises? (?:interest )?rates?", r"tighten\w*"),
        "cut": (
            r"cuts? (?:interest )?rates?",
            r"rate cuts?",
            r"lowers? (?:interest )?rates?",
            r"eas(?:es|ing)",
        ),
    },
    "sentiment": {
        "bullish": (r"bullish",),
        "bearish": (r"bearish",),
    },
    "deal": {
        "done": (
            r"complet\w*",
            r"confirm\w*",
            r"clos(?:es|ed) (?:the )?(?:deal|acquisition)",
            r"finali[sz]\w*",
        ),
        "off": (r"cancel\w*", r"call\w* off", r"terminat\w*", r"scrap\w*", r"abandon\w*", r"on hold"),
    },
}

_MAGNITUDE = {
    "k": 1e3, "thousand": 1e3, "m": 1e6, "mn": 1e6, "mm": 1e6, "mln": 1e6, "million": 1e6, "millions": 1e6,
    "b": 1e9, "bn": 1e9, "billion": 1e9, "billions": 1e9, "t": 1e12, "tn": 1e12, "trillion": 1e12,
}  # fmt: skip
_NUMBER = re.compile(
    r"(?P<cur>\$|€|£|\busd\s?|\beur\s?)?"
    r"(?<![\w.,/:-])(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"(?:\s?(?P<mag>thousand|millions?|billions?|trillion|mln|mn|mm|bn|tn|k|m|b|t)\b)?"
    r"(?P<pct>\s?%|\s?percent\b|\s?per cent\b)?"
    r"(?P<after>\s?(?:usd|dollars?|eur|euros?)\b)?"
    r"(?P<time>\s?(?:h|hr|hrs|hours?|d|days?|weeks?|months?|years?|mins?|minutes?|seconds?|am|pm|th|st|nd|rd|x)\b"
    r"|:\d\d)?",
    re.IGNORECASE,
)
BACKGROUND = frozenset({("asset", "BTC"), ("asset", "ETH")})
_CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z][A-Za-z0-9]{1,9})\b")
_SAME_VALUE = 0.02  # relative: "$602M" and "$0.6B" are one value
_OTHER_VALUE = 0.05  # relative: "$29K" and "$30K" neither agree nor contradict (rounding in prose)


@dataclass(frozen=True)
class Facts:
    """What one text says: entities by kind, numbers by family ("%" or "value"), direction poles by axis."""

    entities: dict[str, frozenset[str]] = field(default_factory=dict)
    numbers: dict[str, tuple[float, ...]] = field(default_factory=dict)
    directions: dict[str, frozenset[str]] = field(default_factory=dict)

    def describe(self) -> str:
        parts = [f"{kind} {'/'.join(sorted(names))}" for kind, names in sorted(self.entities.items())]
        parts += [
            f"{fam} {'/'.join(_fmt(v, fam) for v in vals)}" for fam, vals in sorted(self.numbers.items())
        ]
        parts += [f"{axis} {'/'.join(sorted(p))}" for axis, p in sorted(self.directions.items())]
        return "; ".join(parts) or "no entities, numbers or direction words"


@dataclass(frozen=True)
class Comparison:
    conflicts: tuple[str, ...]  # e.g. "approval: approve vs delay"
    shared: tuple[str, ...]  # e.g. "org SEC", "value 500M", "approval approve"
    anchors: int = 0  # shared entities and numbers, less the background


@lru_cache(maxsize=1)
def _entity_patterns() -> tuple[
    re.Pattern[str], dict[str, tuple[str, str]], re.Pattern[str], dict[str, tuple[str, str]]
]:
    names: dict[str, tuple[str, str]] = {}
    tickers: dict[str, tuple[str, str]] = {}
    for key, (lower, upper) in _ENTITIES.items():
        for n in lower:
            names[n] = key
        for t in upper:
            tickers[t] = key
    by_length = sorted(names, key=len, reverse=True)
    name_re = re.compile(r"(?<![\w$])(" + "|".join(re.escape(n) for n in by_length) + r")(?![\w])")
    ticker_re = re.compile(
        r"(?<![\w$])(" + "|".join(re.escape(t) for t in sorted(tickers, key=len, reverse=True)) + r")\b"
    )
    return name_re, names, ticker_re, tickers


@lru_cache(maxsize=1)
def _direction_pattern() -> tuple[re.Pattern[str], dict[str, tuple[str, str]]]:
    """One pass over the text for every axis and pole: a named group per (axis, pole)."""
    groups: dict[str, tuple[str, str]] = {}
    parts = []
    for axis, poles in _DIRECTIONS.items():
        for pole, words in poles.items():
            name = f"d{len(groups)}"
            groups[name] = (axis, pole)
            parts.append(f"(?P<{name}>{'|'.join(words)})")
    return re.compile(r"\b(?:" + "|".join(parts) + r")\b"), groups  # matched on the lower-cased text


@lru_cache(maxsize=1)
def _ticker_index() -> dict[str, tuple[str, str]]:
    _, names, _, tickers = _entity_patterns()
    index = {t.upper(): k for t, k in tickers.items()}
    index.update({n.upper(): k for n, k in names.items() if n.isalnum() and len(n) <= 6})
    return index


def _fmt(value: float, family: str) -> str:
    if family == "%":
        return f"{value:g}%"
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= size:
            return f"{value / size:.4g}{suffix}"
    return f"{value:g}"


def extract(text: str) -> Facts:
    return _extract(text)


@lru_cache(maxsize=4096)
def _extract(text: str) -> Facts:
    name_re, names, ticker_re, tickers = _entity_patterns()
    entities: dict[str, set[str]] = {}
    lower = text.lower()  # names and direction words are lower case: IGNORECASE makes re 5x slower
    for m in name_re.finditer(lower):
        kind, canonical = names[m.group(1)]
        entities.setdefault(kind, set()).add(canonical)
    for m in ticker_re.finditer(text):
        kind, canonical = tickers[m.group(1)]
        entities.setdefault(kind, set()).add(canonical)
    index = _ticker_index()
    for m in _CASHTAG.finditer(text):
        tag = m.group(1).upper()
        kind, canonical = index.get(tag, ("asset", tag))
        entities.setdefault(kind, set()).add(canonical)

    numbers: dict[str, list[float]] = {}
    for m in _NUMBER.finditer(text):
        if m.group("time"):
            continue
        raw = m.group("num").replace(",", "")
        value = float(raw)
        mag = (m.group("mag") or "").lower()
        currency = bool(m.group("cur") or m.group("after"))
        value *= _MAGNITUDE.get(mag, 1.0)
        if m.group("pct"):
            numbers.setdefault("%", []).append(value)
            continue
        if not currency and not mag and "." not in raw and "," not in raw and 1990 <= value <= 2039:
            continue  # a year
        numbers.setdefault("value", []).append(value)

    directions: dict[str, set[str]] = {}
    pattern, groups = _direction_pattern()
    for m in pattern.finditer(lower):
        axis, pole = groups[m.lastgroup or ""]
        directions.setdefault(axis, set()).add(pole)
    return Facts(
        entities={k: frozenset(v) for k, v in entities.items()},
        numbers={k: tuple(sorted(set(v))) for k, v in numbers.items()},
        directions={k: frozenset(v) for k, v in directions.items()},
    )


def _gap(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-9)


def compare(a: Facts, b: Facts) -> Comparison:
    conflicts: list[str] = []
    shared: list[str] = []
    anchors = 0
    for kind in sorted(set(a.entities) & set(b.entities)):
        common = a.entities[kind] & b.entities[kind]
        if common:
            shared += [f"{kind} {name}" for name in sorted(common)]
            anchors += sum((kind, name) not in BACKGROUND for name in common)
        else:
            conflicts.append(
                f"{kind}: {'/'.join(sorted(a.entities[kind]))} vs {'/'.join(sorted(b.entities[kind]))}"
            )
    for family in sorted(set(a.numbers) & set(b.numbers)):
        gaps = [min(_gap(x, y) for y in b.numbers[family]) for x in a.numbers[family]]
        common_values = [x for x, gap in zip(a.numbers[family], gaps, strict=True) if gap <= _SAME_VALUE]
        if common_values:
            shared += [f"{family} {_fmt(v, family)}" for v in common_values]
            anchors += len(common_values)
        elif min(gaps) > _OTHER_VALUE:
            conflicts.append(
                f"{'percent' if family == '%' else 'numbers'}: "
                f"{'/'.join(_fmt(v, family) for v in a.numbers[family])} vs "
                f"{'/'.join(_fmt(v, family) for v in b.numbers[family])}"
            )
    for axis in sorted(set(a.directions) & set(b.directions)):
        common = a.directions[axis] & b.directions[axis]
        if common:
            shared += [f"{axis} {pole}" for pole in sorted(common)]
        else:
            conflicts.append(
                f"{axis}: {'/'.join(sorted(a.directions[axis]))} vs {'/'.join(sorted(b.directions[axis]))}"
            )
    return Comparison(tuple(conflicts), tuple(shared), anchors)
