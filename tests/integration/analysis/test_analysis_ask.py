"""Ask: stories of a window, filtered by author and asset, nearest to the question's topic, cited by id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from analysis_harness import Harness, analysis_settings, make_story, start_harness
from google.protobuf.duration_pb2 import Duration

from services.runtime.streams import publish
from tapewatch.analysis.v1 import analysis_pb2
from tapewatch.news.v1 import news_pb2

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
T = news_pb2.PLATFORM_TRUTH_SOCIAL
STORIES = [  # id, author, platform, hours ago, text
    ("st_trump_china", "realDonaldTrump", T, 2, "China is hostile on trade. Big tariffs on Chinese goods!"),
    ("st_trump_army", "realDonaldTrump", T, 3, "Happy Birthday to our great US Army, the best ever!"),
    ("st_trump_china_old", "realDonaldTrump", T, 30, "Great call with President Xi of China about soybeans."),
    ("st_china_mining", "cointelegraph", news_pb2.PLATFORM_NEWSWIRE, 1, "China bans crypto mining again"),
    ("st_musk_doge", "elonmusk", news_pb2.PLATFORM_X, 1, "Dogecoin is the people's crypto"),
    ("st_musk_doge2", "elonmusk", news_pb2.PLATFORM_X, 6, "Doge to the moon 🚀"),
    ("st_musk_rocket", "elonmusk", news_pb2.PLATFORM_X, 5, "Starship flight 7 is go for launch"),
]  # fmt: skip


async def archive_stories(harness: Harness, redis: aioredis.Redis) -> None:
    for story_id, author, platform, hours, text in STORIES:
        story = make_story(text, story_id, author, platform, published_at=NOW - timedelta(hours=hours))
        await publish(redis, "news.unique", story.SerializeToString(), story_id)
    for story_id, *_ in STORIES:
        await harness.wait_done(story_id)


async def ask(harness: Harness, question: str, hours: float) -> tuple[str, list[analysis_pb2.Citation]]:
    chunks = [
        c
        async for c in harness.stub.Ask(
            analysis_pb2.AskRequest(question=question, window=Duration(seconds=int(hours * 3600)))
        )
    ]
    assert chunks and not any(c.citations for c in chunks[1:])  # citations come with the first chunk
    return "".join(c.text for c in chunks), list(chunks[0].citations)


async def test_ask_retrieves_by_window_author_asset_and_similarity(
    analysis: Harness, redis: aioredis.Redis
) -> None:
    await archive_stories(analysis, redis)
    answer, cited = await ask(analysis, "What did Trump post about China in the last 10 hours?", 10)
    ids = [c.story_id for c in cited]
    assert ids[0] == "st_trump_china" and set(ids) <= {"st_trump_china", "st_trump_army"}
    assert cited[0].author == "realdonaldtrump" and "tariffs" in cited[0].text
    assert abs(cited[0].published_at.ToDatetime(tzinfo=UTC) - (NOW - timedelta(hours=2))) < timedelta(
        seconds=1
    )
    assert "[st_trump_china]" in answer and "by @realdonaldtrump" in answer

    answer, cited = await ask(analysis, "Musk's posts about DOGE today", 24)
    assert {c.story_id for c in cited} == {"st_musk_doge", "st_musk_doge2"}
    assert "[st_musk_doge]" in answer and "[st_musk_doge2]" in answer and "st_musk_rocket" not in answer

    answer, cited = await ask(analysis, "What did Saylor post about Bitcoin?", 24)
    assert not cited and answer.startswith("No stored story")


async def test_ask_without_an_embedder_matches_words(redis: aioredis.Redis, tmp_path: Path) -> None:
    async for harness in start_harness(redis, analysis_settings(tmp_path, "127.0.0.1:1"), None):
        await archive_stories(harness, redis)
        answer, cited = await ask(harness, "what did trump say about China", 10)
    assert [c.story_id for c in cited] == ["st_trump_china"]
    assert "about “china”" in answer
