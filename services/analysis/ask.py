"""Ask: answer a question from the stories of a time window, citing story ids.

Retrieval: the window bounds the time; an author named in the question (alias table below, or a stored
author handle) filters by author; assets named in the question (asset alias table) filter by asset; what
is left of the question (the topic) is embedded and the stories nearest to it come first. Without a topic
the newest come first. The answer is EXTRACTIVE, composed by code: one line per cited story with its
time, author, judgement and text. The 270M CPU model is too weak to summarise faithfully, and an
extractive answer cannot invent a story that is not cited.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.analysis.archive import Archive, Embed, StoredStory
from services.analysis.assets import mentions
from tapewatch.analysis.v1 import analysis_pb2

AUTHOR_ALIASES = {
    "trump": "realdonaldtrump", "donald trump": "realdonaldtrump", "potus": "potus",
    "musk": "elonmusk", "elon": "elonmusk", "elon musk": "elonmusk",
    "saylor": "saylor", "vitalik": "vitalikbuterin", "buterin": "vitalikbuterin", "cz": "cz_binance",
    "gensler": "garygensler", "powell": "federalreserve", "the fed": "federalreserve", "sec": "sec_news",
}  # fmt: skip
STOPWORDS = set(
    "what which who whom did does do say said says post posts posted posting tweet tweets tweeted wrote "
    "about on in of the a an and or to from for with any all last past today yesterday hours hour minutes "
    "minute days day week this that there is are was were has have had been me tell show list give his her "
    "their it its recent recently latest news story stories anything something mention mentioned".split()
)
MIN_SIMILARITY = 0.2
TEXT_CHARS = 280


@dataclass(frozen=True)
class Question:
    text: str
    authors: tuple[str, ...]
    assets: tuple[str, ...]
    topic: str


def parse_question(text: str, known_authors: set[str]) -> Question:
    lowered = " " + re.sub(r"[^\w@$#\s]", " ", text.lower().replace("'s", " ")) + " "
    authors: list[str] = []
    for alias, handle in sorted(AUTHOR_ALIASES.items(), key=lambda kv: -len(kv[0])):
        if f" {alias} " in lowered:
            authors.append(handle)
            lowered = lowered.replace(f" {alias} ", " ")
    for word in lowered.split():
        handle = word.lstrip("@")
        if handle in known_authors and handle not in authors:
            authors.append(handle)
            lowered = lowered.replace(f" {word} ", " ")
    assets = mentions(text)
    topic = " ".join(w for w in lowered.split() if w not in STOPWORDS and not w.isdigit())
    return Question(text, tuple(dict.fromkeys(authors)), tuple(assets), topic)


def describe_window(window: timedelta) -> str:
    seconds = window.total_seconds()
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{seconds / 86400:g} d"
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 60:g} min"


@dataclass
class Asker:
    archive: Archive
    embed: Embed
    max_citations: int = 5

    async def retrieve(self, question: Question, now: datetime, window: timedelta) -> list[StoredStory]:
        since_ms, until_ms = int((now - window).timestamp() * 1000), int(now.timestamp() * 1000)
        limit = self.max_citations * 4
        vector = await self.embed(question.topic) if question.topic else None
        hits = await self.archive.search(since_ms, until_ms, question.authors, question.assets, vector, limit)
        if vector is None:
            words = set(question.topic.split())
            if words:  # no embedding: keyword overlap decides, newest first among equals
                hits = [h for h in hits if words & set(re.findall(r"\w+", h.text.lower()))]
            return hits[: self.max_citations]
        good = [h for h in hits if (h.similarity or 0) >= MIN_SIMILARITY or question.assets]
        return good[: self.max_citations]

    async def answer(
        self, question: Question, now: datetime, window: timedelta
    ) -> AsyncIterator[analysis_pb2.AskChunk]:
        hits = await self.retrieve(question, now, window)
        scope = [f"the last {describe_window(window)}"]
        if question.authors:
            scope.append("by " + ", ".join(f"@{a}" for a in question.authors))
        if question.assets:
            scope.append("naming " + ", ".join(question.assets))
        if question.topic:
            scope.append(f"about “{question.topic}”")
        if not hits:
            yield analysis_pb2.AskChunk(text=f"No stored story from {' '.join(scope)} matches.")
            return
        stories = "1 story" if len(hits) == 1 else f"{len(hits)} stories"
        head = f"{stories} from {' '.join(scope)}, most relevant first:\n"
        citations = [
            analysis_pb2.Citation(story_id=h.story_id, author=h.author, text=h.text[:TEXT_CHARS])
            for h in hits
        ]
        for c, h in zip(citations, hits, strict=True):
            c.published_at.FromMilliseconds(h.published_ms)
        yield analysis_pb2.AskChunk(text=head, citations=citations)
        for h in hits:
            when = datetime.fromtimestamp(h.published_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
            text = h.text if len(h.text) <= TEXT_CHARS else h.text[:TEXT_CHARS] + "…"
            judged = f"{h.materiality}, {h.event_type.replace('_', ' ')}" if h.materiality else "not judged"
            yield analysis_pb2.AskChunk(text=f"- {when} @{h.author} ({judged}): “{text}” [{h.story_id}]\n")
