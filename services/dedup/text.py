"""What the embedder sees of an item: its words, without the noise that copies add.

A re-post of a story on X or Telegram wraps the same words in "BREAKING:", sirens and rockets, cashtags,
hashtags, links and "RT @someone:". `for_embedding` removes that wrapping so the copy lands on the
original: URLs; a leading "RT @user:"; alert words at the start or in capitals anywhere (BREAKING,
JUST IN, ALERT, UPDATE, FLASH, DEVELOPING, URGENT, REPORT); emoji, pictographs and other symbols; the
"$" of a cashtag and the "#" of a hashtag (the word stays); "@" before a handle (the name stays);
runs of "!" and "?" and of punctuation; then whitespace collapsed. Text in capitals throughout is
lower-cased (the default embedder is uncased anyway; a cased one must not see shouting as new words).

An item whose text is empty after this (only links, emoji, alert words) is not news: the consumer
rejects it with that reason.
"""

from __future__ import annotations

import re
import unicodedata

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_RETWEET = re.compile(r"^\s*RT\s+@\w+:?\s*", re.IGNORECASE)
_ALERT_WORDS = r"BREAKING(?:\s+NEWS)?|JUST\s+IN|ALERT|UPDATE|FLASH|DEVELOPING|URGENT|NEW|REPORT|EXCLUSIVE"
# "Breaking:" / "Just in -" at the start, any case; the loud ones in capitals anywhere.
_LEADING_ALERT = re.compile(rf"^\s*(?:(?:{_ALERT_WORDS})\s*[:\-–—|]+\s*)+", re.IGNORECASE)
_CAPITAL_ALERT = re.compile(
    r"\b(?:BREAKING(?:\s+NEWS)?|JUST\s+IN|ALERT|FLASH|DEVELOPING|URGENT)\b\s*[:!\-–—|]*"
)
_CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z][A-Za-z0-9]{0,9})\b")
_HASHTAG = re.compile(r"(?<!\w)#(\w+)")
_HANDLE = re.compile(r"(?<!\w)@(\w+)")
_REPEATED_MARKS = re.compile(r"([!?.,;:\-–—|*~_])\1+")
_SPACE = re.compile(r"\s+")
_EDGE_MARKS = re.compile(r"^[\s:;,.!?\-–—|*~_\"'“”]+|[\s:;,.!?\-–—|*~_]+$")


def _keep(ch: str) -> bool:
    """Letters, digits, punctuation, spaces and currency stay; emoji, pictographs, arrows and marks go."""
    cat = unicodedata.category(ch)
    if cat[0] in "LNPZ":
        return True
    return cat == "Sc" or ch in "%+=<>&"


def for_embedding(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = _URL.sub(" ", text)
    text = _RETWEET.sub("", text)
    text = "".join(ch if _keep(ch) else " " for ch in text)
    text = _SPACE.sub(" ", text).strip()
    text = _LEADING_ALERT.sub("", text)
    text = _CAPITAL_ALERT.sub(" ", text)
    text = _CASHTAG.sub(r"\1", text)
    text = _HASHTAG.sub(r"\1", text)
    text = _HANDLE.sub(r"\1", text)
    text = _REPEATED_MARKS.sub(r"\1", text)
    text = _SPACE.sub(" ", text)
    text = _EDGE_MARKS.sub("", text).strip()
    letters = [ch for ch in text if ch.isalpha()]
    if letters and sum(ch.isupper() for ch in letters) / len(letters) > 0.8 and len(letters) > 8:
        text = text.lower()
    return text if any(ch.isalnum() for ch in text) else ""
