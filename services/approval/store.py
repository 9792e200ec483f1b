"""Signals in Redis and their one-way moves: pending -> approved | rejected | expired.

Every move is one Lua script, so it happens once whoever asks: it checks the signal is still pending
(and, for a decision, not past its expiry), writes the new state, appends the audit event and, for an
approval, the message on `signals.approved` and the feedback example, all in the same atomic step.

Keys: tw:approval:signal:<id> (hash: state, signal bytes, actor, times, trace context),
tw:approval:pending (zset id -> expires_at ms), tw:approval:history (list, newest first),
tw:approval:audit (stream, append-only), tw:approval:feedback (stream of labelled examples).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis

from tapewatch.approval.v1 import approval_pb2

SIGNAL_PREFIX = "tw:approval:signal:"
PENDING_KEY = "tw:approval:pending"
HISTORY_KEY = "tw:approval:history"
AUDIT_STREAM = "tw:approval:audit"
FEEDBACK_STREAM = "tw:approval:feedback"

EVENT_NEW = "signal.new"
EVENT_APPROVED = "signal.approved"
EVENT_REJECTED = "signal.rejected"
EVENT_EXPIRED = "signal.expired"
EVENT_KILL_SWITCH = "quoting.kill_switch"

_ADMIT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'state', 'PENDING', 'signal', ARGV[2], 'created_ms', ARGV[3],
  'expires_ms', ARGV[4], 'traceparent', ARGV[5], 'tracestate', ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
local audit = {'event', 'signal.new', 'signal_id', ARGV[1], 'actor', ARGV[7], 'at_ms', ARGV[9],
  'before', '{}', 'after', ARGV[8], 'signal', ARGV[2]}
if ARGV[5] ~= '' then table.insert(audit, 'traceparent'); table.insert(audit, ARGV[5]) end
redis.call('XADD', KEYS[3], '*', unpack(audit))
return 1
"""

# ARGV: 1 id, 2 mode (decide|expire), 3 now ms, 4 new state, 5 signal bytes, 6 actor, 7 event,
# 8 before json, 9 after json, 10 traceparent, 11 tracestate, 12 publish approved (1|0),
# 13 feedback json or '', 14 history size, 15 ttl s of a decided signal, 16 approved stream maxlen
_TRANSITION = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing'} end
if state ~= 'PENDING' then
  local done = redis.call('HMGET', KEYS[1], 'actor', 'decided_ms')
  return {'done', state, done[1] or '', done[2] or ''}
end
local expires = tonumber(redis.call('HGET', KEYS[1], 'expires_ms'))
local now = tonumber(ARGV[3])
if ARGV[2] == 'decide' and now >= expires then return {'late', tostring(expires)} end
if ARGV[2] == 'expire' and now < expires then return {'early', tostring(expires)} end
redis.call('HSET', KEYS[1], 'state', ARGV[4], 'signal', ARGV[5], 'actor', ARGV[6], 'decided_ms', ARGV[3])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[15]))
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('LPUSH', KEYS[4], ARGV[1])
redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[14]) - 1)
local trace = {}
if ARGV[10] ~= '' then table.insert(trace, 'traceparent'); table.insert(trace, ARGV[10]) end
if ARGV[11] ~= '' then table.insert(trace, 'tracestate'); table.insert(trace, ARGV[11]) end
local audit = redis.call('XADD', KEYS[3], '*', 'event', ARGV[7], 'signal_id', ARGV[1], 'actor', ARGV[6],
  'at_ms', ARGV[3], 'before', ARGV[8], 'after', ARGV[9], 'signal', ARGV[5], unpack(trace))
if ARGV[12] == '1' then
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[16], '*', 'data', ARGV[5], 'key', ARGV[1], unpack(trace))
end
if ARGV[13] ~= '' then
  redis.call('XADD', KEYS[6], '*', 'signal_id', ARGV[1], 'example', ARGV[13])
end
return {'ok', audit}
"""


def signal_key(signal_id: str) -> str:
    return SIGNAL_PREFIX + signal_id


@dataclass(frozen=True)
class StoredSignal:
    signal: approval_pb2.Signal
    state: str
    carrier: dict[str, str]  # the W3C trace context the signal arrived with
    actor: str
    decided_ms: int


@dataclass(frozen=True)
class Outcome:
    """What a transition found: ok (it happened), done (someone got there first), late, early, missing."""

    status: Literal["ok", "done", "late", "early", "missing"]
    state: str = ""
    actor: str = ""
    at_ms: int = 0
    audit_id: str = ""


@dataclass(frozen=True)
class AuditEvent:
    entry_id: str
    event: str
    signal_id: str
    actor: str
    at_ms: int
    before: dict[str, Any]
    after: dict[str, Any]
    signal: approval_pb2.Signal | None

    @classmethod
    def parse(cls, entry_id: bytes | str, fields: dict[bytes, bytes]) -> AuditEvent:
        raw = fields.get(b"signal")
        return cls(
            entry_id=_s(entry_id),
            event=_s(fields.get(b"event", b"")),
            signal_id=_s(fields.get(b"signal_id", b"")),
            actor=_s(fields.get(b"actor", b"")),
            at_ms=int(fields.get(b"at_ms", b"0")),
            before=json.loads(fields.get(b"before", b"{}")),
            after=json.loads(fields.get(b"after", b"{}")),
            signal=approval_pb2.Signal.FromString(raw) if raw else None,
        )


class SignalStore:
    def __init__(
        self,
        redis: aioredis.Redis,
        approved_stream: str = "signals.approved",
        history_size: int = 500,
        decided_ttl_s: int = 7 * 86400,
        approved_maxlen: int = 1_000_000,
    ) -> None:
        self.redis = redis
        self.approved_stream = approved_stream
        self.history_size = history_size
        self.decided_ttl_s = decided_ttl_s
        self.approved_maxlen = approved_maxlen
        self._admit = redis.register_script(_ADMIT)
        self._transition = redis.register_script(_TRANSITION)

    async def admit(
        self,
        signal: approval_pb2.Signal,
        carrier: dict[str, str],
        after: dict[str, Any],
        actor: str,
        now_ms: int,
    ) -> bool:
        """Store a new pending signal and its audit event; False when it is already known (a retry)."""
        created = await self._admit(
            keys=[signal_key(signal.id), PENDING_KEY, AUDIT_STREAM],
            args=[
                signal.id,
                signal.SerializeToString(),
                signal.created_at.ToMilliseconds(),
                signal.expires_at.ToMilliseconds(),
                carrier.get("traceparent", ""),
                carrier.get("tracestate", ""),
                actor,
                json.dumps(after, separators=(",", ":")),
                now_ms,
            ],
        )
        return bool(created)

    async def transition(
        self,
        after: approval_pb2.Signal,
        *,
        mode: Literal["decide", "expire"],
        now_ms: int,
        actor: str,
        event: str,
        before_doc: dict[str, Any],
        after_doc: dict[str, Any],
        carrier: dict[str, str],
        publish_approved: bool = False,
        feedback: dict[str, Any] | None = None,
    ) -> Outcome:
        reply = await self._transition(
            keys=[
                signal_key(after.id),
                PENDING_KEY,
                AUDIT_STREAM,
                HISTORY_KEY,
                self.approved_stream,
                FEEDBACK_STREAM,
            ],
            args=[
                after.id,
                mode,
                now_ms,
                approval_pb2.SignalState.Name(after.state).removeprefix("SIGNAL_STATE_"),
                after.SerializeToString(),
                actor,
                event,
                json.dumps(before_doc, separators=(",", ":")),
                json.dumps(after_doc, separators=(",", ":")),
                carrier.get("traceparent", ""),
                carrier.get("tracestate", ""),
                "1" if publish_approved else "0",
                json.dumps(feedback, separators=(",", ":")) if feedback else "",
                self.history_size,
                self.decided_ttl_s,
                self.approved_maxlen,
            ],
        )
        status = _s(reply[0])
        if status == "ok":
            return Outcome("ok", audit_id=_s(reply[1]))
        if status == "done":
            return Outcome("done", state=_s(reply[1]), actor=_s(reply[2]), at_ms=int(reply[3] or 0))
        if status in ("late", "early"):
            return Outcome(status, at_ms=int(float(reply[1])))  # type: ignore[arg-type]
        return Outcome("missing")

    async def get(self, signal_id: str) -> StoredSignal | None:
        doc = await self.redis.hgetall(signal_key(signal_id))
        if not doc:
            return None
        carrier = {k: _s(doc[k.encode()]) for k in ("traceparent", "tracestate") if doc.get(k.encode())}
        return StoredSignal(
            signal=approval_pb2.Signal.FromString(doc[b"signal"]),
            state=_s(doc[b"state"]),
            carrier=carrier,
            actor=_s(doc.get(b"actor", b"")),
            decided_ms=int(doc.get(b"decided_ms", b"0") or 0),
        )

    async def _signals(self, ids: list[bytes]) -> list[approval_pb2.Signal]:
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for signal_id in ids:
                pipe.hget(signal_key(_s(signal_id)), "signal")
            raws = await pipe.execute()
        return [approval_pb2.Signal.FromString(raw) for raw in raws if raw]

    async def pending(self) -> list[approval_pb2.Signal]:
        """Pending signals, soonest expiry first."""
        return await self._signals(await self.redis.zrange(PENDING_KEY, 0, -1))

    async def history(self, count: int = 100) -> list[approval_pb2.Signal]:
        """Decided and expired signals, newest first."""
        return await self._signals(await self.redis.lrange(HISTORY_KEY, 0, count - 1))

    async def due(self, now_ms: int, limit: int = 100) -> list[str]:
        ids = await self.redis.zrangebyscore(PENDING_KEY, "-inf", now_ms, start=0, num=limit)
        return [_s(i) for i in ids]

    async def record(
        self, event: str, actor: str, at_ms: int, before: dict[str, Any], after: dict[str, Any]
    ) -> str:
        """Append an event that is not a signal's move (e.g. the kill switch) to the audit log."""
        entry = await self.redis.xadd(
            AUDIT_STREAM,
            {
                "event": event,
                "signal_id": "",
                "actor": actor,
                "at_ms": str(at_ms),
                "before": json.dumps(before, separators=(",", ":")),
                "after": json.dumps(after, separators=(",", ":")),
            },
        )
        return _s(entry)

    async def audit_tail_id(self) -> str:
        last = await self.redis.xrevrange(AUDIT_STREAM, count=1)
        return _s(last[0][0]) if last else "0-0"

    async def read_audit(self, after_id: str, block_ms: int, count: int = 256) -> list[AuditEvent]:
        reply = await self.redis.xread({AUDIT_STREAM: after_id}, count=count, block=block_ms)
        return [AuditEvent.parse(eid, fields) for _, entries in reply or [] for eid, fields in entries]

    async def audit_log(self, count: int = 10_000) -> list[AuditEvent]:
        return [AuditEvent.parse(eid, f) for eid, f in await self.redis.xrange(AUDIT_STREAM, count=count)]


def _s(v: bytes | str) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)
