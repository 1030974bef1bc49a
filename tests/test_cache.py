"""The live cache on both backends; a Redis that is down degrades, then recovers."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from framewatch.live.cache import LiveCache, MemoryBackend, RedisBackend
from tests.conftest import redis_url_or_skip
from tests.support.servers import free_port


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest) -> LiveCache:
    if request.param == "memory":
        backend: MemoryBackend | RedisBackend = MemoryBackend()
    else:
        backend = RedisBackend(redis_url_or_skip())
    # A fresh prefix per test: tests never see each other's keys in a shared Redis.
    live = LiveCache(backend, prefix=f"test-{uuid.uuid4().hex[:8]}")
    yield live  # type: ignore[misc]
    await backend.close()


async def test_values_expire_after_their_ttl(cache: LiveCache) -> None:
    await cache.set("frame", "k", {"a": [1, 2]}, ttl_seconds=0.3)
    assert await cache.get("frame", "k") == {"a": [1, 2]}
    await asyncio.sleep(0.45)
    assert await cache.get("frame", "k") is None


async def test_hits_and_misses_are_counted_per_kind(cache: LiveCache) -> None:
    await cache.set("frame", "k", 1, ttl_seconds=10)
    await cache.get("frame", "k")
    await cache.get("frame", "k")
    await cache.get("frame", "other")
    await cache.get("state", "gate")
    assert cache.stats() == {
        "frame": {"hits": 2, "misses": 1, "errors": 0},
        "state": {"hits": 0, "misses": 1, "errors": 0},
    }


async def test_delete_invalidates(cache: LiveCache) -> None:
    await cache.set("live", "gate", {"n": 1}, ttl_seconds=10)
    await cache.delete("live", "gate")
    assert await cache.get("live", "gate") is None


async def test_memory_backend_evicts_least_recently_used() -> None:
    cache = LiveCache(MemoryBackend(max_entries=2))
    await cache.set("k", "a", 1, 10)
    await cache.set("k", "b", 2, 10)
    assert await cache.get("k", "a") == 1  # a is now the most recent
    await cache.set("k", "c", 3, 10)
    assert await cache.get("k", "b") is None
    assert await cache.get("k", "a") == 1
    assert await cache.get("k", "c") == 3


async def test_redis_down_counts_errors_and_answers_miss() -> None:
    # Nothing listens on this port: every call fails fast and is absorbed.
    cache = LiveCache(RedisBackend(f"redis://127.0.0.1:{free_port()}/0"))
    await cache.set("frame", "k", 1, ttl_seconds=10)
    assert await cache.get("frame", "k") is None
    assert cache.stats()["frame"] == {"hits": 0, "misses": 1, "errors": 2}
    await cache.backend.close()
