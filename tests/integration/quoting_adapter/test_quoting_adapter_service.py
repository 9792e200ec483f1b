"""The quoting adapter on a real gRPC server and a real Redis Stack: approved signals in, params out."""

from __future__ import annotations

import asyncio
import math
import time
from datetime import timedelta

import grpc
import pytest
import redis.asyncio as aioredis
from opentelemetry import trace
from quoting_adapter_support import (
    BEARISH,
    BULLISH,
    Running,
    StartAdapter,
    Watcher,
    approved_signal,
    publish_signal,
)

from services.quoting_adapter.clock import ManualClock
from services.quoting_adapter.convert import DecayPolicy, signal_adjustments, timestamp
from services.runtime.streams import dead_letters, publish
from tapewatch.approval.v1 import approval_pb2
from tapewatch.quoting.v1 import quoting_pb2

pytestmark = pytest.mark.integration


def sides(p: quoting_pb2.QuoteParams) -> tuple[float, float, float, float]:
    return (p.spread_multiplier, p.bid_widening_bps, p.ask_widening_bps, p.skew_bps)


def is_base(p: quoting_pb2.QuoteParams) -> bool:
    return sides(p) == (1.0, 0.0, 0.0, 0.0) and not p.signal_ids and not p.override_active


async def wait_for(check, timeout_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_approved_signal_changes_params_and_reaches_a_watcher(
    quoting: Running, redis: aioredis.Redis, clock: ManualClock, spans
) -> None:
    watcher = Watcher.open(quoting.stub, "DOGE")
    assert is_base(await watcher.next())  # the current params come first
    # bearish: quotes shift down 10 bps and the bid widens by another min(10, 20)
    signal = approved_signal("sig-1", clock.now(), ("DOGE", 20, 10, 1.5, 30, BEARISH))
    with trace.get_tracer("test").start_as_current_span("approval.decide") as root:
        sent = time.perf_counter()
        await publish_signal(redis, signal)
    pushed = await watcher.until(lambda p: bool(p.signal_ids))
    print(f"\nsignals.approved -> WatchQuoteParams: {(watcher.received[-1][0] - sent) * 1000:.2f} ms")
    watcher.close()

    assert sides(pushed) == pytest.approx((1.5, 30.0, 20.0, -10.0))
    assert list(pushed.signal_ids) == ["sig-1"]
    assert pushed.valid_until.ToDatetime(tzinfo=clock.now().tzinfo) == clock.now() + timedelta(minutes=30)
    assert (await quoting.params("doge")) == pushed  # asset names are case-insensitive
    assert is_base(await quoting.params("BTC"))

    # the trace of the approval reaches quoting: publish -> consume -> apply
    def by_name(name: str):  # type: ignore[no-untyped-def]
        return [s for s in spans.get_finished_spans() if s.name == name]

    [apply] = by_name("quoting.apply_signal")
    [consume] = by_name("quoting consume signals.approved")
    [produce] = by_name("publish signals.approved")
    assert apply.context.trace_id == root.get_span_context().trace_id
    assert apply.parent.span_id == consume.context.span_id
    assert consume.parent.span_id == produce.context.span_id
    assert apply.attributes["tapewatch.signal_id"] == "sig-1"


async def test_signals_on_one_asset_combine_and_direction_sets_the_skew_sign(
    quoting: Running, redis: aioredis.Redis, clock: ManualClock
) -> None:
    # skews given with the "wrong" sign follow the approved direction; the widest side wins per side
    await publish_signal(redis, approved_signal("bear", clock.now(), ("ETH", 10, 8, 1.2, 30, BEARISH)))
    await publish_signal(redis, approved_signal("bull", clock.now(), ("ETH", 20, -4, 2.0, 30, BULLISH)))

    async def both() -> bool:
        return len((await quoting.params("ETH")).signal_ids) == 2

    await wait_for(both)
    p = await quoting.params("ETH")
    # bear: bid 10 + 8, ask 10, skew -8; bull: bid 20, ask 20 + 4, skew +4
    assert sides(p) == pytest.approx((2.0, 20.0, 24.0, -4.0))


async def test_decay_returns_the_asset_to_base(
    quoting: Running, redis: aioredis.Redis, clock: ManualClock
) -> None:
    watcher = Watcher.open(quoting.stub, "DOGE")
    await watcher.next()
    await publish_signal(redis, approved_signal("sig-d", clock.now(), ("DOGE", 20, 10, 2.0, 1, BEARISH)))
    full = await watcher.until(lambda p: bool(p.signal_ids))
    assert sides(full) == pytest.approx((2.0, 30.0, 20.0, -10.0))

    clock.advance(timedelta(seconds=30))  # linear decay: half way
    half = await watcher.next()
    assert sides(half) == pytest.approx((1.5, 15.0, 10.0, -5.0))
    assert sides(await quoting.params()) == pytest.approx((1.5, 15.0, 10.0, -5.0))

    clock.advance(timedelta(seconds=15))
    three_quarters = await watcher.next()
    assert sides(three_quarters) == pytest.approx((1.25, 7.5, 5.0, -2.5))

    clock.advance(timedelta(seconds=15))  # the horizon's end
    end = await watcher.next()
    assert is_base(end) and not end.HasField("valid_until")
    assert is_base(await quoting.params())
    watcher.close()

    async def pruned() -> bool:
        return await redis.hlen("tw:quoting:signals:DOGE") == 0

    await wait_for(pruned)


async def test_exponential_decay_halves_at_the_half_life(
    start_adapter: StartAdapter, redis: aioredis.Redis, clock: ManualClock
) -> None:
    quoting = await start_adapter(decay="exponential", half_life_fraction=0.25)
    await publish_signal(redis, approved_signal("sig-e", clock.now(), ("DOGE", 40, 0, 1.0, 4, BEARISH)))

    async def applied() -> bool:
        return bool((await quoting.params()).signal_ids)

    await wait_for(applied)
    clock.advance(timedelta(minutes=1))  # one half-life (a quarter of 4 minutes)
    assert (await quoting.params()).bid_widening_bps == pytest.approx(20.0)
    clock.advance(timedelta(minutes=1))
    assert (await quoting.params()).ask_widening_bps == pytest.approx(10.0)


async def test_restart_keeps_active_adjustments(
    start_adapter: StartAdapter, redis: aioredis.Redis, clock: ManualClock
) -> None:
    first = await start_adapter()
    await publish_signal(redis, approved_signal("sig-r", clock.now(), ("BTC", 12, 0, 1.3, 30, BEARISH)))

    async def applied() -> bool:
        return bool((await first.params("BTC")).signal_ids)

    await wait_for(applied)
    before = await first.params("BTC")
    await first.stop()

    clock.advance(timedelta(minutes=3))
    second = await start_adapter()
    watcher = Watcher.open(second.stub, "BTC")
    snapshot = await watcher.next()
    watcher.close()
    after = await second.params("BTC")
    assert list(after.signal_ids) == ["sig-r"] and after.valid_until == before.valid_until
    # the decay went on while the adapter was down: 27 of 30 minutes left
    assert sides(after) == pytest.approx((1 + 0.3 * 0.9, 12 * 0.9, 12 * 0.9, 0.0))
    assert sides(snapshot) == pytest.approx(sides(after))


async def test_the_kill_switch_stays_latched_across_a_restart(
    start_adapter: StartAdapter, redis: aioredis.Redis, clock: ManualClock
) -> None:
    first = await start_adapter()
    await first.stub.ClearAll(quoting_pb2.ClearAllRequest(reason="halt", requested_by="rm-ann"))
    await first.stop()
    await publish_signal(redis, approved_signal("after-kill", clock.now(), ("BTC", 12, 0, 1.3, 30, BEARISH)))
    second = await start_adapter()

    async def stored() -> bool:
        return await redis.hexists("tw:quoting:signals:BTC", "after-kill")

    await wait_for(stored)
    p = await second.params("BTC")
    assert p.kill_switch and sides(p) == (1.0, 0.0, 0.0, 0.0)


async def test_kill_switch_clears_all_and_stays_latched_until_released(
    quoting: Running, redis: aioredis.Redis, clock: ManualClock
) -> None:
    await publish_signal(redis, approved_signal("k-doge", clock.now(), ("DOGE", 20, 0, 1.5, 30, BEARISH)))
    await publish_signal(redis, approved_signal("k-btc", clock.now(), ("BTC", 15, 5, 1.0, 30, BULLISH)))
    await quoting.stub.SetOverride(
        quoting_pb2.SetOverrideRequest(
            asset="ETH", spread_multiplier=2, until=timestamp(clock.now() + timedelta(hours=1))
        )
    )

    async def applied() -> bool:
        return all([(await quoting.params(a)).signal_ids for a in ("DOGE", "BTC")])

    await wait_for(applied)
    watcher = Watcher.open(quoting.stub)  # every asset
    snapshot = {(await watcher.next()).asset for _ in range(len(quoting.adapter.live.known_assets()))}
    assert {"DOGE", "BTC", "ETH"} <= snapshot

    reply = await quoting.stub.ClearAll(
        quoting_pb2.ClearAllRequest(reason="feed looks wrong", requested_by="rm-ann")
    )
    assert reply.cleared == 3
    killed = {}
    while set(killed) != snapshot:
        p = await watcher.next()
        killed[p.asset] = p
    watcher.close()
    assert all(p.kill_switch and sides(p) == (1.0, 0.0, 0.0, 0.0) for p in killed.values())
    for asset in ("DOGE", "BTC", "ETH", "SOL"):
        p = await quoting.params(asset)
        assert p.kill_switch and sides(p) == (1.0, 0.0, 0.0, 0.0) and not p.signal_ids
    kill = await redis.hgetall("tw:quoting:kill")
    assert kill[b"by"] == b"rm-ann" and kill[b"reason"] == b"feed looks wrong"
    audit = await quoting.adapter.store.audit()
    assert audit[-1]["event"] == "kill_switch" and audit[-1]["by"] == "rm-ann" and audit[-1]["cleared"] == "3"

    # latched: a signal approved now is kept but not applied; overrides are refused
    await publish_signal(redis, approved_signal("k-late", clock.now(), ("SOL", 10, 0, 1.0, 30, BEARISH)))

    async def stored() -> bool:
        return await redis.hexists("tw:quoting:signals:SOL", "k-late")

    await wait_for(stored)
    assert (await quoting.params("SOL")).kill_switch and is_base(await quoting.params("SOL"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await quoting.stub.SetOverride(
            quoting_pb2.SetOverrideRequest(
                asset="DOGE", spread_multiplier=2, until=timestamp(clock.now() + timedelta(hours=1))
            )
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await quoting.stub.ReleaseKillSwitch(quoting_pb2.ReleaseKillSwitchRequest(requested_by="rm-ann"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    released = await quoting.stub.ReleaseKillSwitch(
        quoting_pb2.ReleaseKillSwitchRequest(reason="feed fixed", requested_by="rm-bob")
    )
    assert released.released and released.active_signals == 1
    assert list((await quoting.params("SOL")).signal_ids) == ["k-late"]
    assert not (await quoting.params("DOGE")).kill_switch and is_base(await quoting.params("DOGE"))
    assert is_base(await quoting.params("ETH"))  # the override stays cleared
    again = await quoting.stub.ReleaseKillSwitch(
        quoting_pb2.ReleaseKillSwitchRequest(reason="twice", requested_by="rm-bob")
    )
    assert not again.released


async def test_override_wins_over_signals_until_it_ends(
    quoting: Running, redis: aioredis.Redis, clock: ManualClock
) -> None:
    await publish_signal(redis, approved_signal("o-1", clock.now(), ("DOGE", 20, 10, 1.5, 30, BEARISH)))

    async def applied() -> bool:
        return bool((await quoting.params()).signal_ids)

    await wait_for(applied)
    watcher = Watcher.open(quoting.stub, "DOGE")
    await watcher.next()
    set_reply = await quoting.stub.SetOverride(
        quoting_pb2.SetOverrideRequest(
            asset="DOGE",
            spread_multiplier=1.2,
            bid_widening_bps=5,
            ask_widening_bps=6,
            skew_bps=1,
            until=timestamp(clock.now() + timedelta(minutes=10)),
            reason="desk view",
            requested_by="rm-ann",
        )
    )
    assert set_reply.override_active and sides(set_reply) == pytest.approx((1.2, 5.0, 6.0, 1.0))
    assert (await watcher.until(lambda p: p.override_active)) == set_reply
    await publish_signal(redis, approved_signal("o-2", clock.now(), ("DOGE", 40, 0, 3.0, 30, BEARISH)))

    async def both() -> bool:
        return len((await quoting.params()).signal_ids) == 2

    await wait_for(both)
    p = await quoting.params()
    assert p.override_active and sides(p) == pytest.approx((1.2, 5.0, 6.0, 1.0))

    clock.advance(timedelta(minutes=10))  # the override ends; the signals are back, 20 of 30 minutes left
    back = await watcher.until(lambda p: not p.override_active)
    watcher.close()
    assert sides(back) == pytest.approx((1 + 2.0 * 2 / 3, 40 * 2 / 3, 40 * 2 / 3, -10 * 2 / 3))
    assert sides(await quoting.params()) == pytest.approx(sides(back))


def override(**kw: object) -> quoting_pb2.SetOverrideRequest:
    return quoting_pb2.SetOverrideRequest(**({"asset": "DOGE", "spread_multiplier": 1.5} | kw))  # type: ignore[arg-type]


BAD_OVERRIDES = {
    "multiplier below 1": ({"spread_multiplier": 0.5}, "spread_multiplier"),
    "multiplier above the cap": ({"spread_multiplier": 9.0}, "spread_multiplier"),
    "negative widening": ({"bid_widening_bps": -1.0}, "bid_widening_bps"),
    "widening above the cap": ({"ask_widening_bps": 500.0}, "ask_widening_bps"),
    "NaN widening": ({"bid_widening_bps": math.nan}, "finite"),
    "skew above the cap": ({"skew_bps": -80.0}, "skew_bps"),
    "no until": ({}, "until is required"),
    "until in the past": ({"until": -60}, "not in the future"),
    "until over a day away": ({"until": 86_400 + 60}, "away"),
    "empty asset": ({"asset": " "}, "asset is empty"),
    "unknown asset": ({"asset": "NOPE"}, "unknown asset"),
    "not a ticker": ({"asset": "BTC/USDT"}, "not a ticker"),
}


@pytest.mark.parametrize("case", list(BAD_OVERRIDES))
async def test_bad_override_rejected_with_reason(quoting: Running, clock: ManualClock, case: str) -> None:
    fields, words = BAD_OVERRIDES[case]
    fields = dict(fields)
    if "until" in fields:
        fields["until"] = timestamp(clock.now() + timedelta(seconds=float(fields["until"])))  # type: ignore[arg-type]
    elif case != "no until":
        fields["until"] = timestamp(clock.now() + timedelta(minutes=5))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await quoting.stub.SetOverride(override(**fields))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in (err.value.details() or "")
    assert is_base(await quoting.params("DOGE"))


async def test_other_bad_requests_rejected_with_reason(quoting: Running, clock: ManualClock) -> None:
    cases = [
        (quoting.stub.GetQuoteParams(quoting_pb2.GetQuoteParamsRequest(asset="")), "asset is empty"),
        (quoting.stub.PushMarketState(quoting_pb2.MarketState(asset="DOGE", mid=0.0)), "mid must be"),
        (quoting.stub.PushMarketState(quoting_pb2.MarketState(asset="DOGE", mid=math.inf)), "mid must be"),
        (quoting.stub.PushMarketState(quoting_pb2.MarketState(asset="", mid=1.0)), "asset is empty"),
        (
            quoting.stub.PushMarketState(
                quoting_pb2.MarketState(
                    asset="DOGE", mid=1.0, time=timestamp(clock.now() + timedelta(hours=1))
                )
            ),
            "in the future",
        ),
    ]
    for call, words in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert words in (err.value.details() or "")
    watch = quoting.stub.WatchQuoteParams(quoting_pb2.WatchQuoteParamsRequest(assets=["DOGE", "BAD ASSET"]))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await watch.read()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a ticker" in (
        err.value.details() or ""
    )


async def test_bad_signals_are_dead_lettered_and_change_nothing(
    quoting: Running, redis: aioredis.Redis, clock: ManualClock
) -> None:
    pending = approved_signal("bad-pending", clock.now())
    pending.state = approval_pb2.SIGNAL_STATE_PENDING
    await publish_signal(redis, pending)
    await publish_signal(redis, approved_signal("bad-horizon", clock.now(), ("DOGE", 10, 0, 1.0, 0, BEARISH)))
    await publish_signal(redis, approved_signal("bad-asset", clock.now(), ("", 10, 0, 1.0, 30, BEARISH)))
    await publish(redis, "signals.approved", b"\xff\xfe not a protobuf", "bad-bytes")

    async def all_dead() -> bool:
        return len(await dead_letters(redis, "signals.approved")) == 4

    await wait_for(all_dead)
    reasons = {d["key"]: d["dead.reason"] for d in await dead_letters(redis, "signals.approved")}
    assert "PENDING, not APPROVED" in reasons["bad-pending"]
    assert "horizon_minutes" in reasons["bad-horizon"]
    assert "asset is empty" in reasons["bad-asset"]
    assert "not a tapewatch.approval.v1.Signal" in reasons["bad-bytes"]
    assert is_base(await quoting.params("DOGE"))


async def test_redelivered_signal_is_not_applied_twice(
    quoting: Running, redis: aioredis.Redis, clock: ManualClock
) -> None:
    signal = approved_signal("sig-twice", clock.now(), ("DOGE", 20, 0, 1.0, 10, BEARISH))
    await publish_signal(redis, signal)

    async def applied() -> bool:
        return bool((await quoting.params()).signal_ids)

    await wait_for(applied)
    first = await quoting.params()
    clock.advance(timedelta(minutes=5))
    await publish_signal(redis, signal)  # delivered again (e.g. the approval service retried)

    async def consumed_twice() -> bool:
        return quoting.adapter.consumer.stats["acked"] == 2

    await wait_for(consumed_twice)
    again = await quoting.params()
    assert again.valid_until == first.valid_until  # the decay did not restart
    assert again.bid_widening_bps == pytest.approx(10.0)  # half of 20 after 5 of 10 minutes
    events = [e for e in await quoting.adapter.store.audit() if e["event"] == "signal_applied"]
    assert [e["signal_id"] for e in events] == ["sig-twice"]

    # not even after the kill switch dropped it
    await quoting.stub.ClearAll(quoting_pb2.ClearAllRequest(reason="test", requested_by="rm"))
    await quoting.stub.ReleaseKillSwitch(
        quoting_pb2.ReleaseKillSwitchRequest(reason="test", requested_by="rm")
    )
    await publish_signal(redis, signal)

    async def consumed_thrice() -> bool:
        return quoting.adapter.consumer.stats["acked"] == 3

    await wait_for(consumed_thrice)
    assert is_base(await quoting.params())


async def test_instances_stay_coherent_through_redis(
    start_adapter: StartAdapter, redis: aioredis.Redis, clock: ManualClock
) -> None:
    a, b = await start_adapter(), await start_adapter()
    watcher = Watcher.open(b.stub, "XRP")
    await watcher.next()
    await a.stub.SetOverride(
        quoting_pb2.SetOverrideRequest(
            asset="XRP", spread_multiplier=2.5, until=timestamp(clock.now() + timedelta(minutes=5))
        )
    )
    seen = await watcher.next()
    assert seen.override_active and seen.spread_multiplier == 2.5
    assert (await b.params("XRP")).spread_multiplier == 2.5

    await publish_signal(redis, approved_signal("sig-ab", clock.now(), ("SOL", 10, 0, 1.0, 30, BEARISH)))

    async def on_both() -> bool:
        return all([list((await x.params("SOL")).signal_ids) == ["sig-ab"] for x in (a, b)])

    await wait_for(on_both)
    assert a.adapter.consumer.stats["acked"] + b.adapter.consumer.stats["acked"] == 1  # one consumer group

    await b.stub.ClearAll(quoting_pb2.ClearAllRequest(reason="test", requested_by="rm"))
    assert (await a.params("SOL")).kill_switch  # answered from a's cache, refreshed by the notice
    watcher.close()


async def test_push_market_state_appends_capped_mids(
    start_adapter: StartAdapter, redis: aioredis.Redis, clock: ManualClock
) -> None:
    quoting = await start_adapter(market_maxlen=100)
    then = clock.now() - timedelta(days=400)  # a replay may push past times
    await quoting.stub.PushMarketState(quoting_pb2.MarketState(asset="pepe", mid=0.25, time=timestamp(then)))
    await quoting.stub.PushMarketState(quoting_pb2.MarketState(asset="PEPE", mid=0.26))  # no time: now
    entries = await redis.xrange("tw:market:PEPE")
    assert [(f[b"mid"], int(f[b"time_ms"])) for _, f in entries] == [
        (b"0.25", int(then.timestamp() * 1000)),
        (b"0.26", int(clock.now().timestamp() * 1000)),
    ]
    assert "PEPE" in quoting.adapter.live.known_assets()  # now a known asset: overrides allowed
    await quoting.stub.SetOverride(
        override(asset="PEPE", until=timestamp(clock.now() + timedelta(minutes=1)))
    )

    for i in range(400):
        await quoting.stub.PushMarketState(quoting_pb2.MarketState(asset="PEPE", mid=1.0 + i / 1000))
    assert 100 <= await redis.xlen("tw:market:PEPE") < 300  # capped (approximately, as Redis trims)


async def test_without_change_notices_reads_go_to_redis_and_health_says_so(
    quoting: Running, clock: ManualClock
) -> None:
    listener = quoting.adapter._tasks[0]
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)
    assert not quoting.adapter.live.synced
    assert not await quoting.server.check_once()  # NOT_SERVING: the cache may be stale
    # a write this instance hears nothing about (as from another instance while the notices are lost)
    [adjustment] = signal_adjustments(
        approved_signal("quiet", clock.now(), ("DOGE", 10, 0, 1.0, 30, BEARISH)),
        clock.now(),
        DecayPolicy("linear", 0.2, timedelta(days=1)),
    )
    await quoting.adapter.store.apply_signal([adjustment], "story", "trader")
    assert list((await quoting.params("DOGE")).signal_ids) == ["quiet"]
