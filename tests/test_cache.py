"""The live cache on both backends; a Redis that is down degrades, then recovers; a missing
value is rebuilt once however many callers miss it at the same time (single-flight), and its
waiters never hang: they get the value, the builder's error, or a 503 after the bound."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest

from framewatch.live.cache import LiveCache, MemoryBackend, RebuildTimedOut, RedisBackend
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
        "frame": {"hits": 2, "misses": 1, "coalesced": 0, "errors": 0},
        "state": {"hits": 0, "misses": 1, "coalesced": 0, "errors": 0},
    }


async def test_delete_invalidates(cache: LiveCache) -> None:
    await cache.set("live", "gate", {"n": 1}, ttl_seconds=10)
    await cache.delete("live", "gate")
    assert await cache.get("live", "gate") is None


async def test_an_entry_at_a_generation_is_invalidated_by_a_bump(cache: LiveCache) -> None:
    builds: list[str] = []

    def building(value: str) -> Callable[[], Awaitable[bytes]]:
        async def build() -> bytes:
            builds.append(value)
            return value.encode()
        return build

    get = cache.get_or_build_at_generation
    assert await get("live", "gate", "all", building("v1"), ttl_seconds=60) == b"v1"
    assert await get("live", "gate", "all", building("unused"), ttl_seconds=60) == b"v1"
    # Stored under the generation it was built at: the counter is unset, so "0".
    assert await cache.get_bytes("live", "0:all") == b"v1"
    await cache.bump("live", "yard")  # another camera's generation: nothing changes here
    assert await get("live", "gate", "all", building("unused"), ttl_seconds=60) == b"v1"
    await cache.bump("live", "gate")
    assert await cache.generation("live", "gate") == "1"
    assert await get("live", "gate", "all", building("v2"), ttl_seconds=60) == b"v2"
    assert await get("live", "gate", "other", building("v3"), ttl_seconds=60) == b"v3"
    assert builds == ["v1", "v2", "v3"]
    assert cache.stats()["live"] == {"hits": 3, "misses": 3, "coalesced": 0, "errors": 0}


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
    assert cache.stats()["frame"] == {"hits": 0, "misses": 1, "coalesced": 0, "errors": 2}
    await cache.backend.close()


WAIT = 30.0  # generous: the suite runs on a loaded machine


class SlowBuilder:
    """A build that waits for `release` (so that callers pile up), counting its calls."""

    def __init__(self, value: bytes = b"view", error: Exception | None = None) -> None:
        self.value = value
        self.error = error
        self.calls = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self) -> bytes:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return self.value


async def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "not reached within the wait"
        await asyncio.sleep(0.005)


def callers(cache: LiveCache, build: Callable[[], Awaitable[bytes]], count: int,
            key: str = "k") -> list[asyncio.Task[bytes]]:
    return [asyncio.create_task(cache.get_or_build_bytes("live", key, build, ttl_seconds=60))
            for _ in range(count)]


async def test_concurrent_misses_build_once_and_all_get_the_value(cache: LiveCache) -> None:
    build = SlowBuilder()
    tasks = callers(cache, build, 20)
    await until(lambda: cache.coalesced["live"] == 19)
    build.release.set()
    assert await asyncio.wait_for(asyncio.gather(*tasks), WAIT) == [b"view"] * 20
    assert build.calls == 1
    # One miss (the build); the 19 that waited are hits, counted as coalesced too.
    assert cache.stats()["live"] == {"hits": 19, "misses": 1, "coalesced": 19, "errors": 0}
    # Stored: the next caller is a plain hit, with no build.
    assert await cache.get_or_build_bytes("live", "k", build, ttl_seconds=60) == b"view"
    assert build.calls == 1 and cache.hits["live"] == 20 and cache.coalesced["live"] == 19


async def test_different_keys_build_side_by_side(cache: LiveCache) -> None:
    first, second = SlowBuilder(b"one"), SlowBuilder(b"two")
    one = callers(cache, first, 3, key="one")
    two = callers(cache, second, 3, key="two")
    # Both builds run at the same time: neither waits for the other key's.
    await asyncio.wait_for(asyncio.gather(first.started.wait(), second.started.wait()), WAIT)
    second.release.set()
    assert await asyncio.wait_for(asyncio.gather(*two), WAIT) == [b"two"] * 3
    first.release.set()
    assert await asyncio.wait_for(asyncio.gather(*one), WAIT) == [b"one"] * 3
    assert (first.calls, second.calls, cache.misses["live"]) == (1, 1, 2)


async def test_a_failed_build_reaches_every_waiter_and_the_next_call_retries(
    cache: LiveCache,
) -> None:
    failing = SlowBuilder(error=ConnectionError("database gone"))
    tasks = callers(cache, failing, 5)
    await until(lambda: cache.coalesced["live"] == 4)
    failing.release.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), WAIT)
    assert [str(result) for result in results] == ["database gone"] * 5
    assert failing.calls == 1
    # Nothing was stored and nothing is left in flight: the next miss builds again.
    working = SlowBuilder(b"back")
    working.release.set()
    assert await cache.get_or_build_bytes("live", "k", working, ttl_seconds=60) == b"back"
    assert working.calls == 1 and cache.misses["live"] == 2


async def test_the_build_outlives_a_cancelled_caller(cache: LiveCache) -> None:
    build = SlowBuilder()
    first = callers(cache, build, 1)[0]
    await asyncio.wait_for(build.started.wait(), WAIT)
    others = callers(cache, build, 3)
    await until(lambda: cache.coalesced["live"] == 3)
    first.cancel()  # e.g. its client hung up
    with pytest.raises(asyncio.CancelledError):
        await first
    build.release.set()
    assert await asyncio.wait_for(asyncio.gather(*others), WAIT) == [b"view"] * 3
    assert build.calls == 1


async def test_a_build_that_hangs_is_abandoned_after_the_bound() -> None:
    cache = LiveCache(MemoryBackend(), rebuild_timeout_seconds=0.2)
    hanging = SlowBuilder()  # never released
    tasks = callers(cache, hanging, 4)
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), WAIT)
    assert all(isinstance(result, RebuildTimedOut) for result in results), results
    assert RebuildTimedOut.status_code == 503
    # The next call builds afresh instead of joining the abandoned one.
    working = SlowBuilder(b"fresh")
    working.release.set()
    assert await cache.get_or_build_bytes("live", "k", working, ttl_seconds=60) == b"fresh"


async def test_close_stops_the_builds_in_flight() -> None:
    cache = LiveCache(MemoryBackend())
    build = SlowBuilder()
    tasks = callers(cache, build, 2)
    await until(lambda: cache.coalesced["live"] == 1)
    await asyncio.wait_for(cache.close(), WAIT)
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), WAIT)
    assert all(isinstance(result, asyncio.CancelledError) for result in results), results


async def test_json_values_are_built_once_too(cache: LiveCache) -> None:
    calls = 0

    async def build() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return {"n": 7}

    values = await asyncio.wait_for(asyncio.gather(
        *(cache.get_or_build("state", "gate", build, ttl_seconds=60) for _ in range(5))), WAIT)
    assert values == [{"n": 7}] * 5 and calls == 1


async def test_concurrent_reads_of_one_view_share_a_redis_round_trip() -> None:
    """Many pollers of one view: the reads asked for while one is on its way get its answer
    (one round trip), each counted as a hit; a bump is seen by the next read."""
    backend = RedisBackend(redis_url_or_skip())
    cache = LiveCache(backend, prefix=f"test-{uuid.uuid4().hex[:8]}")
    builds: list[int] = []

    async def build() -> bytes:
        builds.append(1)
        return f"view {len(builds)}".encode()

    def read() -> Awaitable[bytes]:
        return cache.get_or_build_at_generation("live", "*", "all", build, 60)

    try:
        assert await read() == b"view 1"
        trips, hits = backend.round_trips, cache.hits["live"]
        views = await asyncio.gather(*(read() for _ in range(20)))
        assert views == [b"view 1"] * 20
        assert backend.round_trips - trips == 1
        assert cache.hits["live"] - hits == 20
        # A poller that goes away does not take the read from the others.
        reads = [asyncio.ensure_future(read()) for _ in range(3)]
        await asyncio.sleep(0)
        reads[0].cancel()
        assert await asyncio.gather(*reads[1:]) == [b"view 1"] * 2
        await cache.bump("live", "*")
        assert await asyncio.gather(read(), read()) == [b"view 2"] * 2
        assert len(builds) == 2
    finally:
        await backend.close()
