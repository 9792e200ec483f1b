"""ApprovalService on a real gRPC server (loopback) with a real Redis Stack: pending signals arrive on
signals.pending, traders decide, nobody-decided signals expire, every move is audited, approvals are
published exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis

from services.approval.samples import sample_signal
from services.approval.service import ApprovalApp
from services.approval.settings import ApprovalSettings
from services.approval.store import AUDIT_STREAM, SignalStore
from services.runtime.interceptors import insecure_channel
from services.runtime.redis_server import RedisStack, free_port
from services.runtime.streams import dead_letters, publish
from tapewatch.approval.v1 import approval_pb2, approval_pb2_grpc

pytestmark = pytest.mark.integration
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


async def eventually(check: Callable[[], Awaitable[Any]], timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s (last: {result!r})")
        await asyncio.sleep(0.02)


def settings_for(redis_stack: RedisStack, **overrides: Any) -> ApprovalSettings:
    values: dict[str, Any] = {
        "redis_url": redis_stack.url,
        "approval_addr": "127.0.0.1:0",
        "console_addr": "127.0.0.1:0",
        "quoting_addr": f"127.0.0.1:{free_port()}",
        "analysis_addr": f"127.0.0.1:{free_port()}",
        "sweep_interval_s": 0.05,
        "log_format": "text",
    }
    values.update(overrides)
    return ApprovalSettings.load(**values)


class Desk:
    """A running approval process and trader-authenticated stubs."""

    def __init__(self, app: ApprovalApp, channel: grpc.aio.Channel) -> None:
        self.app = app
        self.channel = channel
        self.stub = approval_pb2_grpc.ApprovalServiceStub(channel)
        self.tokens: dict[str, list[tuple[str, str]]] = {}

    async def login(self, name: str, role: str = "trader") -> list[tuple[str, str]]:
        token, _ = await self.app.sessions.open(name, role)  # type: ignore[arg-type]
        self.tokens[name] = [("authorization", f"Bearer {token}")]
        return self.tokens[name]

    async def decide(self, trader: str, signal_id: str, action: Any, **kw: Any) -> approval_pb2.Signal:
        reply = await self.stub.Decide(
            approval_pb2.DecideRequest(signal_id=signal_id, action=action, **kw), metadata=self.tokens[trader]
        )
        return reply.signal

    async def pending_ids(self) -> list[str]:
        reply = await self.stub.ListPending(approval_pb2.ListPendingRequest(), metadata=self.tokens["alice"])
        return [s.id for s in reply.signals]


@pytest.fixture
def expiry_s() -> float:
    return 120.0


@pytest.fixture
async def desk(redis: aioredis.Redis, redis_stack: RedisStack, expiry_s: float) -> AsyncIterator[Desk]:
    app = ApprovalApp(settings_for(redis_stack, expiry_s=expiry_s, max_widening_bps=40.0), redis, "test-1")
    await app.start()
    channel = insecure_channel(f"127.0.0.1:{app.grpc_port}", "test")
    d = Desk(app, channel)
    for name in ("alice", "bob"):
        await d.login(name)
    await d.login("vera", "viewer")
    yield d
    await channel.close()
    await app.stop()


async def submit(redis: aioredis.Redis, signal: approval_pb2.Signal) -> None:
    await publish(redis, "signals.pending", signal.SerializeToString(), signal.id)


async def admitted(desk: Desk, *ids: str) -> None:
    await eventually(lambda: _has(desk, ids))


async def _has(desk: Desk, ids: tuple[str, ...]) -> bool:
    return set(ids) <= set(await desk.pending_ids())


async def approved_messages(redis: aioredis.Redis) -> list[tuple[approval_pb2.Signal, dict[bytes, bytes]]]:
    return [
        (approval_pb2.Signal.FromString(f[b"data"]), f) for _, f in await redis.xrange("signals.approved")
    ]


async def test_pending_signal_is_listed_with_its_expiry(desk: Desk, redis: aioredis.Redis) -> None:
    before_ms = int(time.time() * 1000)
    await submit(redis, sample_signal("sig-1", created_ms=before_ms))
    await admitted(desk, "sig-1")
    reply = await desk.stub.ListPending(approval_pb2.ListPendingRequest(), metadata=desk.tokens["vera"])
    [signal] = reply.signals
    assert signal.state == approval_pb2.SIGNAL_STATE_PENDING
    assert signal.expires_at.ToMilliseconds() - signal.created_at.ToMilliseconds() == 120_000
    assert signal.story.first_item.text.startswith("Binance pauses withdrawals")
    assert signal.trace_id and len(signal.trace_id) == 32


async def test_approval_is_published_once_with_the_signal_trace(
    desk: Desk, redis: aioredis.Redis, spans
) -> None:
    await submit(redis, sample_signal("sig-1"))
    await admitted(desk, "sig-1")
    pending_trace = (await redis.xrange("signals.pending"))[0][1][b"traceparent"].split(b"-")[1]
    signal = await desk.decide("alice", "sig-1", approval_pb2.ACTION_APPROVE, reason="real hack")
    assert signal.state == approval_pb2.SIGNAL_STATE_APPROVED
    assert (signal.decision.trader, signal.decision.reason) == ("alice", "real hack")
    [(message, fields)] = await approved_messages(redis)
    assert fields[b"key"] == b"sig-1"
    assert message == signal
    assert [a.asset for a in message.adjustments] == ["BTC", "BNB"]
    assert fields[b"traceparent"].split(b"-")[1] == pending_trace  # the trace goes on to quoting
    finished = spans.get_finished_spans()
    [decide] = [s for s in finished if s.name == "approval.decide"]
    [rpc] = [s for s in finished if s.name == "approval.Decide"]
    assert format(decide.context.trace_id, "032x").encode() == pending_trace
    assert fields[b"traceparent"].split(b"-")[2] == format(decide.context.span_id, "016x").encode()
    assert [link.context.span_id for link in decide.links] == [
        rpc.context.span_id
    ]  # and names the trader's call
    assert await desk.pending_ids() == []


async def test_second_decision_is_refused_naming_who_decided(desk: Desk, redis: aioredis.Redis) -> None:
    await submit(redis, sample_signal("sig-1"))
    await admitted(desk, "sig-1")
    await desk.decide("alice", "sig-1", approval_pb2.ACTION_APPROVE)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await desk.decide("bob", "sig-1", approval_pb2.ACTION_REJECT)
    assert err.value.code() == FAILED_PRECONDITION
    assert "already approved by alice at 20" in (err.value.details() or "")
    assert len(await approved_messages(redis)) == 1


async def test_ten_concurrent_decisions_publish_exactly_one_approval(
    desk: Desk, redis: aioredis.Redis
) -> None:
    await submit(redis, sample_signal("sig-1"))
    await admitted(desk, "sig-1")
    traders = [f"trader{i}" for i in range(10)]
    for name in traders:
        await desk.login(name)
    results = await asyncio.gather(
        *(desk.decide(name, "sig-1", approval_pb2.ACTION_APPROVE) for name in traders), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, approval_pb2.Signal)]
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1 and len(losers) == 9
    assert {e.code() for e in losers} == {FAILED_PRECONDITION}
    assert all(f"by {winners[0].decision.trader} at" in (e.details() or "") for e in losers)
    messages = await approved_messages(redis)
    assert len(messages) == 1 and messages[0][0].decision.trader == winners[0].decision.trader
    decisions = [e for e in await SignalStore(redis).audit_log() if e.event == "signal.approved"]
    assert len(decisions) == 1


async def test_unauthenticated_calls_are_refused(desk: Desk, redis: aioredis.Redis) -> None:
    await submit(redis, sample_signal("sig-1"))
    await admitted(desk, "sig-1")
    request = approval_pb2.DecideRequest(signal_id="sig-1", action=approval_pb2.ACTION_APPROVE)
    for metadata in (
        [],
        [("authorization", "Bearer not-a-token")],
        [("authorization", "Basic YWxpY2U6eA==")],
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await desk.stub.Decide(request, metadata=metadata)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await desk.stub.ListPending(approval_pb2.ListPendingRequest())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in desk.stub.WatchPending(approval_pb2.WatchPendingRequest()):
            pass
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await desk.stub.Decide(request, metadata=desk.tokens["vera"])
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "viewer" in (err.value.details() or "")
    assert await desk.pending_ids() == ["sig-1"]
    assert await redis.xlen("signals.approved") == 0
    assert [e.event for e in await SignalStore(redis).audit_log()] == ["signal.new"]


@pytest.mark.parametrize("expiry_s", [0.6])
async def test_expiry_is_an_explicit_visible_outcome(desk: Desk, redis: aioredis.Redis) -> None:
    events: list[approval_pb2.SignalEvent] = []

    async def watch() -> None:
        async for event in desk.stub.WatchPending(
            approval_pb2.WatchPendingRequest(), metadata=desk.tokens["vera"]
        ):
            events.append(event)

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.2)
    await submit(redis, sample_signal("sig-1"))
    await eventually(lambda: _expired(redis, "sig-1"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await desk.decide("alice", "sig-1", approval_pb2.ACTION_APPROVE)
    assert err.value.code() == FAILED_PRECONDITION
    assert "expired at" in (err.value.details() or "")
    await eventually(lambda: _true(len(events) >= 2))
    watcher.cancel()
    kinds = [(e.kind, e.signal.id, e.signal.state) for e in events]
    assert kinds == [
        (approval_pb2.SignalEvent.KIND_NEW, "sig-1", approval_pb2.SIGNAL_STATE_PENDING),
        (approval_pb2.SignalEvent.KIND_EXPIRED, "sig-1", approval_pb2.SIGNAL_STATE_EXPIRED),
    ]
    [expired] = [e for e in await SignalStore(redis).audit_log() if e.event == "signal.expired"]
    assert expired.actor == "system:expiry"
    assert (expired.before["state"], expired.after["state"]) == ("PENDING", "EXPIRED")
    assert await redis.xlen("signals.approved") == 0
    assert await desk.pending_ids() == []


async def _expired(redis: aioredis.Redis, signal_id: str) -> bool:
    stored = await SignalStore(redis).get(signal_id)
    return stored is not None and stored.state == "EXPIRED"


async def _true(value: bool) -> bool:
    return value


async def test_audit_log_holds_every_event_in_order(desk: Desk, redis: aioredis.Redis) -> None:
    await submit(redis, sample_signal("sig-1", 0))
    await submit(redis, sample_signal("sig-2", 1))
    await admitted(desk, "sig-1", "sig-2")
    await desk.decide("alice", "sig-1", approval_pb2.ACTION_APPROVE)
    await desk.decide("bob", "sig-2", approval_pb2.ACTION_MARK_DUPLICATE, reason="old news")
    old = sample_signal("sig-3", 2, created_ms=int(time.time() * 1000) - 121_000)  # arrives already stale
    await submit(redis, old)
    await eventually(lambda: _expired(redis, "sig-3"))
    await submit(redis, sample_signal("sig-4", 1))
    await admitted(desk, "sig-4")
    modified = approval_pb2.AssetAdjustment(asset="ETH", widening_bps=20, skew_bps=4, horizon_minutes=45)
    await desk.decide("bob", "sig-4", approval_pb2.ACTION_MODIFY, modified=[modified])
    log = await SignalStore(redis).audit_log()
    assert [(e.event, e.signal_id, e.actor) for e in log] == [
        ("signal.new", "sig-1", "analysis"),
        ("signal.new", "sig-2", "analysis"),
        ("signal.approved", "sig-1", "alice"),
        ("signal.rejected", "sig-2", "bob"),
        ("signal.new", "sig-3", "analysis"),
        ("signal.expired", "sig-3", "system:expiry"),
        ("signal.new", "sig-4", "analysis"),
        ("signal.approved", "sig-4", "bob"),
    ]
    assert [e.at_ms for e in log] == sorted(e.at_ms for e in log)
    assert log[3].after["decision"]["action"] == "MARK_DUPLICATE"
    assert log[3].after["decision"]["reason"] == "old news"
    assert (
        log[7].before["adjustments"][0]["widening_bps"],
        log[7].after["adjustments"][0]["widening_bps"],
    ) == (
        12.0,
        20.0,
    )
    assert log[7].after["decision"]["action"] == "MODIFY"
    assert await redis.xlen(AUDIT_STREAM) == 8


async def test_modify_within_caps_and_refuse_beyond(desk: Desk, redis: aioredis.Redis) -> None:
    await submit(redis, sample_signal("sig-1"))
    await admitted(desk, "sig-1")
    too_wide = approval_pb2.AssetAdjustment(asset="BTC", widening_bps=40.5, horizon_minutes=30)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await desk.decide("alice", "sig-1", approval_pb2.ACTION_MODIFY, modified=[too_wide])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_widening_bps" in (err.value.details() or "") and "40" in (err.value.details() or "")
    unknown = approval_pb2.AssetAdjustment(asset="DOGE", widening_bps=5, horizon_minutes=30)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await desk.decide("alice", "sig-1", approval_pb2.ACTION_MODIFY, modified=[unknown])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "DOGE" in (err.value.details() or "")
    edit = approval_pb2.AssetAdjustment(asset="BTC", widening_bps=25, skew_bps=-10, horizon_minutes=60)
    signal = await desk.decide("alice", "sig-1", approval_pb2.ACTION_MODIFY, modified=[edit])
    [(message, _)] = await approved_messages(redis)
    assert message == signal
    btc, bnb = message.adjustments
    assert (btc.widening_bps, btc.skew_bps, btc.horizon_minutes, btc.vol_multiplier) == (25, -10, 60, 1.4)
    assert (bnb.widening_bps, bnb.horizon_minutes) == (10, 30)  # not edited: as proposed
    assert [m.asset for m in message.decision.modified] == ["BTC"]


async def test_redelivered_signal_is_admitted_once_and_bad_input_dead_lettered(
    desk: Desk, redis: aioredis.Redis
) -> None:
    await submit(redis, sample_signal("sig-1"))
    await submit(redis, sample_signal("sig-1"))
    await redis.xadd("signals.pending", {"data": b"\xff\xfenot a signal", "key": "junk"})
    await admitted(desk, "sig-1")
    await eventually(lambda: dead_letters(redis, "signals.pending"))
    [dead] = await dead_letters(redis, "signals.pending")
    assert dead["key"] == "junk" and "rejected" in dead["dead.reason"]
    assert await desk.pending_ids() == ["sig-1"]
    assert [e.event for e in await SignalStore(redis).audit_log()] == ["signal.new"]


async def test_watch_starts_with_the_pending_list_then_follows_changes(
    desk: Desk, redis: aioredis.Redis
) -> None:
    await submit(redis, sample_signal("sig-1"))
    await admitted(desk, "sig-1")
    call = desk.stub.WatchPending(approval_pb2.WatchPendingRequest(), metadata=desk.tokens["alice"])
    first = await call.read()
    assert (first.kind, first.signal.id) == (approval_pb2.SignalEvent.KIND_SNAPSHOT, "sig-1")
    await submit(redis, sample_signal("sig-2", 1))
    second = await asyncio.wait_for(call.read(), 5)
    assert (second.kind, second.signal.id) == (approval_pb2.SignalEvent.KIND_NEW, "sig-2")
    await desk.decide("bob", "sig-1", approval_pb2.ACTION_MARK_WRONG_DIRECTION)
    third = await asyncio.wait_for(call.read(), 5)
    assert (third.kind, third.signal.id, third.signal.decision.trader) == (
        approval_pb2.SignalEvent.KIND_DECIDED,
        "sig-1",
        "bob",
    )
    assert third.signal.state == approval_pb2.SIGNAL_STATE_REJECTED
    call.cancel()
