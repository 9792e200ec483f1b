"""The decision rule (DESIGN.md), applied to one item and one story in the window.

With s the cosine similarity of the two embeddings, D the duplicate threshold (0.75) and N the new
threshold (0.50), both configuration, and the second look comparing the two texts' facts
(services/dedup/second_look.py: entities, numbers, direction words):

1. s >= D: a duplicate (RULE_ABOVE_DUPLICATE_THRESHOLD), unless the second look finds a conflict, i.e.
   entities of one kind with nothing in common (Binance vs Coinbase), numbers of one family with no
   value in common ($500M vs $300M), or opposite poles on one direction axis (approves vs delays,
   inflows vs outflows): then new (RULE_CONTRADICTED_ABOVE_THRESHOLD). A high cosine between two texts
   that say opposite things is what embeddings do; those are two stories for a trader.
2. s <= N: new (RULE_BELOW_NEW_THRESHOLD). The second look is not asked.
3. N < s < D (ambiguous): a duplicate only when the second look finds no conflict and at least
   `min_anchors` (2) shared anchors, an anchor being an entity or a number both texts name, or a
   direction pole they share (RULE_SECOND_LOOK_AGREES); anything else is new (RULE_SECOND_LOOK_DIFFERS).
   One shared name is not enough: nearly every crypto headline names Bitcoin.

Ties go to the stricter side: s equal to D is a duplicate, s equal to N is new. When in doubt the rule
says new: a wrong "new" costs one LLM call, a wrong "duplicate" hides a story from the trader.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.dedup.second_look import compare, extract
from tapewatch.dedup.v1 import dedup_pb2


@dataclass(frozen=True)
class Thresholds:
    duplicate: float = 0.75
    new: float = 0.50
    min_anchors: int = 2

    def __post_init__(self) -> None:
        if not -1.0 <= self.new < self.duplicate <= 1.0:
            raise ValueError(
                f"thresholds need -1 <= new < duplicate <= 1, got new={self.new} duplicate={self.duplicate}"
            )

    def ambiguous(self, similarity: float) -> bool:
        return self.new < similarity < self.duplicate


@dataclass(frozen=True)
class Decision:
    duplicate: bool
    rule: int  # dedup_pb2.Rule
    similarity: float
    explanation: str

    @property
    def verdict(self) -> int:
        return dedup_pb2.VERDICT_DUPLICATE if self.duplicate else dedup_pb2.VERDICT_NEW

    @property
    def rule_name(self) -> str:
        return dedup_pb2.Rule.Name(self.rule).removeprefix("RULE_").lower()


def decide(similarity: float, text: str, story_text: str, thresholds: Thresholds) -> Decision:
    """Is `text` (similarity `similarity` to the story's first item, `story_text`) a copy of that story?"""
    s = round(float(similarity), 6)  # float32 dot products wobble in the last digits
    if s <= thresholds.new:
        return Decision(
            False,
            dedup_pb2.RULE_BELOW_NEW_THRESHOLD,
            s,
            f"cosine {s:.3f} <= new threshold {thresholds.new:.2f}",
        )
    mine, theirs = extract(text), extract(story_text)
    seen = compare(mine, theirs)
    conflicts = "; ".join(seen.conflicts)
    shared = ", ".join(seen.shared) or "nothing"
    if s >= thresholds.duplicate:
        if seen.conflicts:
            return Decision(
                False,
                dedup_pb2.RULE_CONTRADICTED_ABOVE_THRESHOLD,
                s,
                f"cosine {s:.3f} >= duplicate threshold {thresholds.duplicate:.2f}, but the second look "
                f"finds a contradiction (item vs story: {conflicts}): a different story",
            )
        return Decision(
            True,
            dedup_pb2.RULE_ABOVE_DUPLICATE_THRESHOLD,
            s,
            f"cosine {s:.3f} >= duplicate threshold {thresholds.duplicate:.2f}; "
            f"no contradiction (shared: {shared})",
        )
    zone = f"cosine {s:.3f} between {thresholds.new:.2f} and {thresholds.duplicate:.2f}"
    if seen.conflicts:
        return Decision(
            False,
            dedup_pb2.RULE_SECOND_LOOK_DIFFERS,
            s,
            f"{zone}; second look differs (item vs story: {conflicts}; shared: {shared})",
        )
    if seen.anchors < thresholds.min_anchors:
        return Decision(
            False,
            dedup_pb2.RULE_SECOND_LOOK_DIFFERS,
            s,
            f"{zone}; second look finds too little in common ({seen.anchors} shared anchors: {shared}; "
            f"needs {thresholds.min_anchors})",
        )
    return Decision(True, dedup_pb2.RULE_SECOND_LOOK_AGREES, s, f"{zone}; second look agrees: {shared}")
