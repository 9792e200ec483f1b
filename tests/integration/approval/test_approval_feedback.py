"""Every decision becomes a labelled example; `tapewatch feedback export --out FILE.jsonl` writes them."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from services.approval.auth import Identity
from services.approval.desk import ApprovalDesk
from services.approval.samples import sample_signal
from services.approval.settings import ApprovalSettings
from services.approval.store import SignalStore
from services.runtime.redis_server import RedisStack
from services.runtime.streams import Message
from tapewatch.approval.v1 import approval_pb2

pytestmark = pytest.mark.integration


def message(signal: approval_pb2.Signal) -> Message:
    return Message("signals.pending", "1-0", {"data": signal.SerializeToString(), "key": signal.id.encode()})


async def test_decisions_export_as_labelled_jsonl(
    redis: aioredis.Redis, redis_stack: RedisStack, tmp_path: Path
) -> None:
    desk = ApprovalDesk(SignalStore(redis), ApprovalSettings.load(redis_url=redis_stack.url))
    for n, signal_id in enumerate(("sig-1", "sig-2", "sig-3", "sig-4")):
        await desk.admit(message(sample_signal(signal_id, n)))
    alice = Identity("alice", "trader")
    await desk.decide(
        alice, approval_pb2.DecideRequest(signal_id="sig-1", action=approval_pb2.ACTION_APPROVE)
    )
    await desk.decide(
        alice,
        approval_pb2.DecideRequest(
            signal_id="sig-2",
            action=approval_pb2.ACTION_MODIFY,
            reason="ETF news is slower",
            modified=[
                approval_pb2.AssetAdjustment(asset="ETH", widening_bps=6, skew_bps=6, horizon_minutes=15)
            ],
        ),
    )
    await desk.decide(
        Identity("bob", "trader"),
        approval_pb2.DecideRequest(signal_id="sig-3", action=approval_pb2.ACTION_MARK_WRONG_DIRECTION),
    )
    out = tmp_path / "feedback.jsonl"
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "feedback", "export", "--out", str(out),
        env={**os.environ, "REDIS_URL": redis_stack.url}, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await cli.communicate()
    assert cli.returncode == 0, stderr.decode()
    assert b"wrote 3 examples" in stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["signal_id"], r["label"], r["decision"]["trader"]) for r in rows] == [
        ("sig-1", "approved", "alice"),
        ("sig-2", "modified", "alice"),
        ("sig-3", "wrong_direction", "bob"),
    ]
    approved, modified, wrong = rows
    assert approved["story"]["text"].startswith("Binance pauses withdrawals")
    assert approved["judgement"]["event_type"] == "HACK_OR_EXPLOIT"
    assert [a["asset"] for a in approved["approved"]] == ["BTC", "BNB"] and approved["edits"] == []
    assert modified["decision"]["reason"] == "ETF news is slower"
    assert modified["edits"] == [
        {"asset": "ETH", "field": "widening_bps", "proposed": 12.0, "approved": 6.0},
        {"asset": "ETH", "field": "horizon_minutes", "proposed": 30, "approved": 15},
    ]
    assert wrong["approved"] == [] and wrong["judgement"]["assets"][0]["direction"] == "BEARISH"
    assert wrong["decision"]["seconds_to_decide"] >= 0
