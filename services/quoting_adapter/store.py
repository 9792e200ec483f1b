"""The adapter's state in Redis: what survives a restart and what every adapter instance shares.

Keys (bytes; JSON documents are UTF-8):
    tw:quoting:signals:<ASSET>    hash   signal id -> JSON of its SignalAdjustment (+ ends_ms, story_id,
                                         trader): the approved signals on the asset, pruned once ended
    tw:quoting:override:<ASSET>   string JSON of the risk manager's QuoteOverride (+ requested_by,
                                         set_at); expires at its `until`
    tw:quoting:kill               hash   by, reason, at (ISO time), peer: present while the kill switch
                                         is latched
    tw:quoting:seen:<SIGNAL_ID>   string the signal was applied once (idempotency; expires a day after
                                         the horizon)
    tw:quoting:assets             set    every asset with signals, overrides or mids
    tw:quoting:audit              stream risk-manager actions and applied signals (capped)
    tw:quoting:changes            pub/sub channel: an asset whose inputs changed, or "*" for all; every
                                         instance refreshes its in-memory cache from it
    tw:market:<ASSET>             stream the engine's mids (see service.py)
Writes and their change notice are one atomic script, so a reader that got the notice sees the write.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis

from quoting.adjustments import QuoteOverride, SignalAdjustment
from services.quoting_adapter.convert import (
    adjustment_from_json,
    adjustment_json,
    override_from_json,
    override_json,
)

SIGNALS = "tw:quoting:signals:"
OVERRIDE = "tw:quoting:override:"
KILL = "tw:quoting:kill"
SEEN = "tw:quoting:seen:"
ASSETS = "tw:quoting:assets"
AUDIT = "tw:quoting:audit"
CHANGES = "tw:quoting:changes"
MARKET = "tw:market:"
AUDIT_MAXLEN = 100_000
ALL = "*"

# KEYS: seen, assets, audit, then the signals hash of each asset.
# ARGV: signal id, seen ttl s, channel, audit maxlen, then (asset, json) per asset.
_APPLY = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then return 0 end
local assets = {}
for i = 1, (#ARGV - 4) / 2 do
  local asset = ARGV[3 + 2 * i]
  redis.call('HSET', KEYS[3 + i], ARGV[1], ARGV[4 + 2 * i])
  redis.call('SADD', KEYS[2], asset)
  table.insert(assets, asset)
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'event', 'signal_applied',
  'signal_id', ARGV[1], 'assets', table.concat(assets, ','))
for _, asset in ipairs(assets) do redis.call('PUBLISH', ARGV[3], asset) end
return 1
"""

# KEYS: kill, assets, audit. ARGV: by, reason, at, peer, now ms, channel, audit maxlen.
_CLEAR_ALL = """
local cleared = 0
for _, asset in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local signals = 'tw:quoting:signals:' .. asset
  local docs = redis.call('HVALS', signals)
  for _, doc in ipairs(docs) do
    if cjson.decode(doc)['ends_ms'] > tonumber(ARGV[5]) then cleared = cleared + 1 end
  end
  redis.call('DEL', signals)
  cleared = cleared + redis.call('DEL', 'tw:quoting:override:' .. asset)
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'by', ARGV[1], 'reason', ARGV[2], 'at', ARGV[3], 'peer', ARGV[4])
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', 'event', 'kill_switch', 'by', ARGV[1],
  'reason', ARGV[2], 'peer', ARGV[4], 'cleared', cleared)
redis.call('PUBLISH', ARGV[6], '*')
return cleared
"""

# KEYS: override, assets, audit, kill. ARGV: asset, json, ttl ms, by, reason, channel, audit maxlen.
_SET_OVERRIDE = """
if redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', 'event', 'override', 'asset', ARGV[1],
  'by', ARGV[4], 'reason', ARGV[5], 'override', ARGV[2])
redis.call('PUBLISH', ARGV[6], ARGV[1])
return 1
"""


@dataclass(frozen=True)
class KillSwitch:
    by: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class AssetInputs:
    """Everything the params of one asset are computed from (besides the kill switch and the time)."""

    signals: tuple[SignalAdjustment, ...] = ()
    override: QuoteOverride | None = None

    def __bool__(self) -> bool:
        return bool(self.signals) or self.override is not None


class QuotingStore:
    def __init__(self, redis: aioredis.Redis, market_maxlen: int = 100_000) -> None:
        self.redis = redis
        self.market_maxlen = market_maxlen
        self._apply = redis.register_script(_APPLY)
        self._clear_all = redis.register_script(_CLEAR_ALL)
        self._set_override = redis.register_script(_SET_OVERRIDE)

    async def apply_signal(self, adjustments: list[SignalAdjustment], story_id: str, trader: str) -> bool:
        """Store an approved signal's adjustments once; False when this signal id was applied before."""
        signal_id = adjustments[0].signal_id
        longest = max(a.horizon for a in adjustments)
        args: list[str | bytes | int] = [signal_id, int((longest + timedelta(days=1)).total_seconds())]
        args += [CHANGES, AUDIT_MAXLEN]
        for a in adjustments:
            ends_ms = int(a.ends_at.timestamp() * 1000)
            args += [a.asset, adjustment_json(a, ends_ms=ends_ms, story_id=story_id, trader=trader)]
        keys = [SEEN + signal_id, ASSETS, AUDIT, *(SIGNALS + a.asset for a in adjustments)]
        return bool(await self._apply(keys=keys, args=args))

    async def load(
        self, assets: Iterable[str] | None = None
    ) -> tuple[dict[str, AssetInputs], KillSwitch | None]:
        """The inputs of the given assets (None: every known asset) and the kill switch, in one round trip."""
        if assets is None:
            names = sorted(_s(a) for a in await self.redis.smembers(ASSETS))
        else:
            names = sorted(set(assets))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(KILL)
            for asset in names:
                pipe.hgetall(SIGNALS + asset)
                pipe.get(OVERRIDE + asset)
            replies = await pipe.execute()
        kill_doc, rest = replies[0], replies[1:]
        inputs = {}
        for i, asset in enumerate(names):
            signals = sorted(
                (adjustment_from_json(raw) for raw in rest[2 * i].values()),
                key=lambda s: (s.started_at, s.signal_id),
            )
            raw_override = rest[2 * i + 1]
            inputs[asset] = AssetInputs(
                tuple(signals), override_from_json(raw_override) if raw_override else None
            )
        return inputs, _kill_switch(kill_doc)

    async def set_override(self, override: QuoteOverride, by: str, now: datetime) -> bool:
        """Store the override until it ends; False (nothing stored) while the kill switch is latched."""
        ttl_ms = max(1, int((override.until - now).total_seconds() * 1000))
        doc = override_json(override, requested_by=by, set_at=now.isoformat())
        keys = [OVERRIDE + override.asset, ASSETS, AUDIT, KILL]
        args = [override.asset, doc, ttl_ms, by, override.reason, CHANGES, AUDIT_MAXLEN]
        return bool(await self._set_override(keys=keys, args=args))

    async def clear_all(self, by: str, reason: str, peer: str, now: datetime) -> int:
        """Latch the kill switch and drop every signal adjustment and override; the number still active."""
        now_ms = int(now.timestamp() * 1000)
        args = [by, reason, now.isoformat(), peer, now_ms, CHANGES, AUDIT_MAXLEN]
        return int(await self._clear_all(keys=[KILL, ASSETS, AUDIT], args=args))

    async def release(self, by: str, reason: str, peer: str) -> bool:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(KILL)
            pipe.xadd(
                AUDIT,
                {"event": "kill_switch_released", "by": by, "reason": reason, "peer": peer},
                maxlen=AUDIT_MAXLEN,
                approximate=True,
            )
            pipe.publish(CHANGES, ALL)
            deleted, *_ = await pipe.execute()
        return bool(deleted)

    async def prune(self, asset: str, signal_ids: Iterable[str]) -> None:
        """Forget ended signals (their seen key keeps a redelivery from applying them again)."""
        ids = list(signal_ids)
        if ids:
            await self.redis.hdel(SIGNALS + asset, *ids)

    async def push_mid(self, asset: str, mid: float, when: datetime, new_asset: bool) -> str:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(
                MARKET + asset,
                {"mid": repr(mid), "time_ms": int(when.timestamp() * 1000)},
                maxlen=self.market_maxlen,
                approximate=True,
            )
            if new_asset:
                pipe.sadd(ASSETS, asset)
            entry_id, *_ = await pipe.execute()
        return _s(entry_id)

    async def audit(self, count: int = 100) -> list[dict[str, str]]:
        entries = await self.redis.xrange(AUDIT, count=count)
        return [{_s(k): _s(v) for k, v in fields.items()} | {"entry_id": _s(e)} for e, fields in entries]


def _kill_switch(doc: dict[bytes, bytes]) -> KillSwitch | None:
    if not doc:
        return None
    fields = {_s(k): _s(v) for k, v in doc.items()}
    at = fields.get("at", "")
    return KillSwitch(
        by=fields.get("by", ""),
        reason=fields.get("reason", ""),
        at=datetime.fromisoformat(at) if at else datetime.fromtimestamp(0, UTC),
    )


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
