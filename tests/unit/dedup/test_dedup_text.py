"""What the embedder sees of an item."""

from __future__ import annotations

import pytest

from services.dedup.text import for_embedding


@pytest.mark.parametrize(
    "copy",
    [
        "🚨 BREAKING: SEC approves spot $ETH ETF 🚀🚀",
        "BREAKING - SEC approves spot ETH ETF!!! https://t.co/abc",
        "JUST IN: SEC approves spot #ETH ETF",
        "RT @whale_alert: SEC approves spot $ETH ETF 🔥",
        "⚠️ SEC APPROVES SPOT $ETH ETF ⚠️",
    ],
)
def test_reposts_reduce_to_the_words(copy: str) -> None:
    assert for_embedding(copy).lower() == "sec approves spot eth etf"


def test_money_and_real_words_stay() -> None:
    assert for_embedding("Bitcoin ETFs see $500M inflows") == "Bitcoin ETFs see $500M inflows"
    assert (
        for_embedding("New Milestones for Ethereum") == "New Milestones for Ethereum"
    )  # "New" is a word here
    assert for_embedding("Update: @elonmusk says DOGE") == "elonmusk says DOGE"


@pytest.mark.parametrize("noise", ["", "   ", "🚀🚀🚀", "https://t.co/x 🔥", "BREAKING!!! 🚨", "#️⃣ ✅ ➡️"])
def test_nothing_left_is_empty(noise: str) -> None:
    assert for_embedding(noise) == ""
