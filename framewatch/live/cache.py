"""A small TTL cache with two backends: in-process memory (the default) and Redis.

Values are JSON. Keys are `<prefix>:<kind>:<key>`. A Redis that is down never fails a request:
the read counts as a miss, the error is counted and logged, and the next call tries again.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, OrderedDict
from typing import Any, Protocol

import redis.asyncio as redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class CacheBackend(Protocol):
    name: str

    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None: ...
    async def delete(self, key: str) -> None: ...
    async def incr(self, key: str) -> int: ...
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

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._entries.clear()


class RedisBackend:
    name = "redis"

    def __init__(self, url: str) -> None:
        # Short timeouts: a dead Redis must cost a request milliseconds, not seconds.
        self._client = redis.Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=10
        )

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
        await self._client.aclose()


class LiveCache:
    """JSON values by kind and key, with hit/miss/error counters per kind."""

    def __init__(self, backend: CacheBackend, prefix: str = "framewatch") -> None:
        self.backend = backend
        self.prefix = prefix
        self.hits: Counter[str] = Counter()
        self.misses: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

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
        try:
            raw = await self.backend.get(self._key(kind, key))
        except RedisError as exc:
            self._degraded(kind, "get", exc)
            raw = None
        if raw is None:
            self.misses[kind] += 1
            return None
        self.hits[kind] += 1
        return raw

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
