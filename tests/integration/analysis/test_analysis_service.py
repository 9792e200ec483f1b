"""Analyze and Ask on a real gRPC server, the real CPU model server and Redis Stack: schema-valid, bounded
judgements from the model, and INVALID_ARGUMENT with a reason for bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from analysis_harness import Harness
from google.protobuf.duration_pb2 import Duration

from services.analysis.assets import SYMBOLS
from services.analysis.judgement import parse_reply
from tapewatch.analysis.v1 import analysis_pb2
from tapewatch.news.v1 import news_pb2

pytestmark = pytest.mark.integration

STORIES = [
    ("elonmusk", "Dogecoin is the people's crypto", {"DOGE"}),
    ("binance", "Binance halts all withdrawals after a hot wallet hack; 7,000 BTC stolen", {"BTC"}),
    ("realDonaldTrump", "We will put 100% tariffs on all Chinese goods starting Friday!", {"BTC", "ETH"}),
    ("cointelegraph", "比特币突破10万美元，以太坊跟涨", {"BTC", "ETH"}),
    ("upbit", "업비트, 솔라나(SOL) 원화 마켓 상장", {"SOL"}),
]


def item(text: str, author: str = "elonmusk", **kw: object) -> news_pb2.NewsItem:
    out = news_pb2.NewsItem(
        source=str(kw.pop("source", "x")),
        source_item_id=str(kw.pop("source_item_id", "1")),
        platform=kw.pop("platform", news_pb2.PLATFORM_X),  # type: ignore[arg-type]
        author=author,
        text=text,
    )
    out.published_at.FromDatetime(datetime.now(UTC) - timedelta(minutes=1))
    return out


@pytest.mark.parametrize(("author", "text", "assets"), STORIES)
async def test_analyze_gives_a_schema_valid_bounded_llm_judgement(
    analysis: Harness, author: str, text: str, assets: set[str]
) -> None:
    reply = await analysis.stub.Analyze(analysis_pb2.AnalyzeRequest(item=item(text, author), echo_count=3))
    impact = reply.impact
    assert impact.judged_by == analysis_pb2.JUDGED_BY_LLM, impact.model
    assert impact.prompt_version.startswith("impact-v1+") and impact.model
    judged = {a.asset for a in impact.assets}
    assert judged == assets  # resolved by the alias table, not taken from the model
    judgement = parse_reply(impact.raw_judgement, sorted(judged))  # the reply as received validates
    assert impact.materiality != analysis_pb2.MATERIALITY_UNSPECIFIED
    assert impact.event_type != analysis_pb2.EVENT_TYPE_UNSPECIFIED
    assert impact.urgency != analysis_pb2.URGENCY_UNSPECIFIED
    assert 5 <= impact.horizon_minutes <= analysis.settings.max_horizon_minutes
    assert 0 <= impact.confidence <= 1 and impact.rationale == judgement.rationale
    for a in impact.assets:
        assert a.asset in SYMBOLS and a.direction != analysis_pb2.DIRECTION_UNSPECIFIED
        assert 0 <= a.vol_burst_probability <= 1 and 0.01 <= a.quoting_probability <= 0.99
    assert reply.latency_ms > 0 and len(reply.trace_id) == 32
    assert await analysis.redis.xlen(analysis.settings.signals_stream) == 0  # Analyze never publishes


def _too_big() -> news_pb2.NewsItem:
    return item("x" * (64 * 1024 + 1))


BAD_ANALYZE = {
    "no item": (analysis_pb2.AnalyzeRequest(), "item is missing"),
    "empty text": (analysis_pb2.AnalyzeRequest(item=item("   ")), "empty"),
    "oversize text": (analysis_pb2.AnalyzeRequest(item=_too_big()), "65,536-byte limit"),
    "no platform": (analysis_pb2.AnalyzeRequest(item=item("BTC up", platform=0)), "platform"),
    "negative echoes": (analysis_pb2.AnalyzeRequest(item=item("BTC up"), echo_count=-1), "echo_count"),
}


@pytest.mark.parametrize("case", list(BAD_ANALYZE))
async def test_bad_analyze_input_is_invalid_argument_with_a_reason(analysis: Harness, case: str) -> None:
    request, words = BAD_ANALYZE[case]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await analysis.stub.Analyze(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words.lower() in (err.value.details() or "").lower()


def window(seconds: int) -> Duration:
    return Duration(seconds=seconds)


BAD_ASK = {
    "empty question": (analysis_pb2.AskRequest(question="  ", window=window(3600)), "question is empty"),
    "oversize question": (analysis_pb2.AskRequest(question="why " * 400, window=window(3600)), "over the"),
    "no window": (analysis_pb2.AskRequest(question="what did Musk post?"), "window is missing"),
    "zero window": (analysis_pb2.AskRequest(question="what did Musk post?", window=window(0)), "more than 0"),
    "negative window": (analysis_pb2.AskRequest(question="what?", window=window(-60)), "more than 0"),
    "years": (
        analysis_pb2.AskRequest(question="what?", window=window(3 * 365 * 86400)),
        "longer than 30 days",
    ),
}


@pytest.mark.parametrize("case", list(BAD_ASK))
async def test_bad_ask_input_is_invalid_argument_with_a_reason(analysis: Harness, case: str) -> None:
    request, words = BAD_ASK[case]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in analysis.stub.Ask(request):
            pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words.lower() in (err.value.details() or "").lower()


async def test_raw_judgement_is_kept_as_received(analysis: Harness) -> None:
    reply = await analysis.stub.Analyze(analysis_pb2.AnalyzeRequest(item=item("Doge to the moon")))
    assert set(json.loads(reply.impact.raw_judgement)["assets"]) == {"DOGE"}
