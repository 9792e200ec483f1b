import asyncio
from datetime import UTC, datetime, timedelta

from quoting.adjustments import Caps, SignalAdjustment, decay_steps
from services.quoting_adapter.clock import ManualClock
from services.quoting_adapter.live import Subscription
from tapewatch.quoting.v1 import quoting_pb2

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CAPS = Caps(100.0, 4.0, 50.0)


def test_one_step_at_a_time_walks_the_same_steps_as_the_whole_horizon():
    signals = [
        SignalAdjustment(
            "a", "BTC", 20, -10, 2.0, T0, timedelta(minutes=10), "exponential", timedelta(minutes=2)
        ),
        SignalAdjustment("b", "BTC", 8, 5, 1.0, T0 + timedelta(minutes=1), timedelta(minutes=5), "linear"),
    ]
    whole = decay_steps("BTC", signals, T0, CAPS)
    walked, t = [], T0
    while step := decay_steps("BTC", signals, t, CAPS, limit=1):
        assert len(step) == 1
        walked.append(step[0])
        t = step[0].as_of
    assert walked == whole and len(whole) > 10 and whole[-1].is_base


async def test_a_subscription_keeps_the_latest_params_of_each_asset():
    sub = Subscription(frozenset({"BTC", "ETH"}))
    for mult in (1.1, 1.2, 1.3):
        sub.offer(quoting_pb2.QuoteParams(asset="BTC", spread_multiplier=mult))
    sub.offer(quoting_pb2.QuoteParams(asset="SOL", spread_multiplier=2))  # not watched
    sub.offer(quoting_pb2.QuoteParams(asset="ETH", spread_multiplier=1.5))
    batch = await sub.next()
    assert [(p.asset, p.spread_multiplier) for p in batch] == [("BTC", 1.3), ("ETH", 1.5)]
    waiting = asyncio.ensure_future(sub.next())
    await asyncio.sleep(0)
    assert not waiting.done()
    sub.close()
    assert await waiting is None


async def test_a_manual_clock_wakes_sleepers_when_it_reaches_their_time():
    clock = ManualClock(T0)
    woke: list[datetime] = []

    async def sleeper(at: datetime) -> None:
        await clock.sleep_until(at)
        woke.append(clock.now())

    tasks = [asyncio.ensure_future(sleeper(T0 + timedelta(seconds=s))) for s in (5, 20)]
    await asyncio.sleep(0)
    clock.advance(timedelta(seconds=10))
    await asyncio.sleep(0)
    assert woke == [T0 + timedelta(seconds=10)]
    clock.set(T0 + timedelta(minutes=1))
    await asyncio.gather(*tasks)
    assert woke == [T0 + timedelta(seconds=10), T0 + timedelta(minutes=1)]
