"""`tapewatch engine`: the reference market-making engine (quoting.engine) quoting one asset against the
quoting adapter.

It follows WatchQuoteParams for its asset (reconnecting with backoff; the last params stay in force
while the link is down, base quoting until the first arrive), pushes each mid with PushMarketState and
prints one JSON line per quote. Mids come from a 1-minute bars CSV (time, close, volume) replayed at
--speed bars per second, or from stdin (--prices -): one `mid` or `time,mid` per line, quoted as they
come.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import grpc

from quoting.adjustments import QuoteAdjustment
from quoting.engine import Bar, EngineQuote, MarketMaker, load_bars
from services.quoting_adapter.convert import params_from_proto, timestamp
from services.quoting_adapter.settings import EngineSettings
from services.runtime.interceptors import insecure_channel
from services.runtime.logs import setup_logging
from tapewatch.quoting.v1 import quoting_pb2, quoting_pb2_grpc

log = logging.getLogger("tapewatch.engine")


class ParamsFeed:
    """The adapter's latest params for some assets, kept current by one WatchQuoteParams stream."""

    def __init__(self, stub: quoting_pb2_grpc.QuotingServiceStub, assets: Iterable[str]) -> None:
        self.stub = stub
        self.assets = [a.upper() for a in assets]
        self.latest: dict[str, QuoteAdjustment] = {}
        self.updates = 0
        self.ready = asyncio.Event()  # the first params arrived
        self.changed = asyncio.Event()  # set on every update; clear it to wait for the next

    def params(self, asset: str) -> QuoteAdjustment:
        asset = asset.upper()
        return self.latest.get(asset) or QuoteAdjustment(asset=asset)

    async def run(self, max_backoff_s: float = 5.0) -> None:
        """Until cancelled: watch, and on a broken stream reconnect with exponential backoff."""
        backoff = 0.1
        while True:
            call = self.stub.WatchQuoteParams(quoting_pb2.WatchQuoteParamsRequest(assets=self.assets))
            try:
                async for message in call:
                    try:
                        self.latest[message.asset] = params_from_proto(message)
                    except ValueError as exc:  # keep the last good params rather than quote on garbage
                        log.error("ignoring invalid params for %s: %s", message.asset, exc)
                        continue
                    self.updates += 1
                    self.ready.set()
                    self.changed.set()
                    backoff = 0.1
            except grpc.aio.AioRpcError as exc:
                log.warning("quote params stream: %s; retrying in %.1f s", exc.code().name, backoff)
            finally:
                call.cancel()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff_s)


def quote_line(
    asset: str, when: datetime, mid: float, mm: MarketMaker, q: EngineQuote, p: QuoteAdjustment
) -> dict[str, Any]:
    spread = (q.ask - q.bid) / mid * 10_000 if q.bid is not None and q.ask is not None else None
    return {
        "asset": asset,
        "time": when.isoformat(),
        "mid": mid,
        "bid": q.bid,
        "ask": q.ask,
        "spread_bps": round(spread, 3) if spread is not None else None,
        "sigma_rel": mm.vol.sigma_rel,
        "inventory": mm.inventory,
        "spread_multiplier": p.spread_multiplier,
        "bid_widening_bps": p.bid_widening_bps,
        "ask_widening_bps": p.ask_widening_bps,
        "skew_bps": p.skew_bps,
        "signal_ids": list(p.signal_ids),
        "override": p.override_active,
        "kill_switch": p.kill_switch,
    }


async def replay(bars: list[Bar], speed: float, limit: int = 0) -> AsyncIterator[tuple[datetime, float]]:
    """(bar time, close), paced at `speed` bars per second (0: unpaced)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i, bar in enumerate(bars[:limit] if limit else bars):
        if speed > 0:
            await asyncio.sleep(max(0.0, start + i / speed - loop.time()))
        yield bar.time, bar.close


async def stdin_mids() -> AsyncIterator[tuple[datetime, float]]:
    """`mid` or `time,mid` per line; a line without a time is stamped on arrival."""
    while line := await asyncio.to_thread(sys.stdin.readline):
        text = line.strip()
        if not text or text.startswith(("#", "time")):
            continue
        when_text, _, mid_text = text.rpartition(",")
        try:
            when = datetime.fromisoformat(when_text) if when_text else datetime.now(UTC)
            yield (when if when.tzinfo else when.replace(tzinfo=UTC)), float(mid_text)
        except ValueError:
            log.warning("ignoring line %r: want `mid` or `time,mid`", text)


async def run_engine(
    settings: EngineSettings,
    mids: AsyncIterator[tuple[datetime, float]],
    emit: Callable[[dict[str, Any]], None],
    feed: ParamsFeed | None = None,
    ready_timeout_s: float = 10.0,
) -> MarketMaker:
    """Quote every mid with the adapter's latest params; returns the engine's final state. A given feed
    (for its asset) is run here, and its stub used for PushMarketState too."""
    asset = settings.asset.upper()
    mm = MarketMaker(settings.engine)
    channel = None
    if feed is None:
        channel = insecure_channel(settings.quoting_addr, "engine")
        feed = ParamsFeed(quoting_pb2_grpc.QuotingServiceStub(channel), [asset])
    stub = feed.stub
    watching = asyncio.create_task(feed.run(), name="engine-params")
    try:
        try:
            await asyncio.wait_for(feed.ready.wait(), ready_timeout_s)
        except TimeoutError:
            log.warning(
                "no params from %s after %.0f s: quoting at base", settings.quoting_addr, ready_timeout_s
            )
        async for bar_time, mid in mids:
            stamp = datetime.now(UTC) if settings.stamp == "now" else bar_time
            try:
                await stub.PushMarketState(
                    quoting_pb2.MarketState(asset=asset, mid=mid, time=timestamp(stamp)), timeout=2
                )
            except grpc.aio.AioRpcError as exc:  # the market state is for analysis: keep quoting
                log.warning("PushMarketState failed: %s %s", exc.code().name, exc.details())
            params = feed.params(asset)
            emit(quote_line(asset, stamp, mid, mm, mm.on_mid(bar_time, mid, params), params))
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        if channel is not None:
            await channel.close()
    return mm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tapewatch engine", description=__doc__)
    parser.add_argument("--asset", help="ticker to quote (default DOGE)")
    parser.add_argument("--prices", help="bars CSV (time, close, volume), or - for mids on stdin")
    parser.add_argument("--speed", type=float, help="bars per second (default 60; 0: as fast as possible)")
    parser.add_argument("--limit", type=int, help="bars to quote (default all)")
    parser.add_argument("--stamp", choices=("now", "original"), help="time pushed with each mid")
    parser.add_argument("--every", type=int, default=1, help="print every Nth quote")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None and k != "every"}
    settings = EngineSettings.load(**overrides)
    if str(settings.prices) != "-" and not settings.prices.is_file():
        print(
            f"tapewatch engine: no prices file {settings.prices} (--prices CSV, or - for stdin)",
            file=sys.stderr,
        )
        return 2
    setup_logging("engine", settings.log_level, settings.log_format)
    count = 0

    def emit(line: dict[str, Any]) -> None:
        nonlocal count
        count += 1
        if count % max(1, args.every) == 0:
            print(json.dumps(line), flush=True)

    async def go() -> None:
        if str(settings.prices) == "-":
            mids = stdin_mids()
        else:
            mids = replay(load_bars(settings.prices), settings.speed, settings.limit)
        task = asyncio.create_task(run_engine(settings, mids, emit))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            mm = await task
            print(
                json.dumps({"quotes": count, "inventory": mm.inventory, "fills": mm.fills}), file=sys.stderr
            )

    asyncio.run(go())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
