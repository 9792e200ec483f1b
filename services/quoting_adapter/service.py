"""QuotingService: approved signals in, quote params out to the market-making engine.

- Consumes `signals.approved` (group "quoting"): each approved Signal becomes one SignalAdjustment per
  asset, stored once per signal id in Redis (a redelivery is acknowledged and ignored), full strength
  at the approval time and decaying over its horizon (settings: exponential with a half-life share of
  the horizon, or linear). Bad signals are dead-lettered with the reason.
- GetQuoteParams answers from memory: quoting.adjustments.combine() at call time over the cached inputs.
- WatchQuoteParams sends the current params of each asset, then every change and every decay step.
- SetOverride replaces the signals of one asset until `until` (at most a day ahead, within the caps).
- ClearAll is the kill switch: every asset back to base, overrides and active signals dropped, who and
  why recorded. It stays latched (in Redis: across restarts and instances) until ReleaseKillSwitch:
  signals that arrive meanwhile are stored but not applied; on release those still within their horizon
  take effect. SetOverride is refused while latched.
- PushMarketState appends the engine's mid to `tw:market:<ASSET>`, for analysis (realised volatility):
      a Redis stream per asset (upper-case ticker), capped at about `market_maxlen` entries (XADD MAXLEN ~),
      entry id = arrival time at the adapter; fields `mid` (decimal text, Python repr of the float, > 0)
      and `time_ms` (the mid's time, Unix epoch milliseconds, as the engine stamped it; replays may push
      past times, so order by `time_ms` when it matters). Read the latest N with
      `XREVRANGE tw:market:DOGE + - COUNT N`.
Redis keys of the adapter's own state: see services/quoting_adapter/store.py.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import redis.asyncio as aioredis
from google.protobuf.message import DecodeError
from opentelemetry import metrics, trace

from quoting.adjustments import QuoteOverride
from services.quoting_adapter.clock import Clock, SystemClock
from services.quoting_adapter.convert import (
    BadInput,
    DecayPolicy,
    asset_name,
    finite,
    params_proto,
    signal_adjustments,
    started_at,
)
from services.quoting_adapter.live import LiveParams, StepPolicy
from services.quoting_adapter.settings import QuotingSettings
from services.quoting_adapter.store import QuotingStore
from services.runtime.errors import FailedPrecondition, InvalidArgument, Unavailable
from services.runtime.logs import setup_logging
from services.runtime.redis_client import open_redis
from services.runtime.server import GrpcServer, Registration, wait_for_shutdown_signal
from services.runtime.streams import Message, Reject, StreamConsumer
from services.runtime.telemetry import setup_telemetry
from tapewatch.approval.v1 import approval_pb2
from tapewatch.quoting.v1 import quoting_pb2, quoting_pb2_grpc

log = logging.getLogger("tapewatch.quoting")
tracer = trace.get_tracer("tapewatch.quoting")
signals_counter = metrics.get_meter("tapewatch.quoting").create_counter(
    "tapewatch.quoting.signals", description="approved signals consumed, by outcome"
)
SERVICE_NAME = quoting_pb2.DESCRIPTOR.services_by_name["QuotingService"].full_name
MAX_TEXT = 500


class SignalApplier:
    """The `signals.approved` handler: store each approved signal once, then refresh its assets."""

    def __init__(self, store: QuotingStore, live: LiveParams, policy: DecayPolicy) -> None:
        self.store = store
        self.live = live
        self.policy = policy

    async def __call__(self, m: Message) -> None:
        with tracer.start_as_current_span(
            "quoting.apply_signal", attributes={"tapewatch.service": "quoting", "tapewatch.key": m.key}
        ) as span:
            try:
                signal = approval_pb2.Signal.FromString(m.data)
            except DecodeError:
                signals_counter.add(1, {"outcome": "rejected"})
                raise Reject("data is not a tapewatch.approval.v1.Signal") from None
            published = datetime.fromtimestamp(m.published_ms / 1000, UTC)
            try:
                start = started_at(signal, published, self.live.clock.now())
                adjustments = signal_adjustments(signal, start, self.policy)
            except BadInput as exc:
                signals_counter.add(1, {"outcome": "rejected"})
                raise Reject(str(exc)) from None
            assets = [a.asset for a in adjustments]
            span.set_attributes({"tapewatch.signal_id": signal.id, "tapewatch.assets": assets})
            applied = await self.store.apply_signal(adjustments, signal.story_id, signal.decision.trader)
            span.set_attribute("tapewatch.duplicate", not applied)
            signals_counter.add(1, {"outcome": "applied" if applied else "duplicate"})
            # refresh even for a duplicate: the first delivery may have failed after storing
            await self.live.refresh(assets)
            log.info(
                "signal %s %s",
                signal.id,
                "applied" if applied else "already applied",
                extra={"assets": assets},
            )


class QuotingServicer(quoting_pb2_grpc.QuotingServiceServicer):
    def __init__(self, store: QuotingStore, live: LiveParams, settings: QuotingSettings) -> None:
        self.store = store
        self.live = live
        self.settings = settings

    def _asset(self, raw: str) -> str:
        try:
            return asset_name(raw)
        except BadInput as exc:
            raise InvalidArgument(str(exc)) from None

    async def GetQuoteParams(
        self, request: quoting_pb2.GetQuoteParamsRequest, context: grpc.aio.ServicerContext
    ) -> quoting_pb2.QuoteParams:
        asset = self._asset(request.asset)
        if not self.live.synced:
            await self._reload([asset])
        return params_proto(self.live.current(asset))

    async def WatchQuoteParams(
        self, request: quoting_pb2.WatchQuoteParamsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[quoting_pb2.QuoteParams]:
        if len(request.assets) > 1000:
            raise InvalidArgument(f"at most 1000 assets per watch, got {len(request.assets)}")
        assets = frozenset(self._asset(a) for a in request.assets) or None
        sub, snapshot = self.live.subscribe(assets)
        try:
            for params in snapshot:
                yield params
            while (batch := await sub.next()) is not None:
                for params in batch:
                    yield params
        finally:
            self.live.unsubscribe(sub)

    async def PushMarketState(
        self, request: quoting_pb2.MarketState, context: grpc.aio.ServicerContext
    ) -> quoting_pb2.PushMarketStateResponse:
        asset = self._asset(request.asset)
        if not (math.isfinite(request.mid) and request.mid > 0):
            raise InvalidArgument(f"mid must be finite and > 0, got {request.mid!r}")
        now = self.live.clock.now()
        when = request.time.ToDatetime(tzinfo=UTC) if request.HasField("time") else now
        if when > now + timedelta(seconds=self.settings.max_mid_ahead_s):
            raise InvalidArgument(
                f"time {when.isoformat()} is more than {self.settings.max_mid_ahead_s:g} s in the future"
            )
        await self.store.push_mid(asset, request.mid, when, new_asset=self.live.learn(asset))
        return quoting_pb2.PushMarketStateResponse()

    async def SetOverride(
        self, request: quoting_pb2.SetOverrideRequest, context: grpc.aio.ServicerContext
    ) -> quoting_pb2.QuoteParams:
        asset = self._asset(request.asset)
        if asset not in self.live.known_assets():
            raise InvalidArgument(f"unknown asset {asset}: no signal, mid or configured entry for it")
        now = self.live.clock.now()
        override = self._override(asset, request, now)
        by = _text("requested_by", request.requested_by) or f"unknown ({context.peer()})"
        if not await self.store.set_override(override, by, now):
            raise FailedPrecondition("kill switch is on: release it (ReleaseKillSwitch) before overriding")
        log.warning("override on %s by %s until %s: %s", asset, by, override.until, override.reason)
        await self.live.refresh([asset])
        return params_proto(self.live.current(asset))

    def _override(self, asset: str, request: quoting_pb2.SetOverrideRequest, now: datetime) -> QuoteOverride:
        caps = self.settings.caps
        try:
            multiplier = finite("spread_multiplier", request.spread_multiplier)
            bid = finite("bid_widening_bps", request.bid_widening_bps)
            ask = finite("ask_widening_bps", request.ask_widening_bps)
            skew = finite("skew_bps", request.skew_bps)
        except BadInput as exc:
            raise InvalidArgument(str(exc)) from None
        if not 1 <= multiplier <= caps.max_vol_multiplier:
            raise InvalidArgument(
                f"spread_multiplier must be in [1, {caps.max_vol_multiplier:g}] (1 = unchanged; the cap), "
                f"got {multiplier:g}"
            )
        for name, bps in (("bid_widening_bps", bid), ("ask_widening_bps", ask)):
            if not 0 <= bps <= caps.max_widening_bps:
                raise InvalidArgument(
                    f"{name} must be in [0, {caps.max_widening_bps:g}] (the cap), got {bps:g}"
                )
        if abs(skew) > caps.max_skew_bps:
            raise InvalidArgument(f"skew_bps must be within ±{caps.max_skew_bps:g} (the cap), got {skew:g}")
        if not request.HasField("until"):
            raise InvalidArgument("until is required")
        until = request.until.ToDatetime(tzinfo=UTC)
        if until <= now:
            raise InvalidArgument(f"until {until.isoformat()} is not in the future")
        if until > now + timedelta(seconds=self.settings.max_override_s):
            raise InvalidArgument(
                f"until {until.isoformat()} is more than {self.settings.max_override_s:g} s away"
            )
        reason = _text("reason", request.reason)
        return QuoteOverride(asset, until, multiplier, bid, ask, skew, reason)

    async def ClearAll(
        self, request: quoting_pb2.ClearAllRequest, context: grpc.aio.ServicerContext
    ) -> quoting_pb2.ClearAllResponse:
        # No required fields: an emergency stop must never be refused for paperwork.
        by = request.requested_by.strip()[:MAX_TEXT] or f"unknown ({context.peer()})"
        reason = request.reason.strip()[:MAX_TEXT]
        cleared = await self.store.clear_all(by, reason, context.peer(), self.live.clock.now())
        log.warning("KILL SWITCH by %s: %s (%d cleared)", by, reason, cleared)
        await self.live.refresh(None)
        return quoting_pb2.ClearAllResponse(cleared=cleared)

    async def ReleaseKillSwitch(
        self, request: quoting_pb2.ReleaseKillSwitchRequest, context: grpc.aio.ServicerContext
    ) -> quoting_pb2.ReleaseKillSwitchResponse:
        by, reason = _text("requested_by", request.requested_by), _text("reason", request.reason)
        if not by or not reason:
            raise InvalidArgument("requested_by and reason are required to release the kill switch")
        released = await self.store.release(by, reason, context.peer())
        if released:
            log.warning("kill switch released by %s: %s", by, reason)
        await self.live.refresh(None)
        return quoting_pb2.ReleaseKillSwitchResponse(
            released=released, active_signals=self.live.active_signals()
        )

    async def _reload(self, assets: list[str]) -> None:
        try:
            await self.live.refresh(assets)
        except (aioredis.RedisError, OSError) as exc:
            raise Unavailable(f"quoting state unavailable: {exc}") from None


def _text(name: str, value: str) -> str:
    value = value.strip()
    if len(value) > MAX_TEXT:
        raise InvalidArgument(f"{name} is longer than {MAX_TEXT} characters")
    return value


class QuotingAdapter:
    """One adapter instance: Redis state, the in-memory params, the signal consumer and the servicer."""

    def __init__(self, redis: aioredis.Redis, settings: QuotingSettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.store = QuotingStore(redis, settings.market_maxlen)
        self.live = LiveParams(
            self.store,
            clock or SystemClock(),
            settings.caps,
            settings.assets,
            StepPolicy(
                settings.step_resolution, settings.step_tolerance_bps, settings.step_tolerance_multiplier
            ),
            settings.resync_s,
        )
        policy = DecayPolicy(
            settings.decay, settings.half_life_fraction, timedelta(minutes=settings.max_horizon_minutes)
        )
        self.consumer = StreamConsumer(
            redis,
            settings.approved_stream,
            settings.consumer_group,
            settings.consumer_name or f"quoting-{socket.gethostname()}-{os.getpid()}",
            SignalApplier(self.store, self.live, policy),
            label="quoting",
            block_ms=1000,
        )
        self.servicer = QuotingServicer(self.store, self.live, settings)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def registration(self) -> Registration:
        return Registration(
            SERVICE_NAME, quoting_pb2_grpc.add_QuotingServiceServicer_to_server, self.servicer
        )

    async def start(self, timeout_s: float = 10.0) -> None:
        """Subscribe to changes, load the state, then start consuming signals."""
        subscribed = asyncio.Event()
        self._tasks.append(
            asyncio.create_task(self.live.listen(self._stop, subscribed), name="quoting-changes")
        )
        await asyncio.wait_for(subscribed.wait(), timeout_s)
        await self.consumer.ensure_group()
        self._tasks.append(asyncio.create_task(self.consumer.run(self._stop), name="quoting-signals"))

    async def stop(self) -> None:
        """End watch streams and timers, then the consumer and the subscription. A signal cut off half-way
        stays pending and is redelivered (applying is idempotent)."""
        self._stop.set()
        await self.live.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()


async def serve(
    settings: QuotingSettings, stop: asyncio.Event | None = None, clock: Clock | None = None
) -> None:
    setup_logging("quoting", settings.log_level, settings.log_format)
    setup_telemetry("quoting", settings.otel_exporter, settings.otel_endpoint)
    async with open_redis(settings.redis_url, settings.data_dir) as redis:
        adapter = QuotingAdapter(redis, settings, clock)
        await adapter.start()
        server = GrpcServer(
            "quoting",
            settings.listen,
            [adapter.registration],
            checks={"redis": redis.ping, "changes": adapter.live.check_synced},
        )
        await server.start()
        try:
            await wait_for_shutdown_signal(stop)
        finally:
            await adapter.live.close()  # end the watch streams first, so the server stops without waiting
            await server.stop(settings.shutdown_grace_s)
            await adapter.stop()
