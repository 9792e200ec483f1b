"""Small parts of the dedup service: settings, embedding batches, search replies, echo rate, stream input."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from services.dedup.embedding import EmbedBatcher
from services.dedup.service import parse_item, seen_ms
from services.dedup.settings import DedupSettings
from services.dedup.store import _search_rows, echo_rate_per_min, story_id_for
from services.runtime.settings import SettingsError
from services.runtime.streams import Reject
from tapewatch.news.v1 import news_pb2


def test_thresholds_must_be_ordered() -> None:
    assert DedupSettings.load().duplicate_threshold == 0.75
    with pytest.raises(SettingsError, match="new_threshold"):
        DedupSettings.load(duplicate_threshold=0.5, new_threshold=0.6)


async def test_concurrent_texts_share_one_embed_call() -> None:
    calls: list[list[str]] = []

    async def embed_many(texts: Sequence[str]) -> npt.NDArray[np.float32]:
        calls.append(list(texts))
        await asyncio.sleep(0.01)
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    batcher = EmbedBatcher(embed_many, max_batch=4)
    first = await batcher.embed("a")
    assert calls == [["a"]] and first.tolist() == [1.0, 1.0]  # alone: at once, batch of one
    vecs = await asyncio.gather(*(batcher.embed("x" * n) for n in range(1, 11)))
    assert [v[0] for v in vecs] == list(range(1, 11))  # each caller gets its own row
    assert len(calls) == 1 + 3 and max(len(c) for c in calls) == 4  # 10 texts in batches of <= 4
    await batcher.close()


async def test_a_failed_embed_call_fails_its_waiters_only() -> None:
    fail = True

    async def embed_many(texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if fail:
            raise RuntimeError("model down")
        return np.ones((len(texts), 2), dtype=np.float32)

    batcher = EmbedBatcher(embed_many)
    with pytest.raises(RuntimeError, match="model down"):
        await batcher.embed("a")
    fail = False
    assert (await batcher.embed("b")).shape == (2,)
    await batcher.close()


def test_search_replies_in_both_protocols() -> None:
    resp2 = [
        2,
        b"tw:dedup:story:st_a",
        [b"distance", b"0.1", b"text", b"x"],
        b"tw:dedup:story:st_b",
        [b"distance", b"0.3"],
    ]
    resp3 = {
        b"total_results": 2,
        b"results": [
            {b"id": b"tw:dedup:story:st_a", b"extra_attributes": {b"distance": b"0.1", b"text": b"x"}},
            {b"id": b"tw:dedup:story:st_b", b"extra_attributes": {b"distance": b"0.3"}},
        ],
    }
    for reply in (resp2, resp3):
        total, rows = _search_rows(reply)
        assert total == 2
        assert rows == [
            ("tw:dedup:story:st_a", {"distance": b"0.1", "text": b"x"}),
            ("tw:dedup:story:st_b", {"distance": b"0.3"}),
        ]
    assert _search_rows([3, b"k1", b"k2", b"k3"]) == (3, [("k1", {}), ("k2", {}), ("k3", {})])  # NOCONTENT


def test_echo_rate_is_copies_per_minute_over_at_least_a_minute() -> None:
    assert echo_rate_per_min(5, 0, 3_000) == 5.0
    assert echo_rate_per_min(30, 0, 10 * 60_000) == 3.0
    assert echo_rate_per_min(0, 0, 0) == 0.0


def test_story_ids_follow_the_first_item() -> None:
    assert story_id_for("nw_1") == story_id_for("nw_1") != story_id_for("nw_2")
    assert story_id_for("nw_1").startswith("st_") and len(story_id_for("nw_1")) == 23


def test_stream_input_must_be_a_news_item() -> None:
    item = news_pb2.NewsItem(id="nw_1", text="x")
    assert parse_item(item.SerializeToString()).id == "nw_1"
    with pytest.raises(Reject, match="not a NewsItem"):
        parse_item(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xff")
    with pytest.raises(Reject, match="not a NewsItem"):
        parse_item(b"")


def test_an_item_is_seen_when_published() -> None:
    item = news_pb2.NewsItem()
    item.received_at.FromMilliseconds(2_000)
    assert seen_ms(item) == 2_000
    item.published_at.FromMilliseconds(1_000)
    assert seen_ms(item) == 1_000


async def test_a_refused_batch_is_split_so_only_the_bad_text_fails() -> None:
    from services.model_client import ModelRejected

    async def embed_many(texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if "bad" in texts:
            raise ModelRejected("embedder", "INVALID_ARGUMENT", "cannot embed 'bad'")
        return np.ones((len(texts), 2), dtype=np.float32)

    batcher = EmbedBatcher(embed_many)
    results = await asyncio.gather(*(batcher.embed(t) for t in ("a", "bad", "c")), return_exceptions=True)
    assert isinstance(results[1], ModelRejected)
    assert [r.shape for i, r in enumerate(results) if i != 1] == [(2,), (2,)]  # type: ignore[union-attr]
    await batcher.close()
