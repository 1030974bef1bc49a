"""A small TTL cache with two backends: in-process memory (the default) and Redis.

Values are JSON. Keys are `<prefix>:<kind>:<key>`. A Redis that is down never fails a request:
the read counts as a miss, the error is counted and logged, and the next call tries again.

`get_or_build` rebuilds a missing value once per process however many requests miss it at the
same time (single-flight): without it, every request in flight when an entry expires or is
invalidated rebuilds it from the database — a stampede that made the live endpoint's p99.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import redis.asyncio as redis
from redis.exceptions import RedisError

from framewatch.core.errors import FramewatchError

log = logging.getLogger(__name__)

# How long one rebuild may take before it is abandoned (and its waiters answered 503): longer
# than a database pool wait (FRAMEWATCH_DATABASE_POOL_TIMEOUT_SECONDS, 10 s by default), so that a
# busy database answers with its own error first.
REBUILD_TIMEOUT_SECONDS = 30.0


class RebuildTimedOut(FramewatchError):
    status_code = 503
    code = "cache_rebuild_timeout"


class CacheBackend(Protocol):
    name: str

    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None: ...
    async def delete(self, key: str) -> None: ...
    async def incr(self, key: str) -> int: ...
    async def get_at_generation(self, counter: str, before: str,
                                after: str) -> tuple[str, bytes | None]: ...
    async def ping(self) -> None: ...
    async def close(self) -> None: ...


class MemoryBackend:
    """An LRU dict with per-key expiry, for a single process."""

    name = "memory"

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._counters: dict[str, int] = {}
        self._max_entries = max_entries

    async def get(self, key: str) -> bytes | None:
        if key in self._counters:  # counters never expire, like Redis INCR keys
            return str(self._counters[key]).encode()
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        self._entries[key] = (time.monotonic() + ttl_seconds, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)

    async def incr(self, key: str) -> int:
        self._counters[key] = self._counters.get(key, 0) + 1
        return self._counters[key]

    async def get_at_generation(self, counter: str, before: str,
                                after: str) -> tuple[str, bytes | None]:
        """The counter `counter` ("0" when unset), and the value at `before + it + after`."""
        generation = str(self._counters.get(counter, 0))
        return generation, await self.get(before + generation + after)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._entries.clear()


# A generation counter and the entry stored under it, in one round trip instead of two (the
# entry's key is only known once the counter is read). Its key is built in the script, so this
# needs a single Redis (not a Redis Cluster, where keys must be declared).
_GET_AT_GENERATION = """
local generation = redis.call('GET', KEYS[1]) or '0'
return {generation, redis.call('GET', ARGV[1] .. generation .. ARGV[2])}
"""


class RedisBackend:
    name = "redis"

    def __init__(self, url: str) -> None:
        # Short timeouts: a dead Redis must cost a request milliseconds, not seconds.
        self._client = redis.Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=10
        )
        self._get_at_generation = self._client.register_script(_GET_AT_GENERATION)
        # Reads at a generation in flight: the same read asked for meanwhile (many pollers of
        # one view) waits for the answer of the one on its way instead of making its own round
        # trip. That answer is at most one round trip older than the request.
        self._reads: dict[tuple[str, str, str], asyncio.Task[tuple[str, bytes | None]]] = {}
        self.round_trips = 0

    async def get_at_generation(self, counter: str, before: str,
                                after: str) -> tuple[str, bytes | None]:
        which = (counter, before, after)
        read = self._reads.get(which)
        if read is None:
            read = asyncio.create_task(self._read_at_generation(counter, before, after))
            self._reads[which] = read
            read.add_done_callback(lambda task: self._read_done(which, task))
        # shield: a request that goes away stops waiting; the read goes on for the others.
        return await asyncio.shield(read)

    async def _read_at_generation(self, counter: str, before: str,
                                  after: str) -> tuple[str, bytes | None]:
        self.round_trips += 1
        generation, value = await self._get_at_generation(keys=[counter], args=[before, after])
        return (generation.decode() if isinstance(generation, bytes) else str(generation),
                value if isinstance(value, bytes) else None)

    def _read_done(self, which: tuple[str, str, str],
                   task: asyncio.Task[tuple[str, bytes | None]]) -> None:
        if self._reads.get(which) is task:
            del self._reads[which]
        if not task.cancelled():
            task.exception()  # retrieved here too: its waiters may all have gone away

    async def get(self, key: str) -> bytes | None:
        value = await self._client.get(key)
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        await self._client.set(key, value, px=max(1, int(ttl_seconds * 1000)))

    async def delete(self, key: str) -> None:
        await self._client.delete(key)

    async def incr(self, key: str) -> int:
        return int(await self._client.incr(key))

    async def ping(self) -> None:
        await self._client.ping()

    async def close(self) -> None:
        reads = list(self._reads.values())
        for read in reads:
            read.cancel()
        await asyncio.gather(*reads, return_exceptions=True)
        await self._client.aclose()


class LiveCache:
    """JSON values by kind and key, with counters per kind:

    - `hits`: answered without building — from the stored entry, or (with `get_or_build`) by
      waiting for the rebuild another request of this process had already started;
    - `coalesced`: those of the hits that waited for another request's rebuild;
    - `misses`: the value was not stored (with `get_or_build`: this request built it);
    - `errors`: backend calls that failed (Redis down), each also a miss when it was a read.

    So hits + misses is every lookup, and misses is the work done on the database.
    """

    def __init__(self, backend: CacheBackend, prefix: str = "framewatch",
                 rebuild_timeout_seconds: float = REBUILD_TIMEOUT_SECONDS) -> None:
        self.backend = backend
        self.prefix = prefix
        self.rebuild_timeout_seconds = rebuild_timeout_seconds
        self.hits: Counter[str] = Counter()
        self.misses: Counter[str] = Counter()
        self.coalesced: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        # Rebuilds in flight in this process, by full key: the requests that miss the same key
        # meanwhile await the same task instead of starting their own.
        self._rebuilds: dict[str, asyncio.Task[bytes]] = {}

    def _key(self, kind: str, key: str) -> str:
        return f"{self.prefix}:{kind}:{key}"

    async def get(self, kind: str, key: str) -> Any | None:
        try:
            raw = await self.backend.get(self._key(kind, key))
        except RedisError as exc:
            self._degraded(kind, "get", exc)
            raw = None
        if raw is None:
            self.misses[kind] += 1
            return None
        self.hits[kind] += 1
        return json.loads(raw)

    async def get_bytes(self, kind: str, key: str) -> bytes | None:
        """A value stored with `set_bytes`, as is (no JSON decoding: the fast path)."""
        raw = await self._read(kind, self._key(kind, key))
        if raw is None:
            self.misses[kind] += 1
            return None
        self.hits[kind] += 1
        return raw

    async def get_or_build_bytes(self, kind: str, key: str,
                                 build: Callable[[], Awaitable[bytes]],
                                 ttl_seconds: float) -> bytes:
        """The value of (kind, key); when missing, `build()` makes it and it is stored for
        `ttl_seconds` — one `build` at a time per key in this process: requests that miss while
        it runs wait for it and get its value, or its exception.

        The build runs in a task of its own, so a caller that goes away (cancelled) neither
        cancels it nor leaves the others waiting; it gives up after `rebuild_timeout_seconds`
        (`RebuildTimedOut`, 503), so nobody waits forever. `build` must therefore not use
        anything that belongs to the calling request (its database session): it opens its own.
        """
        full_key = self._key(kind, key)
        raw = await self._read(kind, full_key)
        if raw is not None:
            self.hits[kind] += 1
            return raw
        return await self._build_once(kind, full_key, build, ttl_seconds)

    async def get_or_build_at_generation(
        self, kind: str, of: str, key: str, build: Callable[[], Awaitable[bytes]],
        ttl_seconds: float,
    ) -> bytes:
        """`get_or_build_bytes` of `<generation>:<key>`, where the generation is (kind, of)'s
        current one (see `generation`): what `bump(kind, of)` invalidates. The generation and
        the entry are read together, in one round trip with Redis."""
        try:
            generation, raw = await self.backend.get_at_generation(
                self._key(f"{kind}-gen", of), self._key(kind, ""), f":{key}")
        except RedisError as exc:
            self._degraded(kind, "get", exc)
            generation, raw = "x", None
        if raw is not None:
            self.hits[kind] += 1
            return raw
        return await self._build_once(kind, self._key(kind, f"{generation}:{key}"), build,
                                      ttl_seconds)

    async def _build_once(self, kind: str, full_key: str, build: Callable[[], Awaitable[bytes]],
                          ttl_seconds: float) -> bytes:
        # No await from here to the registration: two requests cannot both see no rebuild.
        rebuild = self._rebuilds.get(full_key)
        if rebuild is None:
            self.misses[kind] += 1
            rebuild = asyncio.create_task(self._rebuild(kind, full_key, build, ttl_seconds),
                                          name=f"cache rebuild {full_key}")
            self._rebuilds[full_key] = rebuild
            rebuild.add_done_callback(lambda task: self._rebuild_done(full_key, task))
        else:
            self.hits[kind] += 1
            self.coalesced[kind] += 1
        # shield: a waiter that is cancelled stops waiting; the rebuild goes on for the others.
        return await asyncio.shield(rebuild)

    async def get_or_build(self, kind: str, key: str, build: Callable[[], Awaitable[Any]],
                           ttl_seconds: float) -> Any:
        """`get_or_build_bytes` for JSON values."""
        async def build_json() -> bytes:
            return json.dumps(await build()).encode()

        return json.loads(await self.get_or_build_bytes(kind, key, build_json, ttl_seconds))

    async def close(self) -> None:
        """Stop the rebuilds in flight (their waiters get CancelledError) and the backend."""
        rebuilds = list(self._rebuilds.values())
        for task in rebuilds:
            task.cancel()
        await asyncio.gather(*rebuilds, return_exceptions=True)
        await self.backend.close()

    async def _rebuild(self, kind: str, full_key: str, build: Callable[[], Awaitable[bytes]],
                       ttl_seconds: float) -> bytes:
        try:
            value = await asyncio.wait_for(build(), self.rebuild_timeout_seconds)
        except TimeoutError:
            log.warning("cache %s: rebuilding %s took over %.0f s; abandoned",
                        kind, full_key, self.rebuild_timeout_seconds)
            raise RebuildTimedOut(
                f"the {kind} view could not be rebuilt within "
                f"{self.rebuild_timeout_seconds:g} s; retry in a moment",
                retry_after_seconds=1,
            ) from None
        try:
            await self.backend.set(full_key, value, ttl_seconds)
        except RedisError as exc:
            self._degraded(kind, "set", exc)
        return value

    def _rebuild_done(self, full_key: str, task: asyncio.Task[bytes]) -> None:
        if self._rebuilds.get(full_key) is task:
            del self._rebuilds[full_key]
        if not task.cancelled():
            task.exception()  # retrieved here too: its waiters may all have gone away

    async def _read(self, kind: str, full_key: str) -> bytes | None:
        try:
            return await self.backend.get(full_key)
        except RedisError as exc:
            self._degraded(kind, "get", exc)
            return None

    async def set_bytes(self, kind: str, key: str, value: bytes, ttl_seconds: float) -> None:
        try:
            await self.backend.set(self._key(kind, key), value, ttl_seconds)
        except RedisError as exc:
            self._degraded(kind, "set", exc)

    async def set(self, kind: str, key: str, value: Any, ttl_seconds: float) -> None:
        try:
            await self.backend.set(self._key(kind, key), json.dumps(value).encode(), ttl_seconds)
        except RedisError as exc:
            self._degraded(kind, "set", exc)

    async def delete(self, kind: str, key: str) -> None:
        try:
            await self.backend.delete(self._key(kind, key))
        except RedisError as exc:
            self._degraded(kind, "delete", exc)

    async def generation(self, kind: str, key: str) -> str:
        """The current generation of (kind, key): part of the cache key of anything derived
        from it, so that `bump` invalidates every such entry at once. "x" when unknown."""
        try:
            raw = await self.backend.get(self._key(f"{kind}-gen", key))
        except RedisError as exc:
            self._degraded(kind, "generation", exc)
            return "x"
        return raw.decode() if raw is not None else "0"

    async def bump(self, kind: str, key: str) -> None:
        """Invalidate every entry built on (kind, key)'s current generation."""
        try:
            await self.backend.incr(self._key(f"{kind}-gen", key))
        except RedisError as exc:
            self._degraded(kind, "bump", exc)

    def stats(self) -> dict[str, dict[str, int]]:
        kinds = set(self.hits) | set(self.misses) | set(self.errors)
        return {
            kind: {
                "hits": self.hits[kind],
                "misses": self.misses[kind],
                "coalesced": self.coalesced[kind],
                "errors": self.errors[kind],
            }
            for kind in sorted(kinds)
        }

    def _degraded(self, kind: str, operation: str, exc: Exception) -> None:
        self.errors[kind] += 1
        log.warning("cache %s %s failed on %s; answering without it: %s",
                    kind, operation, self.backend.name, exc)


def create_cache(redis_url: str | None) -> LiveCache:
    return LiveCache(RedisBackend(redis_url) if redis_url else MemoryBackend())
