"""The story window in Redis: a RediSearch HNSW index (cosine) over the first item of every story, and the
stories with their echoes. All state lives here, so a restarted or added dedup process carries on.

Keys (prefix `tw:dedup:` by default):

- `story:<id>` HASH: `vec` (FLOAT32 bytes), `first_seen` and `last_seen` (ms since the epoch, the items'
  published times), `echo_count`, `text` (the first item's text, for the second look), `first_item`
  (the NewsItem). The index `idx` covers `story:*` hashes that still have `vec`; `first_seen` is its
  NUMERIC field, so a KNN query only sees stories first seen within the window before the item.
- `echoes:<id>` ZSET item id by delay (ms after first seen) and `echo:<id>` HASH item id -> Echo: the
  `echoes_kept` fastest echoes. `sources:<id>` and `platforms:<id>` HASH name -> copies.
- `item:<item id>` STRING: the story the item went to. Written in the same script as the story change,
  so a redelivered item is recognised and never counted twice.
- `seq` STRING: bumped by every new story; `tape` STRING: the latest published time seen (ms);
  `stats` HASH: counters; `meta` HASH: the index's dimension.

Leaving the window: the sweep deletes `vec` from stories first seen more than the window before the tape
time (the newest item seen, not the wall clock, so a replay of old news keeps its window), which drops
them from the index, and gives all their keys a TTL of `story_ttl_s` (default 7 days): GetStory still
answers for a week, then the story is gone.

Race safety (two copies at once on two consumers): KNN cannot run inside a Lua script, so a new story is
claimed optimistically. The consumer reads `seq`, then searches (one round trip, in that order), then
asks the create script to add the story only if `seq` is unchanged. RediSearch indexes a hash as it is
written, so a story created before the `seq` read is in the search; one created after it changed `seq`,
and the claim fails: the consumer searches again (now seeing the other copy's story) and decides again.
Attaching an echo needs no claim: it only needs the story to exist, which the script checks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import redis.asyncio as aioredis
from google.protobuf.timestamp_pb2 import Timestamp
from redis.exceptions import ResponseError

from services.model_client.fingerprint import as_bytes, probe_cosine, same_embedder
from services.runtime.streams import message_fields
from tapewatch.news.v1 import news_pb2

_CREATE = """
local prior = redis.call('GET', KEYS[1])
if prior then return {'seen', prior} end
if redis.call('EXISTS', KEYS[3]) == 1 then return {'seen', ARGV[2]} end
local seq = redis.call('GET', KEYS[2]) or '0'
if seq ~= ARGV[1] then return {'stale', seq} end
redis.call('INCR', KEYS[2])
local n = tonumber(ARGV[9])
local story = {}
for i = 10, 9 + n do story[#story + 1] = ARGV[i] end
redis.call('HSET', KEYS[3], unpack(story))
local message = {}
for i = 10 + n, #ARGV do message[#message + 1] = ARGV[i] end
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', unpack(message))
redis.call('HINCRBY', KEYS[7], ARGV[7], 1)
redis.call('HINCRBY', KEYS[8], ARGV[8], 1)
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('HINCRBY', KEYS[4], 'items_in', 1)
redis.call('HINCRBY', KEYS[4], 'stories', 1)
if ARGV[6] ~= '' then redis.call('HINCRBY', KEYS[4], ARGV[6], 1) end
if tonumber(ARGV[4]) > tonumber(redis.call('GET', KEYS[6]) or '0') then
  redis.call('SET', KEYS[6], ARGV[4])
end
return {'created', ARGV[2]}
"""

_ATTACH = """
local prior = redis.call('GET', KEYS[1])
if prior then return {'seen', prior} end
if redis.call('EXISTS', KEYS[2]) == 0 then return {'gone', ARGV[1]} end
redis.call('HINCRBY', KEYS[2], 'echo_count', 1)
if tonumber(ARGV[4]) > tonumber(redis.call('HGET', KEYS[2], 'last_seen') or '0') then
  redis.call('HSET', KEYS[2], 'last_seen', ARGV[4])
end
local keep = tonumber(ARGV[9])
if keep > 0 then
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[2])
  redis.call('HSET', KEYS[4], ARGV[2], ARGV[6])
  local extra = redis.call('ZCARD', KEYS[3]) - keep
  if extra > 0 then
    local slowest = redis.call('ZRANGE', KEYS[3], -extra, -1)
    redis.call('ZREMRANGEBYRANK', KEYS[3], -extra, -1)
    redis.call('HDEL', KEYS[4], unpack(slowest))
  end
end
redis.call('HINCRBY', KEYS[5], ARGV[7], 1)
redis.call('HINCRBY', KEYS[6], ARGV[8], 1)
local ttl = redis.call('PTTL', KEYS[2])
if ttl > 0 then
  for i = 3, 6 do redis.call('PEXPIRE', KEYS[i], ttl) end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('HINCRBY', KEYS[7], 'items_in', 1)
redis.call('HINCRBY', KEYS[7], 'duplicates', 1)
if ARGV[10] ~= '' then redis.call('HINCRBY', KEYS[7], ARGV[10], 1) end
if tonumber(ARGV[11]) > tonumber(redis.call('GET', KEYS[8]) or '0') then
  redis.call('SET', KEYS[8], ARGV[11])
end
return {'attached', ARGV[1]}
"""


class IndexMismatch(RuntimeError):
    """The index in Redis was built by another embedder (other size, or the same size and other weights)."""


@dataclass(frozen=True)
class Neighbour:
    story_id: str
    similarity: float
    first_seen_ms: int
    text: str


@dataclass(frozen=True)
class Claim:
    status: str  # created | attached | seen (the item was placed before) | stale | gone
    story_id: str


def story_id_for(item_id: str) -> str:
    """A story is named after its first item, so a retried first item names the same story."""
    return "st_" + hashlib.sha256(item_id.encode()).hexdigest()[:20]


def _s(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def reply_field(reply: dict[Any, Any], name: str, default: Any = None) -> Any:
    """A field of a RESP3 map reply, whether its keys came back as bytes or as text."""
    value = reply.get(name.encode(), reply.get(name))
    return default if value is None else value


def _search_rows(reply: Any) -> tuple[int, list[tuple[str, dict[str, bytes]]]]:
    """(total, [(key, fields)]) from an FT.SEARCH reply in RESP2 (a list) or RESP3 (a map)."""
    if isinstance(reply, dict):
        rows = []
        for result in reply_field(reply, "results", []):
            key = _s(reply_field(result, "id", b""))
            attrs = reply_field(result, "extra_attributes", {})
            rows.append((key, {_s(k): v for k, v in attrs.items()}))
        return int(reply_field(reply, "total_results", 0)), rows
    total, rest = int(reply[0]), reply[1:]
    rows = []
    i = 0
    while i < len(rest):
        key = _s(rest[i])
        fields: dict[str, bytes] = {}
        if i + 1 < len(rest) and isinstance(rest[i + 1], list):
            flat = rest[i + 1]
            fields = {_s(flat[j]): flat[j + 1] for j in range(0, len(flat), 2)}
            i += 2
        else:
            i += 1
        rows.append((key, fields))
    return total, rows


def _ts(ms: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMilliseconds(int(ms))
    return ts


def echo_rate_per_min(echo_count: int, first_seen_ms: int, last_seen_ms: int) -> float:
    """Copies per minute from first to last seen, over at least one minute (a burst of 5 copies in 3 s
    is 5/min, not 100/min)."""
    minutes = max((last_seen_ms - first_seen_ms) / 60_000, 1.0)
    return round(echo_count / minutes, 3)


class StoryStore:
    def __init__(
        self,
        redis: aioredis.Redis,
        prefix: str = "tw:dedup:",
        unique_stream: str = "news.unique",
        unique_maxlen: int = 1_000_000,
        echoes_kept: int = 20,
        item_ttl_s: int = 8 * 86400,
        story_ttl_s: int = 7 * 86400,
        hnsw: tuple[int, int, int] = (16, 200, 20),
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.index = prefix + "idx"
        self.unique_stream = unique_stream
        self.unique_maxlen = unique_maxlen
        self.echoes_kept = echoes_kept
        self.item_ttl_s = item_ttl_s
        self.story_ttl_s = story_ttl_s
        self.hnsw = hnsw
        self.dim = 0
        self._create = redis.register_script(_CREATE)
        self._attach = redis.register_script(_ATTACH)

    # keys
    def story_key(self, story_id: str) -> str:
        return f"{self.prefix}story:{story_id}"

    def _aux_keys(self, story_id: str) -> list[str]:
        p = self.prefix
        return [
            f"{p}echoes:{story_id}",
            f"{p}echo:{story_id}",
            f"{p}sources:{story_id}",
            f"{p}platforms:{story_id}",
        ]

    def item_key(self, item_id: str) -> str:
        return f"{self.prefix}item:{item_id}"

    @property
    def seq_key(self) -> str:
        return self.prefix + "seq"

    @property
    def stats_key(self) -> str:
        return self.prefix + "stats"

    @property
    def tape_key(self) -> str:
        return self.prefix + "tape"

    # the index
    async def ensure_index(self, dim: int, probe: npt.NDArray[np.float32] | None = None) -> None:
        """Create the index for `dim`-dimensional vectors, or check that the existing one was built by this
        embedder: the same size and, when `probe` (the embedder's vector for PROBE_TEXT) is given, the same
        vector for it: stored vectors of another model would be compared with new ones silently."""
        meta = self.prefix + "meta"
        await self.redis.hsetnx(meta, "dim", dim)
        if probe is not None:
            await self.redis.hsetnx(meta, "probe", as_bytes(probe))
        stored_dim, stored_probe = await self.redis.hmget(meta, ["dim", "probe"])
        problem = ""
        if int(stored_dim or 0) != dim:
            problem = f"holds {int(stored_dim or 0)}-dimensional vectors but the embedder gives {dim}"
        elif probe is not None and stored_probe is not None:
            if not same_embedder(stored_probe, probe):
                problem = (
                    f"was built by another embedder (probe cosine {probe_cosine(stored_probe, probe):.4f})"
                )
        if problem:
            raise IndexMismatch(
                f"the dedup index {self.index} {problem}: the embedder changed. Start with another "
                f"TAPEWATCH_KEY_PREFIX, `tapewatch run --fresh`, or drop the old window "
                f"(FT.DROPINDEX {self.index} DD and DEL {meta})."
            )
        m, ef_construction, ef_runtime = self.hnsw
        try:
            await self.redis.execute_command(
                "FT.CREATE", self.index, "ON", "HASH", "PREFIX", "1", self.prefix + "story:",
                "FILTER", "exists(@vec)",
                "SCHEMA",
                "vec", "VECTOR", "HNSW", "12", "TYPE", "FLOAT32", "DIM", str(dim),
                "DISTANCE_METRIC", "COSINE",
                "M", str(m), "EF_CONSTRUCTION", str(ef_construction), "EF_RUNTIME", str(ef_runtime),
                "first_seen", "NUMERIC",
            )  # fmt: skip
        except ResponseError as exc:
            if "already exists" not in str(exc).lower():
                raise
        self.dim = dim

    async def search_with_seq(
        self, vec: npt.NDArray[np.float32], since_ms: int, k: int
    ) -> tuple[str, list[Neighbour]]:
        """The claim sequence number, read before the search, and the k nearest stories first seen at or
        after `since_ms`, nearest first. One round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(self.seq_key)
            pipe.execute_command(*self._knn_query(vec, since_ms, k))
            seq, reply = await pipe.execute()
        return (_s(seq) if seq is not None else "0"), self._neighbours(reply)

    async def search(self, vec: npt.NDArray[np.float32], since_ms: int, k: int) -> list[Neighbour]:
        return self._neighbours(await self.redis.execute_command(*self._knn_query(vec, since_ms, k)))

    def _knn_query(self, vec: npt.NDArray[np.float32], since_ms: int, k: int) -> list[Any]:
        blob = np.asarray(vec, dtype=np.float32).tobytes()
        return [
            "FT.SEARCH", self.index, f"(@first_seen:[{int(since_ms)} +inf])=>[KNN {k} @vec $v AS distance]",
            "PARAMS", "2", "v", blob, "SORTBY", "distance", "RETURN", "3", "distance", "first_seen", "text",
            "LIMIT", "0", str(k), "DIALECT", "2",
        ]  # fmt: skip

    def _neighbours(self, reply: Any) -> list[Neighbour]:
        _, rows = _search_rows(reply)
        story = self.prefix + "story:"
        return [
            Neighbour(
                story_id=key.removeprefix(story),
                similarity=1.0 - float(fields.get("distance", b"1")),
                first_seen_ms=int(float(fields.get("first_seen", b"0"))),
                text=_s(fields.get("text", b"")),
            )
            for key, fields in rows
        ]

    # changes
    async def item_story(self, item_id: str) -> str | None:
        value = await self.redis.get(self.item_key(item_id))
        return None if value is None else _s(value)

    async def create(
        self,
        item: news_pb2.NewsItem,
        vec: npt.NDArray[np.float32],
        seen_ms: int,
        expected_seq: str,
        stat: str = "",
    ) -> Claim:
        """Make `item` the first item of a new story and publish the story to `news.unique`, if no story was
        created since `expected_seq` was read; else Claim("stale")."""
        story_id = story_id_for(item.id)
        story = news_pb2.Story(
            id=story_id,
            first_item=item,
            echo_count=0,
            sources=[item.source],
            platforms=[item.platform],
            first_seen=_ts(seen_ms),
            last_seen=_ts(seen_ms),
            echo_rate_per_min=0.0,
        )
        fields: list[bytes | str | int] = [
            "vec", np.asarray(vec, dtype=np.float32).tobytes(), "first_seen", seen_ms, "last_seen", seen_ms,
            "echo_count", 0, "text", item.text, "first_item", item.SerializeToString(),
        ]  # fmt: skip
        message: list[bytes | str] = []
        for k, v in message_fields(story.SerializeToString(), story_id).items():
            message += [k, v]
        keys = [
            self.item_key(item.id), self.seq_key, self.story_key(story_id), self.stats_key,
            self.unique_stream, self.tape_key, *self._aux_keys(story_id)[2:],
        ]  # fmt: skip
        args = [
            expected_seq, story_id, self.item_ttl_s, seen_ms, self.unique_maxlen, stat, item.source,
            str(int(item.platform)), len(fields), *fields, *message,
        ]  # fmt: skip
        status, sid = await self._create(keys=keys, args=args)
        return Claim(_s(status), _s(sid))

    async def attach(
        self, item: news_pb2.NewsItem, neighbour: Neighbour, seen_ms: int, stat: str = ""
    ) -> Claim:
        """Count `item` as an echo of the neighbour's story; Claim("gone") when that story is gone."""
        delay = max(0, seen_ms - neighbour.first_seen_ms)
        echo = news_pb2.Echo(
            item_id=item.id,
            source=item.source,
            platform=item.platform,
            author=item.author,
            similarity=round(neighbour.similarity, 6),
            seen_at=_ts(seen_ms),
            delay_ms=delay,
        )
        keys = [
            self.item_key(item.id), self.story_key(neighbour.story_id), *self._aux_keys(neighbour.story_id),
            self.stats_key, self.tape_key,
        ]  # fmt: skip
        args = [
            neighbour.story_id, item.id, self.item_ttl_s, seen_ms, delay, echo.SerializeToString(),
            item.source, str(int(item.platform)), self.echoes_kept, stat, seen_ms,
        ]  # fmt: skip
        status, sid = await self._attach(keys=keys, args=args)
        return Claim(_s(status), _s(sid))

    async def count(self, stat: str, n: int = 1) -> None:
        await self.redis.hincrby(self.stats_key, stat, n)

    # reading
    async def get_story(self, story_id: str) -> news_pb2.Story | None:
        echoes_key, echo_key, sources_key, platforms_key = self._aux_keys(story_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self.story_key(story_id), "first_item", "first_seen", "last_seen", "echo_count")
            pipe.zrange(echoes_key, 0, -1)
            pipe.hgetall(echo_key)
            pipe.hgetall(sources_key)
            pipe.hgetall(platforms_key)
            (
                (first_item, first_seen, last_seen, echo_count),
                order,
                echoes,
                sources,
                platforms,
            ) = await pipe.execute()
        if first_item is None:
            return None
        item = news_pb2.NewsItem.FromString(first_item)
        first_ms, last_ms, count = int(first_seen), int(last_seen), int(echo_count)
        by_copies = sorted(((int(n), _s(name)) for name, n in sources.items()), key=lambda x: (-x[0], x[1]))
        source_names = [item.source] + [name for _, name in by_copies if name != item.source]
        platform_values = [
            int(item.platform),
            *sorted(int(p) for p in map(_s, platforms) if int(p) != int(item.platform)),
        ]
        return news_pb2.Story(
            id=story_id,
            first_item=item,
            echo_count=count,
            sources=source_names,
            platforms=platform_values,  # type: ignore[arg-type]
            first_seen=_ts(first_ms),
            last_seen=_ts(last_ms),
            echo_rate_per_min=echo_rate_per_min(count, first_ms, last_ms),
            echoes=[news_pb2.Echo.FromString(echoes[m]) for m in order if m in echoes],
        )

    async def stats(self) -> dict[str, int]:
        raw = await self.redis.hgetall(self.stats_key)
        return {_s(k): int(v) for k, v in raw.items()}

    async def tape_ms(self) -> int:
        return int(await self.redis.get(self.tape_key) or 0)

    async def stories_since(self, since_ms: int) -> int:
        reply = await self.redis.execute_command(
            "FT.SEARCH", self.index, f"@first_seen:[{int(since_ms)} +inf]", "LIMIT", "0", "0", "DIALECT", "2"
        )
        return _search_rows(reply)[0]

    async def sweep(self, before_ms: int, batch: int = 1000) -> int:
        """Drop stories first seen before `before_ms` from the index; records expire after story_ttl_s."""
        swept = 0
        while True:
            reply = await self.redis.execute_command(
                "FT.SEARCH", self.index, f"@first_seen:[-inf ({int(before_ms)}]", "NOCONTENT",
                "LIMIT", "0", str(batch), "DIALECT", "2",
            )  # fmt: skip
            _, rows = _search_rows(reply)
            if not rows:
                break
            story = self.prefix + "story:"
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, _ in rows:
                    pipe.hdel(key, "vec")
                    for k in (key, *self._aux_keys(key.removeprefix(story))):
                        pipe.expire(k, self.story_ttl_s)
                await pipe.execute()
            swept += len(rows)
        if swept:
            await self.count("swept", swept)
        return swept


def stats_fields(stats: dict[str, int]) -> dict[str, int]:
    """The StatsResponse counters from the stats hash."""
    return {
        "items_in": stats.get("items_in", 0),
        "stories": stats.get("stories", 0),
        "duplicates": stats.get("duplicates", 0),
        "ambiguous_settled": stats.get("ambiguous_duplicate", 0) + stats.get("ambiguous_new", 0),
        "llm_calls_saved": stats.get("duplicates", 0),
        "rejected": stats.get("rejected", 0),
        "contradicted": stats.get("contradicted", 0),
    }
