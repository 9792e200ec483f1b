"""Quoting adapter latency: GetQuoteParams on loopback, and WatchQuoteParams fan-out to many subscribers.

Starts a Redis Stack and the quoting adapter as separate processes, as deployed, with two approved
signals active on the quoted asset, then measures
(1) GetQuoteParams round trips, one at a time (p50/p99), against the reference: the same call to a bare
    grpc.aio server in its own process whose handler returns an empty QuoteParams (no interceptors, no
    state), so `vs_bare_grpc` says what the service adds;
(2) fan-out: --subscribers WatchQuoteParams streams; each change is a SetOverride, and a delivery is
    the time from sending it to a subscriber reading the new params (so it includes the SetOverride
    call, the Redis write and the change notice); p50/p99 over every (change, subscriber) pair;
(3) the same fan-out for approved signals published to `signals.approved` (consume, store, push).
Subscribers run in this process, on one event loop: what they cost to read is in the figures too.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import redis.asyncio as aioredis

from services.bench.machine import machine, percentile
from services.pipeline.supervisor import ServiceProcess
from services.quoting_adapter.convert import timestamp
from services.runtime.interceptors import insecure_channel
from services.runtime.redis_server import RedisStack, free_port
from services.runtime.streams import publish
from tapewatch.analysis.v1 import analysis_pb2
from tapewatch.approval.v1 import approval_pb2
from tapewatch.quoting.v1 import quoting_pb2, quoting_pb2_grpc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calls", type=int, default=5000, help="GetQuoteParams calls, one at a time")
    parser.add_argument("--subscribers", type=int, default=100, help="WatchQuoteParams streams")
    parser.add_argument("--changes", type=int, default=100, help="overrides pushed to every subscriber")
    parser.add_argument("--signals", type=int, default=30, help="approved signals pushed to every subscriber")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between changes")


def _signal(sid: str, asset: str, widening: float) -> approval_pb2.Signal:
    signal = approval_pb2.Signal(id=sid, state=approval_pb2.SIGNAL_STATE_APPROVED)
    signal.decision.decided_at.FromDatetime(datetime.now(UTC))
    signal.adjustments.add(
        asset=asset,
        widening_bps=widening,
        skew_bps=5,
        vol_multiplier=1.5,
        horizon_minutes=30,
        direction=analysis_pb2.DIRECTION_BEARISH,
    )
    return signal


def _stats(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None, "samples": 0}
    return {
        "p50_ms": round(percentile(values, 50), 3),
        "p99_ms": round(percentile(values, 99), 3),
        "max_ms": round(max(values), 3),
        "samples": len(values),
    }


def _ratio(a: float | int | None, b: float | int | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


async def _unary(stub: quoting_pb2_grpc.QuotingServiceStub, asset: str, calls: int) -> list[float]:
    request = quoting_pb2.GetQuoteParamsRequest(asset=asset)
    for _ in range(200):  # warm-up
        await stub.GetQuoteParams(request, timeout=5)
    gc.collect()
    gc.freeze()  # the client's own GC pauses are not the service's latency
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        await stub.GetQuoteParams(request, timeout=5)
        out.append((time.perf_counter() - t0) * 1000)
    return out


class _Fanout:
    """Subscribers that note when each change (its id read from the params) reaches them."""

    def __init__(self, stub: quoting_pb2_grpc.QuotingServiceStub, n: int, assets: list[str]) -> None:
        self.calls = [
            stub.WatchQuoteParams(quoting_pb2.WatchQuoteParamsRequest(assets=assets)) for _ in range(n)
        ]
        self.arrivals: dict[int, list[float]] = defaultdict(list)
        self.started = 0
        self.ready = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    @staticmethod
    def change_id(p: quoting_pb2.QuoteParams) -> int | None:
        if p.override_active:
            return round(p.bid_widening_bps * 100)
        ids = [int(s.rsplit("-", 1)[1]) for s in p.signal_ids if s.startswith("fan-")]
        return -max(ids) if ids else None

    async def _read(self, call: Any, snapshot: int) -> None:
        for _ in range(snapshot):
            await call.read()
        self.started += 1
        if self.started == len(self.calls):
            self.ready.set()
        seen: set[int] = set()
        while (p := await call.read()) is not grpc.aio.EOF:
            now = time.perf_counter()
            key = self.change_id(p)
            if key is not None and key not in seen:  # the first arrival; later ones are decay steps
                seen.add(key)
                self.arrivals[key].append(now)

    async def start(self, snapshot: int) -> None:
        self.tasks = [asyncio.create_task(self._read(c, snapshot)) for c in self.calls]
        await asyncio.wait_for(self.ready.wait(), 30)

    async def stop(self) -> None:
        for call in self.calls:
            call.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def delays(self, sent: dict[int, float]) -> tuple[list[float], int]:
        """Delivery times in ms, and how many (change, subscriber) pairs were not seen: superseded by a
        later change before that subscriber read it (streams send the latest params), or never arrived."""
        out = [(t - sent[key]) * 1000 for key, times in self.arrivals.items() if key in sent for t in times]
        return out, len(sent) * len(self.calls) - len(out)


async def _overrides(
    stub: quoting_pb2_grpc.QuotingServiceStub, fan: _Fanout, changes: int, interval: float
) -> tuple[dict[int, float], list[float]]:
    sent: dict[int, float] = {}
    rpc = []
    for i in range(1, changes + 1):
        until = timestamp(datetime.now(UTC) + timedelta(hours=1))
        request = quoting_pb2.SetOverrideRequest(
            asset="BTC", spread_multiplier=1.0, bid_widening_bps=i / 100, until=until, requested_by="bench"
        )
        sent[i] = t0 = time.perf_counter()
        await stub.SetOverride(request, timeout=5)
        rpc.append((time.perf_counter() - t0) * 1000)
        await asyncio.sleep(interval)
    return sent, rpc


async def _signals(redis: aioredis.Redis, n: int, interval: float) -> dict[int, float]:
    sent: dict[int, float] = {}
    for i in range(1, n + 1):
        signal = _signal(f"fan-{i}", "ETH", 10 + i / 100)
        sent[-i] = time.perf_counter()
        await publish(redis, "signals.approved", signal.SerializeToString(), signal.id)
        await asyncio.sleep(interval)
    return sent


def _serve_bare(address: str) -> None:
    """The reference: a grpc.aio server whose GetQuoteParams does nothing."""

    class Bare(quoting_pb2_grpc.QuotingServiceServicer):
        async def GetQuoteParams(
            self, request: quoting_pb2.GetQuoteParamsRequest, context: grpc.aio.ServicerContext
        ) -> quoting_pb2.QuoteParams:
            return quoting_pb2.QuoteParams()

    async def serve() -> None:
        server = grpc.aio.server()
        quoting_pb2_grpc.add_QuotingServiceServicer_to_server(Bare(), server)
        server.add_insecure_port(address)
        await server.start()
        gc.freeze()
        await server.wait_for_termination()

    asyncio.run(serve())


async def _wait_for_signals(stub: quoting_pb2_grpc.QuotingServiceStub, asset: str, n: int) -> None:
    request = quoting_pb2.GetQuoteParamsRequest(asset=asset)
    for _ in range(600):
        if len((await stub.GetQuoteParams(request, timeout=5)).signal_ids) >= n:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{n} signals on {asset} not applied in 30 s")


async def _wait_up(stub: quoting_pb2_grpc.QuotingServiceStub, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await stub.GetQuoteParams(quoting_pb2.GetQuoteParamsRequest(asset="BTC"), timeout=1)
            return
        except grpc.aio.AioRpcError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def _bench(args: argparse.Namespace) -> dict[str, object]:
    load = round(os.getloadavg()[0], 2)  # a busy machine shows in every figure here
    with tempfile.TemporaryDirectory(prefix="tw-bench-quote-") as tmp:
        redis_server = RedisStack(Path(tmp) / "redis").start()
        address, bare_address = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        env = {"REDIS_URL": redis_server.url, "TAPEWATCH_QUOTING_ADDR": address}
        service = ServiceProcess("quoting", address, env, Path(tmp) / "logs").start()
        bare = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.bench.quote", bare_address
        )
        redis = aioredis.Redis.from_url(redis_server.url)
        try:
            await service.wait_serving()
            channel = insecure_channel(address, "bench")
            stub = quoting_pb2_grpc.QuotingServiceStub(channel)
            for sid, widening in (("doge-1", 15.0), ("doge-2", 25.0)):
                await publish(
                    redis, "signals.approved", _signal(sid, "DOGE", widening).SerializeToString(), sid
                )
            await _wait_for_signals(stub, "DOGE", 2)
            unary = await _unary(stub, "DOGE", args.calls)

            fan = _Fanout(stub, args.subscribers, ["BTC", "ETH"])
            await fan.start(snapshot=2)
            sent, rpc = await _overrides(stub, fan, args.changes, args.interval)
            sent_signals = await _signals(redis, args.signals, args.interval)
            await asyncio.sleep(1.0)
            await fan.stop()
            overrides, missing = fan.delays(sent)
            signals, missing_signals = fan.delays(sent_signals)
            await channel.close()

            bare_channel = insecure_channel(bare_address, "bench")
            bare_stub = quoting_pb2_grpc.QuotingServiceStub(bare_channel)
            await _wait_up(bare_stub)
            reference = await _unary(bare_stub, "DOGE", args.calls)
            await bare_channel.close()
        finally:
            await redis.aclose()
            bare.terminate()
            await bare.wait()
            service.stop()
            redis_server.stop()
    get = _stats(unary)
    ref = _stats(reference)
    return {
        "bench": "quote",
        "get_quote_params": get,
        "watch_fanout": {
            "subscribers": args.subscribers,
            "changes": args.changes,
            **_stats(overrides),
            "not_seen": missing,
            "set_override_rpc": _stats(rpc),
        },
        "watch_fanout_signals": {
            "subscribers": args.subscribers,
            "signals": args.signals,
            **_stats(signals),
            "not_seen": missing_signals,
        },
        "reference": {"bare_grpc_unary": ref},
        "vs_bare_grpc": {
            "p50": _ratio(get["p50_ms"], ref["p50_ms"]),
            "p99": _ratio(get["p99_ms"], ref["p99_ms"]),
        },
        "targets": {"get_quote_params_p99_ms": "< 2", "watch_fanout_p99_ms": "< 20 with 100 subscribers"},
        "machine": machine(),
        "load_average_1m_at_start": load,
    }


def run(args: argparse.Namespace) -> dict[str, object]:
    return asyncio.run(_bench(args))


if __name__ == "__main__":
    _serve_bare(sys.argv[1])
