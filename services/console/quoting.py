"""The console's view of the quoting adapter: current quote adjustments per asset (WatchQuoteParams), and
the kill switch (ClearAll). When the adapter is not there the panel says so and keeps retrying."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import grpc

from services.approval.desk import Fanout
from services.approval.views import ms
from services.runtime.interceptors import insecure_channel
from tapewatch.quoting.v1 import quoting_pb2, quoting_pb2_grpc

log = logging.getLogger("tapewatch.console.quoting")


@dataclass(frozen=True)
class QuoteUpdate:
    view: dict[str, Any]


@dataclass(frozen=True)
class QuotingStatus:
    up: bool
    error: str = ""

    def view(self) -> dict[str, Any]:
        return {"up": self.up, "error": self.error}


def quote_view(p: quoting_pb2.QuoteParams) -> dict[str, Any]:
    return {
        "asset": p.asset,
        "spread_multiplier": round(p.spread_multiplier, 4),
        "bid_widening_bps": round(p.bid_widening_bps, 3),
        "ask_widening_bps": round(p.ask_widening_bps, 3),
        "skew_bps": round(p.skew_bps, 3),
        "valid_until_ms": ms(p.valid_until) if p.HasField("valid_until") else 0,
        "as_of_ms": ms(p.as_of) if p.HasField("as_of") else 0,
        "signal_ids": list(p.signal_ids),
        "override_active": p.override_active,
        "kill_switch": p.kill_switch,
    }


class QuotingUnavailable(RuntimeError):
    pass


class QuotesFeed:
    def __init__(self, address: str, fanout: Fanout, connect_timeout_s: float = 2.0) -> None:
        self.address = address
        self.fanout = fanout
        self.connect_timeout_s = connect_timeout_s
        self.latest: dict[str, dict[str, Any]] = {}
        self.status = QuotingStatus(False, "not connected yet")
        # reconnect quickly once the adapter (re)appears: the default backoff grows to two minutes
        self.channel = insecure_channel(
            address,
            "console",
            **{"grpc.initial_reconnect_backoff_ms": 250, "grpc.max_reconnect_backoff_ms": 3000},
        )
        self.stub = quoting_pb2_grpc.QuotingServiceStub(self.channel)

    def _set_status(self, status: QuotingStatus) -> None:
        if status != self.status:
            self.status = status
            self.fanout.publish(status)

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.25
        while not stop.is_set():
            try:
                await asyncio.wait_for(self.channel.channel_ready(), self.connect_timeout_s)
                call = self.stub.WatchQuoteParams(quoting_pb2.WatchQuoteParamsRequest())
                self.latest.clear()  # the adapter sends every asset's current params first
                self._set_status(QuotingStatus(True))
                async for params in call:
                    backoff = 0.25
                    view = quote_view(params)
                    self.latest[params.asset] = view
                    self.fanout.publish(QuoteUpdate(view))
                self._set_status(QuotingStatus(False, "quoting service closed the stream"))
            except TimeoutError:
                self._set_status(QuotingStatus(False, f"quoting service not reachable at {self.address}"))
            except grpc.aio.AioRpcError as exc:
                self._set_status(QuotingStatus(False, f"{exc.code().name}: {exc.details()}"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, 5.0)

    async def clear_all(self, reason: str) -> int:
        try:
            reply = await self.stub.ClearAll(quoting_pb2.ClearAllRequest(reason=reason), timeout=5)
        except grpc.aio.AioRpcError as exc:
            raise QuotingUnavailable(f"kill switch not applied: {exc.code().name}: {exc.details()}") from None
        return reply.cleared

    async def close(self) -> None:
        await self.channel.close()
