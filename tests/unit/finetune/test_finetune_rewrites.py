"""Rewrites keep the facts; hard negatives change one; held-out wordings are never training wordings."""

from __future__ import annotations

import random

import pytest

from services.dedup.second_look import compare, extract
from services.dedup.text import for_embedding
from services.finetune import rewrites

TITLES = [
    "Binance Labs Introduced a $500 Million Fund to Focus on Web3 Companies",
    "Bitcoin Returns Above USD 20K, Ethereum Rallies, CEL Keeps Outperforming",
    "SEC approves Valkyrie’s Bitcoin futures ETF",
    "Crypto brokerage FalconX raises $150M at $8B valuation",
    "Coinbase Slows Hiring Efforts Amid Market Concerns and Disappointing Q1 Numbers",
    "Harmony's Horizon Bridge hacked for $100M",
]


@pytest.mark.parametrize("platform", ["x", "telegram", "reddit", "discord", "quoted", "truncated"])
@pytest.mark.parametrize("heldout", [False, True])
def test_platform_copies_keep_every_fact(platform: rewrites.Platform, heldout: bool) -> None:
    rng = random.Random(1)
    made = 0
    for title in TITLES:
        copy = rewrites.copy_of(title, platform, rng, heldout, "CoinTelegraph", "https://example.com/a")
        if copy is None:
            continue
        made += 1
        assert copy != title
        mine, theirs = extract(for_embedding(copy)), extract(title)
        assert compare(mine, theirs).conflicts == ()
        assert mine.numbers == theirs.numbers
        assert theirs.entities.items() <= mine.entities.items() or platform != "truncated"
    assert made >= 2


def test_truncation_cuts_only_where_no_fact_is_lost() -> None:
    title = "Coinbase Slows Hiring Efforts Amid Market Concerns and Disappointing Q1 Numbers"
    cut = rewrites.truncate(title, random.Random(3))
    assert cut is not None and cut.rstrip(".… (1/2)") != title
    assert title.startswith(cut.split("…")[0].split("...")[0].strip())
    assert extract(cut).entities == extract(title).entities
    assert rewrites.truncate("Bitcoin rises", random.Random(3)) is None  # too short to cut


def test_chinese_and_korean_headlines_say_the_same_facts() -> None:
    assert rewrites.translate("Bitcoin drops below $30K", "zh") == "比特币跌破3万美元"
    assert rewrites.translate("Bitcoin drops below $30K", "ko") == "비트코인 3만 달러 아래로 하락"
    assert (
        rewrites.translate("Bitcoin Returns Above USD 40K, Ethereum Nears USD 3K", "zh")
        == "比特币突破4万美元，以太坊逼近3000美元"
    )
    assert rewrites.translate("Omnichain developer LayerZero Labs raises $135M", "ko") == (
        "Omnichain developer LayerZero Labs, 1.35억 달러 투자 유치"
    )
    assert rewrites.translate("Binance lists Solana", "zh") == "币安上线索拉纳"
    assert rewrites.translate("SEC delays spot Bitcoin ETF", "ko") == "미국 SEC, spot 비트코인 ETF 연기"
    # A headline with more than a template can say is not translated (a fact would be lost).
    assert rewrites.translate("Bitcoin drops below $30K as Terra founder speaks out", "zh") is None
    assert rewrites.translate("CEL Keeps Outperforming", "ko") is None


def test_hard_negatives_change_a_material_fact() -> None:
    rng = random.Random(5)
    flipped = rewrites.flip_direction("SEC approves spot Bitcoin ETF as inflows surge")
    assert flipped == "SEC delays spot Bitcoin ETF as outflows surge"
    assert compare(extract(flipped), extract("SEC approves spot Bitcoin ETF as inflows surge")).conflicts == (
        "approval: delay vs approve",
        "flows: out vs in",
    )
    numbers = rewrites.change_numbers("Bitcoin ETFs see $500M inflows in 2024, up 12%", rng)
    assert numbers is not None and "2024" in numbers and "$500M" not in numbers and "12%" not in numbers
    assert compare(extract(numbers), extract("Bitcoin ETFs see $500M inflows in 2024, up 12%")).conflicts
    swapped = rewrites.swap_entity("Hackers drain $40M from Binance hot wallet", rng)
    assert swapped is not None and "Binance" not in swapped and "$40M" in swapped
    assert rewrites.change_action("Mastercard partners with Coinbase on NFT payments") == (
        "Mastercard ends partnership with Coinbase on NFT payments"
    )
    follow = rewrites.follow_up("Celsius pauses withdrawals", rng, heldout=False)
    assert (
        follow.startswith("Celsius pauses withdrawals")
        and len(follow) > len("Celsius pauses withdrawals") + 5
    )
    assert rewrites.edit("direction", "Ethereum developers meet in Paris", rng, False) is None


def test_held_out_wordings_never_appear_in_training() -> None:
    for table in (rewrites._FLIPS, rewrites._ACTIONS, rewrites._FOLLOW_UPS, *rewrites._TEMPLATES.values()):
        train, held = rewrites.variants(table, False), rewrites.variants(table, True)
        assert train and held and not set(train) & set(held)
    # "rising" / "falling" is a held-out flip: training never makes it, the held-out split does.
    assert rewrites.flip_direction("Bitcoin rising again", heldout=False) is None
    assert rewrites.flip_direction("Bitcoin rising again", heldout=True) == "Bitcoin falling again"
