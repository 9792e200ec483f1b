"""The second look: facts pulled from a text, and where two texts' facts conflict or agree."""

from __future__ import annotations

import pytest

from services.dedup.second_look import compare, extract


def test_aliases_tickers_and_cashtags_name_one_entity() -> None:
    for text in (
        "Ethereum ETF filed",
        "Ether ETF filed",
        "ETH ETF filed",
        "$ETH ETF filed",
        "$eth ETF filed",
    ):
        assert extract(text).entities["asset"] == {"ETH"}, text
    assert extract("$PEPE and $WIF pump").entities["asset"] == {"PEPE", "WIF"}  # unknown cashtags count too
    assert (
        "asset" not in extract("Near the top, link in bio, one more dot").entities
    )  # common words are not tickers
    assert extract("NEAR and LINK rally").entities["asset"] == {"NEAR", "LINK"}


def test_entity_kinds() -> None:
    facts = extract("Binance CEO CZ meets SEC chair Gensler in Hong Kong about Uniswap")
    assert facts.entities == {
        "org": {"Binance", "SEC"},
        "person": {"Changpeng Zhao", "Gary Gensler"},
        "place": {"Hong Kong"},
        "protocol": {"Uniswap"},
    }
    assert extract("Kenyan energy firm courts miners").entities["place"] == {"Kenya"}


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("$500M inflows", [5e8]),
        ("USD 500 million inflows", [5e8]),
        ("500,000,000 dollars", [5e8]),
        ("$1.5B buy", [1.5e9]),
        ("Bitcoin tops $20K", [2e4]),
        ("Bitcoin at 20,000", [2e4]),
    ],
)
def test_values_with_units_are_one_number(text: str, values: list[float]) -> None:
    assert list(extract(text).numbers["value"]) == values


def test_percentages_years_and_times() -> None:
    facts = extract("BTC up 3% in 24h, best day since 2021 at 10:30")
    assert facts.numbers == {"%": (3.0,)}


def test_direction_words_on_their_axes() -> None:
    assert extract("SEC approves spot ETH ETF").directions == {"approval": {"approve"}}
    assert extract("SEC delays spot ETH ETF decision").directions == {"approval": {"delay"}}
    assert extract("$300M outflows").directions == {"flows": {"out"}}
    assert extract("Exchange halts withdrawals").directions["operations"] == {"halt"}
    assert "price" not in extract("Sky Mavis offers up to $1M bounty").directions  # "up to" is not a move


@pytest.mark.parametrize(
    ("a", "b", "conflict"),
    [
        ("SEC approves spot ETH ETF", "SEC delays spot ETH ETF decision", "approval: approve vs delay"),
        ("Bitcoin ETFs see $500M inflows", "Bitcoin ETFs see $300M outflows", "numbers: 500M vs 300M"),
        ("Bitcoin ETFs see $500M inflows", "Bitcoin ETFs see $300M outflows", "flows: in vs out"),
        ("Binance halts withdrawals", "Coinbase halts withdrawals", "org: Binance vs Coinbase"),
        ("BTC jumps 5%", "BTC drops 5%", "price: up vs down"),
        ("Exchange halts withdrawals", "Exchange resumes withdrawals", "operations: halt vs resume"),
    ],
)
def test_conflicts(a: str, b: str, conflict: str) -> None:
    assert conflict in compare(extract(a), extract(b)).conflicts


def test_agreement_and_anchors() -> None:
    seen = compare(
        extract("Binance Labs launches $500 million Web3 fund"),
        extract("Binance Labs’ $500M fund to catalyze Web3"),
    )
    assert seen.conflicts == ()
    assert seen.shared == ("org Binance", "value 500M")
    assert seen.anchors == 2
    background = compare(extract("Bitcoin rises"), extract("Bitcoin ETF news lifts BTC"))
    assert background.anchors == 0  # Bitcoin agrees with nearly every headline: not an anchor


def test_rounding_neither_agrees_nor_conflicts() -> None:
    seen = compare(extract("Bitcoin falls to $29k"), extract("Bitcoin falls under $30K"))
    assert seen.conflicts == () and not any(s.startswith("value") for s in seen.shared)
    assert compare(extract("$54 million raised"), extract("$53M raised")).shared == ("value 54M",)
