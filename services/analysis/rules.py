"""The rule-based judgement: used when the model server is down, slow, or its reply stays invalid.

Blunt on purpose, and marked as such (JUDGED_BY_RULES_FALLBACK): watched authors, event keywords and
asset mentions add up to a score; the score sets materiality, the materiality a volatility probability.
An author's weight counts only when the story names an asset or an event (Musk on rockets is routine).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.analysis.assets import mentions
from services.analysis.judgement import AssetView, Judgement
from services.analysis.prompt import StoryView

WATCHED_AUTHORS: dict[str, int] = {
    "elonmusk": 2, "realdonaldtrump": 2, "potus": 2, "whitehouse": 2, "cz_binance": 2, "saylor": 1,
    "vitalikbuterin": 1, "sec_news": 2, "secgov": 2, "garygensler": 2, "federalreserve": 2, "jpowell": 2,
    "binance": 1, "coinbase": 1, "brian_armstrong": 1, "tether_to": 1, "circle": 1, "whale_alert": 1,
    "krakenfx": 1, "okx": 1, "bybit_official": 1, "justinsuntron": 1, "paoloardoino": 1,
}  # fmt: skip
PLATFORM_WEIGHT = {"regulator": 1, "exchange": 1}

# (event type, severity, direction hint, pattern); first match by severity wins the event type.
EVENTS: tuple[tuple[str, int, str, re.Pattern[str]], ...] = tuple(
    (event, severity, direction, re.compile(pattern, re.I))
    for event, severity, direction, pattern in (
        ("hack_or_exploit", 3, "bearish",
         r"\b(hack(ed|er|ers)?|exploit(ed)?|drained|stolen|breach(ed)?)\b|黑客|被盗|해킹"),
        ("exchange_outage", 3, "bearish",
         r"\b(halt(s|ed)?|suspend(s|ed)?|pause[sd]?)\b.{0,30}\b(withdrawals?|deposits?|trading)\b|\boutage\b|"
         r"\bdowntime\b|degraded performance|暂停提现|출금 ?중단"),
        ("enforcement", 2, "bearish",
         r"\b(sues?|sued|charge[sd]?|lawsuit|wells notice|fined?|crackdown|arrest(ed)?|indict(ed|ment)?)\b|"
         r"起诉|기소"),
        ("etf", 2, "", r"\betfs?\b"),
        ("stablecoin", 2, "bearish", r"\bde-?peg(ged|s)?\b|\bstablecoins?\b"),
        ("macro_tariffs", 2, "bearish", r"\btariffs?\b|关税|관세"),
        ("macro_rates", 2, "",
         r"\brate (hike|cut)s?\b|\bcpi\b|\binflation\b|\bfomc\b|\bpayrolls\b|\bjobs report\b"),
        ("macro_geopolitics", 2, "bearish",
         r"\b(war|missiles?|invasion|invade[sd]?|sanctions|airstrikes?|nuclear|ceasefire)\b"),
        ("listing_or_delisting", 2, "bearish", r"\bdelist(s|ed|ing)?\b|下架|상장 ?폐지"),
        ("listing_or_delisting", 1, "bullish",
         r"\b(will list|lists|listing|adds support for)\b|上线|上币|상장"),
        ("regulation", 2, "",
         r"\bregulat(ion|ions|or|ors|ory)\b|\bbans?\b|\bbanned\b|\bmica\b|\bexecutive order\b|"
         r"\bstrategic (bitcoin |crypto )?reserve\b|\bbill\b|监管|규제"),
        ("macro_central_banks", 1, "", r"\b(federal reserve|the fed|powell|ecb|boj|pboc|central bank)\b"),
        ("legal", 1, "", r"\b(court|judge|ruling|verdict|appeal|settlement)\b"),
        ("protocol_upgrade_or_delay", 1, "",
         r"\b(upgrade|hard ?fork|mainnet|testnet|postponed|delayed|the merge)\b"),
    )
)  # fmt: skip
BULLISH = re.compile(
    r"\b(approv\w*|accept(s|ed|ing)?|adopt\w*|buy(s|ing)?|bought|launch\w*|partner\w*|moon|rall(y|ies)|"
    r"surge[sd]?|soar\w*|record high|rulz|reserve)\b|🚀|暴涨|급등",
    re.I,
)
BEARISH = re.compile(
    r"\b(ban(s|ned)?|reject\w*|den(y|ies|ied)|sell(s|ing)?|sold|crash\w*|dump\w*|plunge[sd]?|scam\w*|bs|fraud\w*|"
    r"bankrupt\w*|collapse[sd]?|suspend\w*|hack\w*|stolen|sues?|sued)\b|暴跌|폭락",
    re.I,
)
INSTRUCTIONS = re.compile(
    r"ignore (all |any |the )?(previous|prior|above|earlier) (instructions|prompts?)|system prompt|"
    r"you are now|disregard (your|the) (rules|instructions)|"
    r"\b(set|recommend|make)\b.{0,30}\b(spread|widening|skew)\b|"
    r"judgement\s*:\s*\{|\"(materiality|vol_burst_probability)\"\s*:",
    re.I,
)
VOL_BY_MATERIALITY = {"routine": 0.08, "notable": 0.3, "high": 0.55}


def looks_like_instructions(text: str) -> bool:
    """A story that talks to the analyst ("ignore previous instructions", "set widening to ...")."""
    return bool(INSTRUCTIONS.search(text))


@dataclass(frozen=True)
class RuleScore:
    score: int
    event_type: str
    direction: str
    reasons: tuple[str, ...]


def score(story: StoryView) -> RuleScore:
    reasons: list[str] = []
    event, severity, hint = "other", 0, ""
    for name, sev, direction, pattern in EVENTS:
        if sev > severity and (m := pattern.search(story.text)):
            event, severity, hint = name, sev, direction
            reasons.append(f"{name} ({m[0].strip()!r})")
    named = mentions(story.text)
    total = severity
    author = WATCHED_AUTHORS.get(story.author.lower().removeprefix("@"), 0)
    if author and (named or severity):
        total += author
        reasons.append(f"watched author @{story.author} (+{author})")
        if event == "other":
            event = "influencer_post"
    if named:
        total += 1
        reasons.append(f"names {', '.join(named)}")
    if (platform := PLATFORM_WEIGHT.get(story.platform, 0)) and severity:
        total += platform
        reasons.append(f"{story.platform} source")
    if story.echoes >= 5:
        total += 1 + (story.echoes >= 20)
        reasons.append(f"{story.echoes} echoes")
    bull, bear = len(BULLISH.findall(story.text)), len(BEARISH.findall(story.text))
    direction = hint or ("bullish" if bull > bear else "bearish" if bear > bull else "unclear")
    return RuleScore(total, event, direction, tuple(reasons))


def judge_by_rules(story: StoryView) -> Judgement:
    """A judgement of the same shape as the model's, for exactly `story.assets`."""
    s = score(story)
    materiality = "high" if s.score >= 5 else "notable" if s.score >= 3 else "routine"
    named = set(mentions(story.text))
    views = {}
    for asset in story.assets:
        p = VOL_BY_MATERIALITY[materiality] + (0.1 if asset in named else 0.0)
        views[asset] = AssetView(
            direction=s.direction if materiality != "routine" else "unclear", vol_burst_probability=p
        )  # type: ignore[arg-type]
    horizon = 60 if s.event_type in ("hack_or_exploit", "enforcement", "exchange_outage") else 30
    rationale = "rules: " + ("; ".join(s.reasons) if s.reasons else "no watched author, event or asset")
    return Judgement(
        materiality=materiality,  # type: ignore[arg-type]
        event_type=s.event_type,  # type: ignore[arg-type]
        assets=views,
        urgency={"high": "immediate", "notable": "medium", "routine": "low"}[materiality],  # type: ignore[arg-type]
        horizon_minutes=horizon,
        confidence=0.4,
        rationale=rationale[:160],
    )
