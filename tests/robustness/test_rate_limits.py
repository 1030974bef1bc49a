"""Rate limits (core/ratelimit.py): per key, per address, the send-frame budget; the 429 answer
and recovery; one budget across API processes that share Redis, one per process without it; and
a limiter that fails open when Redis goes away.

Most limits here are 1 a minute with a burst of 600 s worth: 10 requests at once, then one more
every minute. Refilling is so slow next to a test's requests that exactly 10 go through and the
11th is refused, however loaded the machine.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from framewatch.auth.service import Role, create_key
from framewatch.core.database import create_engine, create_session_factory
from framewatch.core.ratelimit import Limit, RedisBuckets
from tests.api.helpers import add_camera
from tests.api_fixtures import Api, make_settings, start_api
from tests.conftest import redis_url_or_skip
from tests.queue.scenario import flaky_provider_body, small_frame
from tests.robustness.served import serve_settings, start_serve
from tests.support.flaky_provider import FlakyProvider
from tests.support.processes import ProcessGroup, framewatch_env, redis_db_url
from tests.support.servers import serve_app

BURST = 10
SLOW = {"rate_limit_burst_seconds": 600}  # with PER_MINUTE: a burst of 10, then 1 a minute
PER_MINUTE = 1
LONGEST_WAIT = 60
NO_LIMITS = {"rate_limit_per_key_per_minute": 0, "rate_limit_per_address_per_minute": 0,
             "rate_limit_send_frame_per_minute": 0}


async def limited_api(tmp_path: Path, database_url: str, **limits: Any) -> AsyncIterator[Api]:
    settings = make_settings(tmp_path, database_url, **{**NO_LIMITS, **SLOW, **limits})
    async for api in start_api(settings):
        yield api


def assert_rate_limited(response: httpx.Response, longest_wait: float) -> int:
    """A 429 with the documented body and a `Retry-After` that agrees with it; the wait."""
    assert response.status_code == 429, response.text
    body = response.json()
    assert set(body) == {"error", "detail", "retry_after_seconds"}, body
    assert body["error"] == "rate_limited"
    wait = body["retry_after_seconds"]
    assert isinstance(wait, int) and 1 <= wait <= longest_wait, body
    assert response.headers["retry-after"] == str(wait)
    return wait


async def statuses(client: httpx.AsyncClient, count: int, headers: dict[str, str],
                   path: str = "/api/v1/cameras") -> list[int]:
    return [(await client.get(path, headers=headers)).status_code for _ in range(count)]


async def test_each_key_has_its_own_budget(tmp_path: Path, sqlite_url: str) -> None:
    async for api in limited_api(tmp_path, sqlite_url,
                                 rate_limit_per_key_per_minute=PER_MINUTE):
        assert await statuses(api.client, BURST, api.auth("viewer")) == [200] * BURST
        refused = await api.client.get("/api/v1/cameras", headers=api.auth("viewer"))
        assert_rate_limited(refused, longest_wait=LONGEST_WAIT)
        # Refused before the route runs, whichever route it is.
        assert (await api.client.get("/api/v1/detections/99", headers=api.auth("viewer"))
                ).status_code == 429
        # Other keys are not affected; a request without a key is not counted against any.
        assert await statuses(api.client, 3, api.auth("operator")) == [200] * 3
        assert (await api.client.get("/api/v1/cameras")).status_code == 401
        assert api.runtime.rate_limiter.refused == 2


async def test_each_address_has_its_own_budget(tmp_path: Path, sqlite_url: str) -> None:
    async for api in limited_api(tmp_path, sqlite_url,
                                 rate_limit_per_address_per_minute=PER_MINUTE):
        roles = ["viewer", "operator", "admin"]
        answers = [(await api.client.get("/api/v1/cameras", headers=api.auth(roles[i % 3]))
                    ).status_code for i in range(BURST - 1)]
        answers.append((await api.client.get("/healthz")).status_code)  # open routes count too
        assert answers == [200] * BURST
        # A key this address has not used yet is refused all the same: the address is spent.
        assert_rate_limited(await api.client.get("/healthz"), longest_wait=LONGEST_WAIT)
        assert_rate_limited(await api.client.get("/api/v1/cameras", headers=api.auth("admin")),
                            longest_wait=LONGEST_WAIT)
        other = httpx.ASGITransport(app=api.app, client=("192.0.2.7", 40000))
        async with httpx.AsyncClient(transport=other, base_url="http://testserver") as client:
            assert await statuses(client, 3, api.auth("viewer")) == [200] * 3


async def send_frame(api: Api, index: int, role: str = "operator") -> httpx.Response:
    return await api.client.post(
        "/api/v1/detections/send-frame", data={"camera_id": "gate"},
        files={"image": ("f.jpg", small_frame(index), "image/jpeg")}, headers=api.auth(role))


async def test_send_frame_has_a_budget_of_its_own(tmp_path: Path, sqlite_url: str) -> None:
    with serve_app(FlakyProvider().app()) as provider_url:
        async for api in limited_api(tmp_path, sqlite_url,
                                     rate_limit_send_frame_per_minute=PER_MINUTE):
            response = await api.client.post("/api/v1/providers", headers=api.auth("admin"),
                                             json=flaky_provider_body(provider_url))
            assert response.status_code == 201, response.text
            await add_camera(api)

            sent = [(await send_frame(api, i)).status_code for i in range(BURST)]
            assert sent == [200] * BURST
            assert_rate_limited(await send_frame(api, BURST), longest_wait=LONGEST_WAIT)
            # The key's other requests go on; another key has its own frame budget.
            assert await statuses(api.client, 3, api.auth("operator")) == [200] * 3
            assert (await send_frame(api, BURST + 1, role="admin")).status_code == 200


async def test_a_refused_client_recovers_after_retry_after(tmp_path: Path,
                                                            sqlite_url: str) -> None:
    # 60 a minute, a burst of 10 s worth: one request a second once the burst is spent.
    async for api in limited_api(tmp_path, sqlite_url, rate_limit_per_key_per_minute=60,
                                 rate_limit_burst_seconds=10):
        started = time.monotonic()
        answers = []
        while len(answers) < 100:
            answer = await api.client.get("/api/v1/cameras", headers=api.auth("viewer"))
            answers.append(answer.status_code)
            if answer.status_code != 200:
                break
        # The burst, plus what refilled while sending (one a second).
        assert BURST <= len(answers) - 1 <= BURST + time.monotonic() - started + 1, answers
        wait = assert_rate_limited(answer, longest_wait=1)
        await asyncio.sleep(wait)
        assert (await api.client.get("/api/v1/cameras", headers=api.auth("viewer"))
                ).status_code == 200


# Across processes -----------------------------------------------------------------------------

def fresh_key(database_url: str, name: str) -> str:
    """A new viewer key, written straight to the database (no request spends a token on it)."""

    async def create() -> str:
        engine = create_engine(database_url)
        try:
            async with create_session_factory(engine)() as session:
                _, key = await create_key(session, name=name, role=Role.VIEWER)
                await session.commit()
        finally:
            await engine.dispose()
        return key

    return asyncio.run(create())


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(tmp_path / "processes", {})
    try:
        yield group
    finally:
        group.stop_all()


def alternate(urls: list[str], key: str, count: int) -> list[tuple[int, int]]:
    """`count` requests with `key`, to each instance in turn: (instance, status) each."""
    headers = {"Authorization": f"Bearer {key}"}
    clients = [httpx.Client(base_url=url, headers=headers, timeout=30) for url in urls]
    try:
        return [(i % len(urls), clients[i % len(urls)].get("/api/v1/cameras").status_code)
                for i in range(count)]
    finally:
        for client in clients:
            client.close()


def two_instances(tmp_path: Path, sqlite_url: str, processes: ProcessGroup,
                  **extra: Any) -> list[str]:
    limits = {**NO_LIMITS, **SLOW, "rate_limit_per_key_per_minute": PER_MINUTE}
    settings = serve_settings(tmp_path, sqlite_url, **limits, **extra)
    processes.env = framewatch_env(settings)
    return [start_serve(processes, settings, name) for name in ("api-a", "api-b")]


@pytest.mark.redis
def test_instances_sharing_redis_share_one_budget(tmp_path: Path, sqlite_url: str,
                                                   processes: ProcessGroup) -> None:
    urls = two_instances(tmp_path, sqlite_url, processes, redis_url=redis_url_or_skip())
    key = fresh_key(sqlite_url, "shared-budget")
    answers = alternate(urls, key, 2 * BURST)
    # Ten in all, five on each instance; then every request is refused, whichever it reaches.
    assert [status for _, status in answers] == [200] * BURST + [429] * BURST, answers
    assert {instance for instance, status in answers if status == 429} == {0, 1}
    processes.check_running()


def test_instances_without_redis_count_alone(tmp_path: Path, sqlite_url: str,
                                             processes: ProcessGroup) -> None:
    urls = two_instances(tmp_path, sqlite_url, processes)
    key = fresh_key(sqlite_url, "own-budgets")
    answers = alternate(urls, key, 2 * BURST + 2)
    # Ten on each instance: twice the budget in all, then both refuse.
    assert [status for _, status in answers] == [200] * 2 * BURST + [429] * 2, answers
    processes.check_running()


# Redis going away -----------------------------------------------------------------------------

class TcpProxy:
    """A TCP relay to Redis that the test can cut (and restore) to make Redis unreachable."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, upstream_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        self._writers -= {writer, upstream_writer}


@pytest.mark.redis
async def test_the_limiter_fails_open_while_redis_is_unreachable(
    tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = httpx.URL(redis_url_or_skip())
    proxy = TcpProxy((url.host, url.port or 6379))
    await proxy.start()
    through_proxy = redis_db_url(f"redis://127.0.0.1:{proxy.port}", int(url.path.strip("/") or 0))
    async for api in limited_api(tmp_path, sqlite_url, redis_url=through_proxy,
                                 rate_limit_per_key_per_minute=PER_MINUTE):
        buckets = api.runtime.rate_limiter.buckets
        assert isinstance(buckets, RedisBuckets)
        # Redis is there: the key's budget is spent after ten.
        assert await statuses(api.client, BURST + 1, api.auth("viewer")) == [200] * BURST + [429]
        await proxy.cut()
        with caplog.at_level(logging.WARNING, logger="framewatch.core.ratelimit"):
            answers = await statuses(api.client, 15, api.auth("viewer"))
        assert answers == [200] * 15  # let through: the outage of the limiter is not the API's
        assert buckets.errors >= 15
        warnings = [r.getMessage() for r in caplog.records
                    if r.name == "framewatch.core.ratelimit" and r.levelno == logging.WARNING]
        assert len(warnings) >= 15 and "request let through" in warnings[0], warnings[:3]
        # Redis back (same port): the spent budget is enforced again.
        await proxy.start()
        assert (await api.client.get("/api/v1/cameras", headers=api.auth("viewer"))
                ).status_code == 429
        await proxy.cut()


@pytest.mark.redis
async def test_requests_at_the_same_time_share_a_round_trip_and_an_exact_budget() -> None:
    """Two limiters on one Redis, as two API instances, each asked by 15 requests at once: each
    makes one round trip for its 15, and exactly the burst (10) of the 30 go through; the
    others learn the wait of one token (a minute). A request that goes away meanwhile takes
    nothing from the others' answers."""
    url = redis_url_or_skip()
    prefix = f"test-rate-{uuid.uuid4().hex[:8]}"
    instances = [RedisBuckets(url, prefix=prefix), RedisBuckets(url, prefix=prefix)]
    per_key = Limit(per_minute=PER_MINUTE, burst=BURST)
    per_address = Limit(per_minute=PER_MINUTE, burst=100)
    try:
        takes = [buckets.take([("key:k", per_key), ("addr:a", per_address)])
                 for buckets in instances for _ in range(15)]
        waits = await asyncio.gather(*takes)
        assert [buckets.round_trips for buckets in instances] == [1, 1]
        assert sum(1 for wait in waits if wait == 0) == BURST
        refused = [wait for wait in waits if wait > 0]
        assert len(refused) == 20 and all(55 < wait <= 60 for wait in refused), refused
        # In arrival order within a batch: the first instance's batch is all allowed or was
        # second, so its 15 answers are allowed-then-refused, never the other way round.
        first = [wait == 0 for wait in waits[:15]]
        assert first == sorted(first, reverse=True)

        # Two keys from one address, interleaved in one batch: grouped by key, they still
        # share the address's budget exactly.
        shared_address = Limit(per_minute=PER_MINUTE, burst=6)
        mixed = await asyncio.gather(*(
            instances[1].take([(f"key:{name}", per_key), ("addr:shared", shared_address)])
            for _ in range(5) for name in ("x", "y")))
        assert sum(1 for wait in mixed if wait == 0) == 6
        assert instances[1].round_trips == 2

        leaving = [asyncio.ensure_future(instances[0].take([("key:other", per_key)]))
                   for _ in range(3)]
        await asyncio.sleep(0)
        leaving[0].cancel()
        assert await asyncio.gather(*leaving[1:]) == [0.0, 0.0]
        assert instances[0].errors == 0
    finally:
        for buckets in instances:
            await buckets.close()
