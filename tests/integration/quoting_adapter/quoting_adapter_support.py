"""Helpers for the quoting adapter tests: approved signals, running instances, watch streams."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import grpc
import redis.asyncio as aioredis

from services.quoting_adapter.convert import timestamp
from services.quoting_adapter.service import QuotingAdapter
from services.quoting_adapter.settings import QuotingSettings
from services.runtime.server import GrpcServer
from services.runtime.streams import publish
from tapewatch.analysis.v1 import analysis_pb2
from tapewatch.approval.v1 import approval_pb2
from tapewatch.quoting.v1 import quoting_pb2, quoting_pb2_grpc

BEARISH = analysis_pb2.DIRECTION_BEARISH
BULLISH = analysis_pb2.DIRECTION_BULLISH
_names = itertools.count()


def approved_signal(
    sid: str,
    decided_at: datetime,
    *adjustments: tuple[str, float, float, float, int, int],
) -> approval_pb2.Signal:
    """An APPROVED signal; each adjustment is (asset, widening_bps, skew_bps, vol_multiplier,
    horizon_minutes, direction)."""
    signal = approval_pb2.Signal(
        id=sid,
        story_id=f"story-{sid}",
        state=approval_pb2.SIGNAL_STATE_APPROVED,
        decision=approval_pb2.Decision(
            signal_id=sid,
            action=approval_pb2.ACTION_APPROVE,
            trader="trader-1",
            decided_at=timestamp(decided_at),
        ),
    )
    for asset, widening, skew, mult, horizon, direction in adjustments or [
        ("DOGE", 20, 10, 1.5, 30, BEARISH)
    ]:
        signal.adjustments.add(
            asset=asset,
            widening_bps=widening,
            skew_bps=skew,
            vol_multiplier=mult,
            horizon_minutes=horizon,
            direction=direction,  # type: ignore[arg-type]
        )
    return signal


async def publish_signal(redis: aioredis.Redis, signal: approval_pb2.Signal) -> str:
    return await publish(redis, "signals.approved", signal.SerializeToString(), signal.id)


def settings(**overrides: Any) -> QuotingSettings:
    values: dict[str, Any] = {"decay": "linear", "consumer_name": f"quoting-test-{next(_names)}"}
    return QuotingSettings(**(values | overrides))


@dataclass
class Running:
    adapter: QuotingAdapter
    server: GrpcServer
    channel: grpc.aio.Channel
    stub: quoting_pb2_grpc.QuotingServiceStub
    redis: aioredis.Redis
    stopped: bool = False

    async def params(self, asset: str = "DOGE") -> quoting_pb2.QuoteParams:
        return await self.stub.GetQuoteParams(quoting_pb2.GetQuoteParamsRequest(asset=asset), timeout=5)

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        await self.channel.close()
        await self.adapter.live.close()
        await self.server.stop(0)
        await self.adapter.stop()
        await self.redis.aclose()


StartAdapter = Callable[..., Awaitable[Running]]


@dataclass
class Watcher:
    """One WatchQuoteParams stream; keeps each message with its arrival time (time.perf_counter)."""

    call: Any
    received: list[tuple[float, quoting_pb2.QuoteParams]] = field(default_factory=list)

    @classmethod
    def open(cls, stub: quoting_pb2_grpc.QuotingServiceStub, *assets: str) -> Watcher:
        return cls(stub.WatchQuoteParams(quoting_pb2.WatchQuoteParamsRequest(assets=list(assets))))

    async def next(self, timeout_s: float = 5.0) -> quoting_pb2.QuoteParams:
        message = await asyncio.wait_for(self.call.read(), timeout_s)
        assert message is not grpc.aio.EOF, "watch stream ended"
        self.received.append((time.perf_counter(), message))
        return message  # type: ignore[no-any-return]

    async def until(
        self, predicate: Callable[[quoting_pb2.QuoteParams], bool], timeout_s: float = 5.0
    ) -> quoting_pb2.QuoteParams:
        deadline = time.monotonic() + timeout_s
        while True:
            message = await self.next(max(0.01, deadline - time.monotonic()))
            if predicate(message):
                return message

    def close(self) -> None:
        self.call.cancel()
