"""Reading a question: authors (aliases or stored handles), assets (alias table), and the topic left."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.analysis.ask import describe_window, parse_question


@pytest.mark.parametrize(
    ("question", "authors", "assets", "topic"),
    [
        ("What did Trump post about China in the last 10 hours?", ("realdonaldtrump",), (), "china"),
        ("Musk's posts about DOGE today", ("elonmusk",), ("DOGE",), "doge"),
        ("what did @cz_binance say about the hack", ("cz_binance",), (), "hack"),
        ("anything about 比特币 ETF?", (), ("BTC",), "比特币 etf"),
        ("what did Elon Musk tweet", ("elonmusk",), (), ""),
    ],
)
def test_parse_question(question: str, authors: tuple[str, ...], assets: tuple[str, ...], topic: str) -> None:
    q = parse_question(question, known_authors={"cz_binance", "elonmusk"})
    assert (q.authors, q.assets, q.topic) == (authors, assets, topic)


def test_describe_window() -> None:
    assert describe_window(timedelta(hours=10)) == "10 h"
    assert describe_window(timedelta(days=2)) == "2 d"
    assert describe_window(timedelta(minutes=45)) == "45 min"
