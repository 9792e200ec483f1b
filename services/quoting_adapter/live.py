"""The current params of every asset, in memory: computed at call time from cached inputs, pushed to
WatchQuoteParams subscribers on every change and at each decay step.

Coherence: every write to Redis publishes the asset on `tw:quoting:changes` in the same script; every
instance (the writer too) reloads that asset's inputs when the notice arrives, and everything on
(re)subscribing and every `resync_s`. Pub/sub, not keyspace notifications: those need server config that
managed Redis often forbids, and carry no payload. While the subscription is down the cache is marked
unsynced (health NOT_SERVING, reads go to Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from redis.exceptions import RedisError

from quoting.adjustments import Caps, QuoteAdjustment, combine, decay_steps
from services.quoting_adapter.clock import Clock
from services.quoting_adapter.convert import params_proto
from services.quoting_adapter.store import ALL, CHANGES, AssetInputs, KillSwitch, QuotingStore
from tapewatch.quoting.v1 import quoting_pb2

log = logging.getLogger("tapewatch.quoting")


@dataclass(frozen=True)
class StepPolicy:
    """When a subscriber gets a decay step (see quoting.adjustments.decay_steps)."""

    resolution: timedelta = timedelta(seconds=1)
    tolerance_bps: float = 0.5
    tolerance_multiplier: float = 0.01


class Subscription:
    """One WatchQuoteParams stream. Conflating: a slow reader gets the latest params of each asset."""

    def __init__(self, assets: frozenset[str] | None) -> None:
        self.assets = assets  # None: every asset
        self._pending: dict[str, quoting_pb2.QuoteParams] = {}
        self._ready = asyncio.Event()
        self._closed = False

    def offer(self, params: quoting_pb2.QuoteParams) -> None:
        if self.assets is None or params.asset in self.assets:
            self._pending[params.asset] = params
            self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    async def next(self) -> list[quoting_pb2.QuoteParams] | None:
        """The updates since the last call, oldest asset change first; None once closed."""
        await self._ready.wait()
        if self._closed:
            return None
        self._ready.clear()
        batch, self._pending = list(self._pending.values()), {}
        return batch


class LiveParams:
    def __init__(
        self,
        store: QuotingStore,
        clock: Clock,
        caps: Caps,
        known_assets: Iterable[str] = (),
        steps: StepPolicy | None = None,
        resync_s: float = 30.0,
    ) -> None:
        self.store = store
        self.clock = clock
        self.caps = caps
        self.steps = steps or StepPolicy()
        self.resync_s = resync_s
        self.inputs: dict[str, AssetInputs] = {}
        self.kill: KillSwitch | None = None
        self.synced = False
        self._known = set(known_assets)
        self._subs: set[Subscription] = set()
        self._timers: dict[str, asyncio.Task[None]] = {}
        self._lock = asyncio.Lock()

    # reading

    def known_assets(self) -> set[str]:
        return self._known | self.inputs.keys()

    def learn(self, asset: str) -> bool:
        """Remember an asset (e.g. from a pushed mid); True when it was new."""
        new = asset not in self._known
        self._known.add(asset)
        return new

    def current(self, asset: str, now: datetime | None = None) -> QuoteAdjustment:
        inputs = self.inputs.get(asset) or AssetInputs()
        return combine(
            asset,
            inputs.signals,
            now or self.clock.now(),
            self.caps,
            override=inputs.override,
            kill_switch=self.kill is not None,
        )

    def active_signals(self) -> int:
        now = self.clock.now()
        return sum(s.is_active(now) for inputs in self.inputs.values() for s in inputs.signals)

    def subscribe(self, assets: frozenset[str] | None) -> tuple[Subscription, list[quoting_pb2.QuoteParams]]:
        """A new subscription and the current params it starts from (nothing can slip in between)."""
        sub = Subscription(assets)
        self._subs.add(sub)
        names = sorted(assets if assets is not None else self.known_assets())
        now = self.clock.now()
        return sub, [params_proto(self.current(a, now)) for a in names]

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    # changes

    async def refresh(self, assets: Iterable[str] | None = None) -> None:
        """Reload inputs from Redis (None: everything); push the params of each asset that changed."""
        async with self._lock:
            names = None if assets is None else sorted(set(assets))
            loaded, kill = await self.store.load(names)
            kill_changed = kill != self.kill
            self.kill = kill
            affected = set(loaded) | (self.known_assets() if kill_changed else set())
            if names is None:
                affected |= self.inputs.keys()
            now = self.clock.now()
            for asset in sorted(affected):
                new = loaded.get(asset) or AssetInputs()
                old = self.inputs.get(asset) or AssetInputs()
                if new:
                    self.inputs[asset] = new
                else:
                    self.inputs.pop(asset, None)
                if new != old or kill_changed:
                    self._emit(asset, now)
                    self._reschedule(asset)
            self._known |= loaded.keys()

    def _emit(self, asset: str, now: datetime) -> None:
        if not self._subs:
            return
        params = params_proto(self.current(asset, now))
        for sub in self._subs:
            sub.offer(params)

    def _reschedule(self, asset: str) -> None:
        timer = self._timers.pop(asset, None)
        if timer is not None:
            timer.cancel()
        if asset in self.inputs and self.kill is None:
            self._timers[asset] = asyncio.create_task(self._decay(asset), name=f"decay-{asset}")

    async def _decay(self, asset: str) -> None:
        """Push each decay step when it is due, then forget what has ended. Restarted on any change."""
        t = self.clock.now()
        while (inputs := self.inputs.get(asset)) is not None:
            step = decay_steps(
                asset,
                inputs.signals,
                t,
                self.caps,
                override=inputs.override,
                tolerance_bps=self.steps.tolerance_bps,
                tolerance_multiplier=self.steps.tolerance_multiplier,
                resolution=self.steps.resolution,
                limit=1,
            )
            if not step or step[0].as_of is None:
                break
            await self.clock.sleep_until(step[0].as_of)
            t = max(self.clock.now(), step[0].as_of)
            self._emit(asset, t)
        await self._prune(asset)

    async def _prune(self, asset: str) -> None:
        now = self.clock.now()
        inputs = self.inputs.get(asset)
        if inputs is None:
            return
        ended = [s.signal_id for s in inputs.signals if s.ends_at <= now]
        live = AssetInputs(
            tuple(s for s in inputs.signals if s.ends_at > now),
            inputs.override if inputs.override and inputs.override.is_active(now) else None,
        )
        if live:
            self.inputs[asset] = live
        else:
            self.inputs.pop(asset, None)
        if self._timers.get(asset) is asyncio.current_task():
            del self._timers[asset]
        try:
            await self.store.prune(asset, ended)
        except RedisError as exc:  # the next instance to finish this decay prunes them
            log.warning("could not prune ended signals of %s: %s", asset, exc)

    async def listen(self, stop: asyncio.Event, subscribed: asyncio.Event | None = None) -> None:
        """Follow `tw:quoting:changes` until stop; reconnects, and reloads everything on each (re)connect."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            pubsub = self.store.redis.pubsub()
            try:
                await pubsub.subscribe(CHANGES)
                await self.refresh(None)
                self.synced = True
                if subscribed is not None:
                    subscribed.set()
                resync_at = loop.time() + self.resync_s
                while not stop.is_set():
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
                    if message is not None and message.get("type") == "message":
                        asset = message["data"].decode()
                        await self.refresh(None if asset == ALL else [asset])
                    elif loop.time() >= resync_at:
                        await self.refresh(None)
                        resync_at = loop.time() + self.resync_s
            except (RedisError, OSError) as exc:
                log.warning("quoting changes: subscription lost (%s); reconnecting", exc)
            except Exception:
                log.exception("quoting changes: refresh failed; reconnecting")
            finally:
                self.synced = False  # whatever ended the subscription, notices may be missed from here
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            if not stop.is_set():
                await asyncio.sleep(0.5)

    async def check_synced(self) -> None:
        if not self.synced:
            raise RuntimeError("not subscribed to tw:quoting:changes: params may be stale")

    async def close(self) -> None:
        for sub in list(self._subs):
            sub.close()
        for timer in self._timers.values():
            timer.cancel()
        for timer in list(self._timers.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await timer
        self._timers.clear()
