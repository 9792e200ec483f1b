"""Where accepted items go: once per id onto the `news.raw` stream, atomically (seen-key + XADD in one
Lua call), with each item's own trace context."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from services.runtime.streams import message_fields
from tapewatch.news.v1 import news_pb2

RAW_STREAM = "news.raw"

# KEYS[1] seen-key, KEYS[2] stream; ARGV[1] ttl_s, ARGV[2] maxlen, ARGV[3..] field/value pairs.
_PUT_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
end
return false
"""


@dataclass(frozen=True)
class Prepared:
    item_id: str
    keys: list[str]
    args: list[bytes | str | int]


@dataclass(frozen=True)
class PutResult:
    item_id: str
    entry_id: str  # "" when the item was already stored

    @property
    def duplicate(self) -> bool:
        return not self.entry_id


class RawNewsStore:
    def __init__(
        self,
        redis: aioredis.Redis,
        stream: str = RAW_STREAM,
        seen_ttl_s: int = 7 * 86400,
        maxlen: int = 1_000_000,
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.seen_ttl_s = seen_ttl_s
        self.maxlen = maxlen
        self._script = redis.register_script(_PUT_ONCE)

    def prepare(self, item: news_pb2.NewsItem) -> Prepared:
        """Freeze the item's write with the trace context current now (one trace per item)."""
        fields = message_fields(item.SerializeToString(), item.id)
        args: list[bytes | str | int] = [self.seen_ttl_s, self.maxlen]
        for k, v in fields.items():
            args += [k, v]
        return Prepared(item.id, [f"tw:seen:{item.id}", self.stream], args)

    async def put(self, item: news_pb2.NewsItem) -> PutResult:
        return (await self.put_prepared([self.prepare(item)]))[0]

    async def put_prepared(self, batch: Sequence[Prepared]) -> list[PutResult]:
        """Write a batch in one round trip; each item is stored at most once."""
        if len(batch) == 1:
            p = batch[0]
            return [PutResult(p.item_id, _entry(await self._script(keys=p.keys, args=p.args)))]
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in batch:
                await self._script(keys=p.keys, args=p.args, client=pipe)
            replies = await pipe.execute()
        return [PutResult(p.item_id, _entry(r)) for p, r in zip(batch, replies, strict=True)]


def _entry(reply: object) -> str:
    if not reply:
        return ""
    return reply.decode() if isinstance(reply, bytes) else str(reply)
