"""The decision rule with given similarities (the model is not needed to test the rule)."""

from __future__ import annotations

import pytest

from services.dedup.rule import Thresholds, decide
from tapewatch.dedup.v1 import dedup_pb2

T = Thresholds()


@pytest.mark.parametrize("similarity", [0.75, 0.9, 0.999])
def test_at_or_above_the_duplicate_threshold_is_a_duplicate(similarity: float) -> None:
    d = decide(similarity, "SEC approves spot ETH ETF", "BREAKING: SEC approves spot $ETH ETF", T)
    assert d.duplicate and d.rule == dedup_pb2.RULE_ABOVE_DUPLICATE_THRESHOLD
    assert d.verdict == dedup_pb2.VERDICT_DUPLICATE


@pytest.mark.parametrize("similarity", [0.5, 0.3, -0.2])
def test_at_or_below_the_new_threshold_is_new(similarity: float) -> None:
    d = decide(similarity, "SEC approves spot ETH ETF", "SEC approves spot ETH ETF", T)
    assert not d.duplicate and d.rule == dedup_pb2.RULE_BELOW_NEW_THRESHOLD


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("SEC approves spot ETH ETF", "SEC delays spot ETH ETF decision"),
        ("Bitcoin ETFs see $500M inflows", "Bitcoin ETFs see $300M outflows"),
    ],
)
@pytest.mark.parametrize("similarity", [0.6, 0.78, 0.95, 1.0])
def test_acceptance_pairs_are_never_duplicates_whatever_the_cosine(a: str, b: str, similarity: float) -> None:
    d = decide(similarity, a, b, T)
    assert not d.duplicate
    expected = (
        dedup_pb2.RULE_CONTRADICTED_ABOVE_THRESHOLD
        if similarity >= 0.75
        else dedup_pb2.RULE_SECOND_LOOK_DIFFERS
    )
    assert d.rule == expected
    assert "vs" in d.explanation


def test_the_middle_needs_the_second_look_to_agree() -> None:
    agrees = decide(
        0.62, "Binance Labs launches $500 million Web3 fund", "Binance Labs’ $500M fund for Web3", T
    )
    assert agrees.duplicate and agrees.rule == dedup_pb2.RULE_SECOND_LOOK_AGREES
    assert "org Binance" in agrees.explanation and "value 500M" in agrees.explanation
    thin = decide(0.62, "Bitcoin rises as markets rebound", "Bitcoin rallies on ETF hopes", T)
    assert not thin.duplicate and thin.rule == dedup_pb2.RULE_SECOND_LOOK_DIFFERS
    assert "too little in common" in thin.explanation
    differs = decide(0.7, "Binance halts withdrawals", "Coinbase halts withdrawals", T)
    assert not differs.duplicate and "Binance vs Coinbase" in differs.explanation


def test_thresholds_are_configuration() -> None:
    strict = Thresholds(duplicate=0.9, new=0.6)
    assert not decide(0.85, "Fed holds rates", "Fed holds rates steady", strict).duplicate
    assert decide(0.85, "Fed holds rates", "Fed holds rates steady", T).duplicate
    with pytest.raises(ValueError, match="new < duplicate"):
        Thresholds(duplicate=0.5, new=0.6)
