"""The versioned prompt: instructions and few-shot examples from files, then the story.

Everything before the story is static and byte-identical across calls, so the model server reuses its
cached prefix and evaluates only the story. The version names the files; `Prompt.version` adds a short
hash of their bytes, so an edit without a new version still shows in every archived judgement.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from services.analysis.judgement import Judgement

PROMPTS = Path(__file__).parent / "prompts"
DEFAULT_VERSION = "impact-v1"
MAX_STORY_CHARS = 1200
ANSWER_CUE = "Judgement: "


@dataclass(frozen=True)
class StoryView:
    """What the model sees of a story."""

    text: str
    platform: str  # lower-case Platform name without prefix, e.g. "x", "newswire"
    source: str
    author: str
    assets: tuple[str, ...]
    echoes: int = 0
    published_at: datetime | None = None


def story_block(story: StoryView) -> str:
    # One line of text between markers: a post cannot start a new field or fake an answer.
    text = " / ".join(line for line in story.text.replace("<<<", "‹‹‹").replace(">>>", "›››").splitlines())
    if len(text) > MAX_STORY_CHARS:
        text = text[:MAX_STORY_CHARS] + " …"
    when = f"Time: {story.published_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC\n" if story.published_at else ""
    return (
        "### Story\n"
        f"Source: {story.source} ({story.platform})\n"
        f"Author: {story.author or 'unknown'}\n"
        f"{when}"
        f"Echoes: {story.echoes}\n"
        f"Assets: {', '.join(story.assets)}\n"
        f"Text: <<<{text}>>>\n"
        f"{ANSWER_CUE}"
    )


@dataclass(frozen=True)
class Prompt:
    name: str
    prefix: str

    @property
    def version(self) -> str:
        return f"{self.name}+{hashlib.sha256(self.prefix.encode()).hexdigest()[:8]}"

    def render(self, story: StoryView) -> str:
        return self.prefix + story_block(story)


@cache
def load_prompt(name: str = DEFAULT_VERSION) -> Prompt:
    """The prompt of a version: `<name>.txt` (instructions) and `<name>.examples.jsonl` (few-shot)."""
    instructions = (PROMPTS / f"{name}.txt").read_text()
    shots = []
    for line in (PROMPTS / f"{name}.examples.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        ex = json.loads(line)
        view = StoryView(
            text=ex["text"],
            platform=ex["platform"],
            source=ex["source"],
            author=ex["author"],
            assets=tuple(ex["assets"]),
            echoes=ex["echoes"],
            published_at=datetime.fromisoformat(ex["published_at"]),
        )
        answer = Judgement.model_validate(ex["judgement"], context={"assets": ex["assets"]})
        shots.append(story_block(view) + answer.model_dump_json() + "\n\n")
    return Prompt(name, instructions + "".join(shots))


def available_versions() -> list[str]:
    return sorted(p.stem for p in PROMPTS.glob("*.txt"))
