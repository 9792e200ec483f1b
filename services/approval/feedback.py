"""Trader decisions as labelled examples, and `tapewatch feedback export --out FILE.jsonl`.

Each decision adds one example to the stream tw:approval:feedback, in the same atomic step as the
decision itself: the story, the model's judgement, what code proposed, the trader's label and edits.
Expiries are not examples (nobody judged the signal); they stay in the audit log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from services.approval.settings import ApprovalSettings
from services.approval.store import FEEDBACK_STREAM
from services.approval.views import adjustment_view, impact_view, ms, story_view
from services.runtime.redis_client import open_redis
from tapewatch.approval.v1 import approval_pb2

LABELS = {
    approval_pb2.ACTION_APPROVE: "approved",
    approval_pb2.ACTION_MODIFY: "modified",
    approval_pb2.ACTION_REJECT: "rejected",
    approval_pb2.ACTION_MARK_DUPLICATE: "duplicate",
    approval_pb2.ACTION_MARK_WRONG_DIRECTION: "wrong_direction",
}


def example(
    proposed: approval_pb2.Signal, decided: approval_pb2.Signal, edits: list[dict[str, Any]]
) -> dict[str, Any]:
    d = decided.decision
    return {
        "signal_id": decided.id,
        "story": story_view(proposed.story),
        "judgement": impact_view(proposed.impact),
        "raw_judgement": proposed.impact.raw_judgement,
        "proposed": [adjustment_view(a) for a in proposed.adjustments],
        "label": LABELS.get(d.action, "unknown"),
        "decision": {
            "action": approval_pb2.Action.Name(d.action),
            "trader": d.trader,
            "reason": d.reason,
            "decided_at_ms": ms(d.decided_at),
            "seconds_to_decide": round((ms(d.decided_at) - ms(proposed.created_at)) / 1000, 3),
        },
        "approved": [adjustment_view(a) for a in decided.adjustments]
        if decided.state == approval_pb2.SIGNAL_STATE_APPROVED
        else [],
        "edits": edits,
        "trace_id": proposed.trace_id,
    }


async def export(redis: aioredis.Redis, out: Path, batch: int = 1000) -> int:
    """Write every stored example, oldest first, one JSON object a line; returns how many."""
    written = 0
    start = "-"
    tmp = out.with_suffix(out.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        while True:
            entries = await redis.xrange(FEEDBACK_STREAM, min=start, count=batch)
            for _, fields in entries:
                f.write(json.dumps(json.loads(fields[b"example"]), ensure_ascii=False) + "\n")
            written += len(entries)
            if len(entries) < batch:
                break
            last = entries[-1][0].decode()
            start = "(" + last
    tmp.replace(out)
    return written


async def _export(settings: ApprovalSettings, out: Path) -> int:
    async with open_redis(settings.redis_url, settings.data_dir) as redis:
        return await export(redis, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tapewatch feedback", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="write every labelled decision as JSONL")
    exp.add_argument("--out", type=Path, required=True, help="the JSONL file to write")
    args = parser.parse_args(argv)
    count = asyncio.run(_export(ApprovalSettings.load(), args.out))
    print(f"wrote {count} examples to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
