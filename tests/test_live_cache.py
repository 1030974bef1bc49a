"""`GET /api/v1/detections/live` served from the cache, in memory and on a real Redis: hits,
invalidation by a newly processed frame, TTL expiry; and a Redis that dies and comes back
(our own `redis-server` on a free port): every cached endpoint keeps answering from the database,
errors are counted, and the cache is used again once Redis is back, without a restart. Also what
keeps a poll cheap: polls that miss together rebuild the view once, a hit opens no database
session, and no dependency of any route is run in the thread pool."""

from __future__ import annotations

import asyncio
import inspect
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
from fastapi.routing import APIRoute, APIWebSocketRoute

from framewatch.auth.service import hash_key
from framewatch.core.database import utcnow
from framewatch.detections import live as live_module
from framewatch.detections.schemas import LiveView
from framewatch.live.feed import CACHE_LIVE, CACHE_STATE
from framewatch.stats.router import CACHE_STATS
from tests.api.helpers import add_camera, add_provider, post_frame
from tests.api_fixtures import Api, make_settings, start_api
from tests.conftest import redis_url_or_skip
from tests.queue.scenario import flaky_provider_body, small_frame
from tests.support.flaky_provider import FlakyProvider
from tests.support.servers import free_port, serve_app

LIVE = "/api/v1/detections/live"
QUIET = {"provider_check_seconds": 3600, "stats_interval_seconds": 3600,
         "cleanup_interval_seconds": 3600}


@pytest.fixture
def flaky_url() -> Iterator[str]:
    with serve_app(FlakyProvider().app()) as url:
        yield url


@pytest.fixture(params=["memory", "redis"])
def cache_url(request: pytest.FixtureRequest) -> str | None:
    """None (the in-process cache) or the test Redis, emptied: generations and entries of
    earlier tests (another database, the same camera names) must not be read back."""
    if request.param == "memory":
        return None
    url = redis_url_or_skip()
    client = sync_redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    return url


@asynccontextmanager
async def live_api(tmp_path: Path, sqlite_url: str, provider_url: str,
                   **overrides: Any) -> AsyncIterator[Api]:
    apps = start_api(make_settings(tmp_path, sqlite_url, **{**QUIET, **overrides}))
    api = await anext(apps)
    try:
        await add_provider(api, **flaky_provider_body(provider_url))
        await add_camera(api, "gate")
        await add_camera(api, "yard")
        yield api
    finally:
        await anext(apps, None)


async def send(api: Api, index: int, camera_id: str = "gate") -> int:
    response = await post_frame(api, small_frame(index), camera_id=camera_id)
    assert response.status_code == 200, response.text
    frame_id: int = response.json()["frame_id"]
    return frame_id


async def poll(api: Api, **params: str) -> dict[str, int]:
    """The live view as {camera: frame id}."""
    response = await api.client.get(LIVE, params=params, headers=api.auth("viewer"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return {camera["camera_id"]: camera["frame_id"] for camera in response.json()["cameras"]}


def counters(api: Api, kind: str = CACHE_LIVE) -> dict[str, int]:
    return api.runtime.cache.stats().get(kind, {"hits": 0, "misses": 0, "errors": 0})


async def test_the_second_poll_is_a_hit(
    tmp_path: Path, sqlite_url: str, flaky_url: str, cache_url: str | None
) -> None:
    async with live_api(tmp_path, sqlite_url, flaky_url, redis_url=cache_url,
                        live_ttl_seconds=3600) as api:
        assert api.runtime.cache.backend.name == ("redis" if cache_url else "memory")
        gate = await send(api, 1)
        await api.runtime.live.outbox.drain()
        start = counters(api)
        first = await api.client.get(LIVE, headers=api.auth("viewer"))
        second = await api.client.get(LIVE, headers=api.auth("viewer"))
        assert first.status_code == second.status_code == 200
        assert second.content == first.content
        assert {c["camera_id"]: c["frame_id"] for c in first.json()["cameras"]} == {
            "gate": gate}
        assert first.json()["cameras"][0]["detections"][0]["type"] == "person"
        after = counters(api)
        assert (after["misses"], after["hits"], after["errors"]) == (
            start["misses"] + 1, start["hits"] + 1, 0)
        # Per camera and per type filter: entries of their own.
        assert await poll(api, camera_id="gate") == {"gate": gate}
        assert await poll(api, camera_id="yard") == {}
        assert await poll(api, camera_id="gate") == {"gate": gate}
        assert counters(api)["hits"] == start["hits"] + 2
        for _ in range(2):
            faces = await api.client.get(LIVE, params={"types": "face"},
                                         headers=api.auth("viewer"))
            assert [(c["frame_id"], c["detections"]) for c in faces.json()["cameras"]] == [
                (gate, [])]
        assert counters(api)["hits"] == start["hits"] + 3
        # `*` is no camera: its empty answer must not be served as the all-cameras view.
        assert await poll(api, camera_id="*") == {}
        assert await poll(api) == {"gate": gate}


async def test_a_new_processed_frame_shows_at_the_next_poll(
    tmp_path: Path, sqlite_url: str, flaky_url: str, cache_url: str | None
) -> None:
    async with live_api(tmp_path, sqlite_url, flaky_url, redis_url=cache_url,
                        live_ttl_seconds=3600) as api:
        gate = await send(api, 1)
        yard = await send(api, 2, "yard")
        await api.runtime.live.outbox.drain()
        assert await poll(api) == {"gate": gate, "yard": yard}
        assert await poll(api, camera_id="yard") == {"yard": yard}
        hits = counters(api)["hits"]
        newer = await send(api, 3)
        if cache_url:
            # The bumps are published after the commit by a background task: in memory they
            # are done in its first step, on Redis they take round trips that send-frame does
            # not wait for, so a poll sent at once could in principle race them.
            await api.runtime.live.outbox.drain()
        assert await poll(api) == {"gate": newer, "yard": yard}
        assert await poll(api, camera_id="gate") == {"gate": newer}
        assert counters(api)["hits"] == hits  # both rebuilt, though the TTL is an hour
        # The yard's own view was not invalidated by the gate's frame.
        assert await poll(api, camera_id="yard") == {"yard": yard}
        assert counters(api)["hits"] == hits + 1


async def test_the_view_expires_after_its_ttl(
    tmp_path: Path, sqlite_url: str, flaky_url: str, cache_url: str | None
) -> None:
    async with live_api(tmp_path, sqlite_url, flaky_url, redis_url=cache_url,
                        live_ttl_seconds=0.3) as api:
        gate = await send(api, 1)
        await api.runtime.live.outbox.drain()
        await poll(api)
        await poll(api)
        start = counters(api)
        await asyncio.sleep(0.4)
        assert await poll(api) == {"gate": gate}
        assert counters(api)["misses"] == start["misses"] + 1
        assert counters(api)["hits"] == start["hits"]


class OwnRedis:
    """A `redis-server` subprocess on a fixed port, that the test stops and starts."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = sync_redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return
                except sync_redis.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server did not start on {self.port}") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    server = OwnRedis()
    try:
        server.start()
        yield server
    finally:
        server.stop()


async def test_a_dead_redis_costs_the_cache_not_the_answers(
    tmp_path: Path, sqlite_url: str, flaky_url: str, own_redis: OwnRedis
) -> None:
    async with live_api(tmp_path, sqlite_url, flaky_url, redis_url=own_redis.url,
                        live_ttl_seconds=3600) as api:
        first = await send(api, 1)
        await api.runtime.live.outbox.drain()
        assert await poll(api) == {"gate": first}
        assert await poll(api) == {"gate": first}
        assert counters(api)["hits"] == 1 and counters(api)["errors"] == 0
        stats = {"since": (utcnow() - timedelta(hours=1)).isoformat()}

        own_redis.stop()
        started = time.monotonic()
        assert await poll(api) == {"gate": first}
        assert time.monotonic() - started < 1.0  # milliseconds, not retries with back-off
        assert counters(api)["errors"] >= 1
        errors = {kind: counters(api, kind)["errors"]
                  for kind in (CACHE_LIVE, CACHE_STATE, CACHE_STATS)}
        # A frame processed while Redis is down is stored and shown.
        second = await send(api, 2)
        await api.runtime.live.outbox.drain()
        assert await poll(api) == {"gate": second}
        state = await api.client.get("/api/v1/cameras/gate/state", headers=api.auth("viewer"))
        assert state.status_code == 200, state.text
        assert state.json()["last_frame_id"] == second
        statistics = await api.client.get("/api/v1/detections/statistics", params=stats,
                                          headers=api.auth("viewer"))
        assert statistics.status_code == 200, statistics.text
        for kind, before in errors.items():
            assert counters(api, kind)["errors"] > before, kind
        assert time.monotonic() - started < 5.0

        own_redis.start()  # the same port, empty
        hits = counters(api)["hits"]
        deadline = time.monotonic() + 5
        while counters(api)["hits"] == hits:
            assert time.monotonic() < deadline, counters(api)
            assert await poll(api) == {"gate": second}
            await asyncio.sleep(0.05)
        errors_after = counters(api)["errors"]
        assert await poll(api) == {"gate": second}
        assert counters(api)["hits"] >= hits + 2
        assert counters(api)["errors"] == errors_after
        # And invalidation works again.
        third = await send(api, 3)
        await api.runtime.live.outbox.drain()
        assert await poll(api) == {"gate": third}


async def test_polls_that_miss_together_rebuild_the_view_once(
    tmp_path: Path, sqlite_url: str, flaky_url: str, cache_url: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with live_api(tmp_path, sqlite_url, flaky_url, redis_url=cache_url,
                        live_ttl_seconds=3600) as api:
        gate = await send(api, 1)
        await api.runtime.live.outbox.drain()
        assert await poll(api) == {"gate": gate}  # the key is in the key cache from now on
        newer = await send(api, 2)  # bumps the generations: the next polls all miss
        await api.runtime.live.outbox.drain()
        # Every rebuild waits until the test lets it go, so that the polls pile up behind it.
        rebuilds = 0
        release = asyncio.Event()
        real_live_view = live_module.live_view

        async def gated_live_view(*args: Any, **kwargs: Any) -> LiveView:
            nonlocal rebuilds
            rebuilds += 1
            await release.wait()
            return await real_live_view(*args, **kwargs)

        monkeypatch.setattr(live_module, "live_view", gated_live_view)
        start = counters(api)
        polls = [asyncio.create_task(poll(api)) for _ in range(24)]
        deadline = time.monotonic() + 30
        while counters(api)["coalesced"] < start["coalesced"] + 23:
            assert time.monotonic() < deadline, counters(api)
            await asyncio.sleep(0.01)
        release.set()
        assert await asyncio.wait_for(asyncio.gather(*polls), 30) == [{"gate": newer}] * 24
        assert rebuilds == 1
        after = counters(api)
        assert (after["misses"] - start["misses"], after["hits"] - start["hits"],
                after["coalesced"] - start["coalesced"]) == (1, 23, 23)


@contextmanager
def counting_sessions(runtime: Any) -> Iterator[Callable[[], int]]:
    """Counts the database sessions `runtime` opens meanwhile (read with the yielded call)."""
    real_factory = runtime.session_factory
    opened = 0

    def counting_factory(*args: Any, **kwargs: Any) -> Any:
        nonlocal opened
        opened += 1
        return real_factory(*args, **kwargs)

    runtime.session_factory = counting_factory
    try:
        yield lambda: opened
    finally:
        runtime.session_factory = real_factory


async def test_a_cache_hit_opens_no_database_session(
    tmp_path: Path, sqlite_url: str, flaky_url: str
) -> None:
    async with live_api(tmp_path, sqlite_url, flaky_url, live_ttl_seconds=3600) as api:
        gate = await send(api, 1)
        await api.runtime.live.outbox.drain()
        assert await poll(api) == {"gate": gate}  # the view and the key are now cached
        runtime = api.runtime
        with counting_sessions(runtime) as opened:
            for _ in range(5):
                assert await poll(api) == {"gate": gate}
            assert opened() == 0
            # A miss (another filter) opens one, for its rebuild.
            assert await poll(api, camera_id="gate") == {"gate": gate}
            assert opened() == 1


async def test_polls_check_an_uncached_key_once_between_them(
    tmp_path: Path, sqlite_url: str, flaky_url: str
) -> None:
    """When a busy key's cache entry expires, the polls in flight wait for one database check
    of it, not one each."""
    async with live_api(tmp_path, sqlite_url, flaky_url, live_ttl_seconds=3600) as api:
        gate = await send(api, 1)
        await api.runtime.live.outbox.drain()
        assert await poll(api) == {"gate": gate}  # the view is cached
        runtime = api.runtime
        viewer = runtime.key_cache.get(hash_key(api.keys["viewer"]))
        assert viewer is not None and viewer.principal is not None
        runtime.key_cache.forget_key(viewer.principal.key_id)
        with counting_sessions(runtime) as opened:
            views = await asyncio.gather(*(poll(api) for _ in range(16)))
            assert views == [{"gate": gate}] * 16
            assert opened() == 1  # the key's check; the view came from the cache
            assert runtime.key_cache.checking == {}


async def test_the_live_query_is_checked_like_any_other(
    tmp_path: Path, sqlite_url: str, flaky_url: str
) -> None:
    """The endpoint validates its own query (no FastAPI parameters, for speed): the answers
    must be those of every other endpoint."""
    async with live_api(tmp_path, sqlite_url, flaky_url) as api:
        viewer = api.auth("viewer")
        long_id = await api.client.get(LIVE, params={"camera_id": "x" * 65}, headers=viewer)
        assert long_id.status_code == 422
        body = long_id.json()
        assert body["error"] == "validation_error"
        assert [field["loc"] for field in body["fields"]] == [["query", "camera_id"]]
        assert body["fields"][0]["type"] == "string_too_long"
        bad_types = await api.client.get(LIVE, params={"types": "Person!"}, headers=viewer)
        assert bad_types.status_code == 422
        assert [field["loc"] for field in bad_types.json()["fields"]] == [["query", "types"]]
        # The key is checked first, as with dependencies: no key, no validation.
        anonymous = await api.client.get(LIVE, params={"camera_id": "x" * 65})
        assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized"
        # Unknown parameters are ignored, the last of a repeated one counts.
        assert (await api.client.get(LIVE, params=[("camera_id", "yard"), ("camera_id", "gate"),
                                                    ("colour", "red")], headers=viewer)
                ).status_code == 200
        # The schema still describes the parameters and the security.
        operation = api.app.openapi()["paths"][LIVE]["get"]
        assert [p["name"] for p in operation["parameters"]] == ["camera_id", "types"]
        assert operation["security"] == [{"HTTPBearer": []}]


def _sync_dependencies(dependant: Any) -> list[str]:
    found = []
    for dependency in dependant.dependencies:
        call = dependency.call
        function = call if inspect.isroutine(call) else type(call).__call__
        if not (inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)):
            found.append(getattr(call, "__qualname__", repr(call)))
        found += _sync_dependencies(dependency)
    return found


def test_no_dependency_runs_in_the_thread_pool(tmp_path: Path) -> None:
    """FastAPI runs a plain `def` dependency in a worker thread: a thread hop per request
    (it was `get_runtime`, 10% of the live endpoint's time)."""
    from framewatch.app import create_app

    def flattened(routes: list[Any]) -> Iterator[Any]:
        for route in routes:  # included routers hold their routes (FastAPI ≥ 0.16x)
            included = getattr(route, "original_router", None)
            yield from flattened(included.routes) if included is not None else [route]

    app = create_app(make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"))
    routes = [route for route in flattened(app.router.routes)
              if isinstance(route, APIRoute | APIWebSocketRoute)]
    assert any(getattr(route, "path", "") == LIVE for route in routes)
    offenders = {route.path: found for route in routes
                 if (found := _sync_dependencies(route.dependant))}
    assert offenders == {}
