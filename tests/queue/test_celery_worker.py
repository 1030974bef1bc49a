"""The queue with real Celery workers: `framewatch worker` and `framewatch beat` subprocesses on
PostgreSQL, with Redis (or RabbitMQ) as the broker, the API in this process sending frames with
`mode=async`, and a real flaky DeepStack-format provider in a thread. The same invariants as the
in-process scenarios: every frame ends done with one set of detections, none lost, none doubled.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from framewatch.core.database import utcnow
from framewatch.models import DetectionEventLog, QueueItem
from framewatch.queue.celery_app import QUEUE_NAME, create_celery
from tests.api_fixtures import make_settings
from tests.conftest import amqp_url_or_skip, postgres_emptied, redis_url_or_skip
from tests.queue.scenario import event_types
from tests.support.flaky_provider import FlakyProvider
from tests.support.processes import (
    HOST,
    Cluster,
    celery_cluster,
    celery_worker_id,
    framewatch_env,
    neighbour_redis_db,
    run_command,
    wait_for_exit,
)
from tests.support.servers import serve_app

# Short timings so that retries, sweeps and heartbeats happen within a test.
FAST: dict[str, Any] = {
    "queue_lease_seconds": 30,
    "queue_retry_base_seconds": 0.05,
    "queue_retry_max_seconds": 0.5,
    "queue_max_attempts": 12,
    "queue_sweep_seconds": 0.5,
    # Longer than the deepest backlog here takes to drain (1,000 items, ~1.5 min), or the sweeper
    # would re-send the items still waiting in the broker; the lost-message scenarios shorten it.
    "queue_redispatch_seconds": 300,
    "breaker_failure_threshold": 5,
    "breaker_cooldown_seconds": 1.0,
    "worker_heartbeat_seconds": 1,
    # The periodic jobs other than the sweeper would only race the scenarios.
    "provider_check_seconds": 3600,
    "stats_interval_seconds": 3600,
    "cleanup_interval_seconds": 3600,
    "log_level": "WARNING",
}


@pytest.fixture
def flaky() -> Iterator[tuple[FlakyProvider, str]]:
    provider = FlakyProvider(seed=7)
    with serve_app(provider.app()) as url:
        yield provider, url


@pytest.fixture
def database(request: pytest.FixtureRequest) -> str:
    return postgres_emptied(request)


@pytest.fixture
def redis_broker() -> Iterator[str]:
    """A Redis database of its own for the broker (next to the test one), flushed."""
    url = neighbour_redis_db(redis_url_or_skip())
    with redis.Redis.from_url(url) as client:
        try:
            client.flushdb()
        except redis.ConnectionError as exc:
            raise RuntimeError(
                f"FRAMEWATCH_TEST_REDIS_URL is set but Redis is unreachable: {exc}") from exc
        try:
            yield url
        finally:
            client.flushdb()


@pytest.fixture
def broker(redis_broker: str) -> Iterator[redis.Redis]:
    """A client of the broker's Redis database, to look at and flush its messages."""
    with redis.Redis.from_url(redis_broker) as client:
        yield client


def fast_cluster(tmp_path: Path, database_url: str, broker_url: str,
                 flaky: tuple[FlakyProvider, str], **overrides: Any
                 ) -> AbstractAsyncContextManager[Cluster]:
    """`celery_cluster` with the FAST timings, some of them overridden."""
    return celery_cluster(tmp_path, database_url, broker_url, flaky, **{**FAST, **overrides})


def owner_pid(item: QueueItem) -> int:
    """The pid of the (pool) process that holds `item`'s lease."""
    assert item.lease_owner is not None and item.lease_owner.startswith(f"celery@{HOST}:")
    return int(item.lease_owner.rsplit(":", 1)[1])


@pytest.mark.postgres
@pytest.mark.redis
async def test_1000_frames_through_a_provider_failing_30_percent_with_two_workers(
    tmp_path: Path, database: str, broker: redis.Redis, redis_broker: str,
    flaky: tuple[FlakyProvider, str],
) -> None:
    provider = flaky[0]
    provider.fail_rate = 0.3
    async with fast_cluster(tmp_path, database, redis_broker, flaky) as cluster:
        cluster.processes.beat()
        # Sent before the workers start, so that a backlog of messages waits in the broker.
        frame_ids = await cluster.send(1000)
        assert broker.llen(QUEUE_NAME) == 1000
        workers = [cluster.processes.worker(), cluster.processes.worker()]
        await cluster.wait_for_workers(*workers)
        # The sweeper, which dispatches the retries, runs on time while the backlog waits (the
        # periodic jobs have a queue of their own; behind the backlog they expired unrun).
        await cluster.wait_for_sweep(after=utcnow(), within=30)
        assert broker.llen(QUEUE_NAME) > 500
        stats = await cluster.drained(within=180)

        assert stats["mode"] == "celery"
        assert stats["counts"] == {"pending": 0, "processing": 0, "done": 1000, "dead": 0}
        assert stats["windows"]["15m"]["done"] == 1000
        await cluster.assert_stored_once(frame_ids)
        assert provider.successes == 1000
        assert provider.failures > 300  # ~30% of ~1430 calls
        async with cluster.api.runtime.session_factory() as session:
            retries = await session.scalar(
                select(func.count()).select_from(DetectionEventLog)
                .where(DetectionEventLog.event_type == "queue.retry"))
        # Every failed call scheduled exactly one retry: no lease was lost, no result dropped.
        assert retries == provider.failures
        assert sum(item.attempts for item in await cluster.items()) == provider.calls


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_worker_killed_mid_item_is_taken_over_after_its_lease(
    tmp_path: Path, database: str, redis_broker: str, flaky: tuple[FlakyProvider, str]
) -> None:
    provider = flaky[0]
    provider.latency = 0.5  # slow, so that items are in flight when the worker dies
    lease = 3.0
    async with fast_cluster(tmp_path, database, redis_broker, flaky, queue_lease_seconds=lease,
                            queue_redispatch_seconds=2) as cluster:
        victim = cluster.processes.worker(concurrency=2)
        survivor = cluster.processes.worker()
        cluster.processes.beat()
        await cluster.wait_for_workers(victim, survivor)
        frame_ids = await cluster.send(16)

        held: list[QueueItem] = []
        deadline = time.monotonic() + 20
        while len(held) < 2:
            assert time.monotonic() < deadline, "the victim never held two items at once"
            processing = await cluster.items(QueueItem.status == "processing")
            held = [item for item in processing if victim.owns(owner_pid(item))]
            await asyncio.sleep(0.05)
        pool = victim.group_pids()
        assert len(pool) == 3  # the main process and its two pool children
        victim.kill(signal.SIGKILL)
        killed_at = utcnow()
        victim.popen.wait(10)
        for pid in pool:
            wait_for_exit(pid)

        # The dead worker's items stay leased to it until the lease runs out...
        still = {item.id: item for item in await cluster.items(
            QueueItem.id.in_([item.id for item in held]))}
        for item in held:
            leased = still[item.id]
            assert leased.status == "processing" and leased.lease_owner == item.lease_owner
            assert leased.lease_expires_at is not None and leased.lease_expires_at > killed_at
        # ... then the survivor takes them over and finishes everything.
        stats = await cluster.drained(within=60)
        assert stats["counts"] == {"pending": 0, "processing": 0, "done": 16, "dead": 0}
        await cluster.assert_stored_once(frame_ids)
        finished = {item.id: item for item in await cluster.items()}
        for item in held:
            taken_over = finished[item.id]
            assert taken_over.attempts == 2  # the victim's claim and the survivor's
            assert taken_over.finished_at is not None
            assert item.lease_expires_at is not None
            assert taken_over.finished_at >= item.lease_expires_at
        # The victim's calls may have reached the provider before it died; nothing else doubled.
        assert 16 <= provider.successes <= 16 + len(held)
        assert survivor.alive()


@pytest.mark.postgres
@pytest.mark.redis
async def test_messages_lost_with_a_flushed_redis_are_recovered_by_the_sweeper(
    tmp_path: Path, database: str, broker: redis.Redis, redis_broker: str,
    flaky: tuple[FlakyProvider, str],
) -> None:
    async with fast_cluster(tmp_path, database, redis_broker, flaky,
                            queue_redispatch_seconds=2) as cluster:
        # No worker yet: the messages wait in Redis, then are lost with it.
        frame_ids = await cluster.send(30)
        assert broker.llen(QUEUE_NAME) == 30
        broker.flushdb()
        flushed_at = utcnow()
        assert broker.dbsize() == 0
        assert (await cluster.stats())["counts"]["pending"] == 30

        worker = cluster.processes.worker()
        cluster.processes.beat()
        await cluster.wait_for_workers(worker)
        stats = await cluster.drained(within=60)
        assert stats["counts"] == {"pending": 0, "processing": 0, "done": 30, "dead": 0}
        await cluster.assert_stored_once(frame_ids)
        # Every item was dispatched again after the flush (only the sweeper does that) and
        # each ran once.
        items = await cluster.items()
        assert all(_after(item.dispatched_at, flushed_at) for item in items)
        assert [item.attempts for item in items] == [1] * 30
        assert flaky[0].calls == 30


def _after(moment: datetime | None, reference: datetime) -> bool:
    return moment is not None and moment > reference


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_provider_down_for_a_while_opens_the_circuit_then_all_complete(
    tmp_path: Path, database: str, redis_broker: str, flaky: tuple[FlakyProvider, str]
) -> None:
    provider = flaky[0]
    provider.down = True
    cooldown, max_attempts = 2.0, 20
    async with fast_cluster(tmp_path, database, redis_broker, flaky,
                            breaker_failure_threshold=3, breaker_cooldown_seconds=cooldown,
                            queue_max_attempts=max_attempts) as cluster:
        workers = [cluster.processes.worker(), cluster.processes.worker()]
        cluster.processes.beat()
        await cluster.wait_for_workers(*workers)
        down_since = time.monotonic()
        frame_ids = await cluster.send(20)

        # Down for ~12 s in all: long enough for several cool-downs and probes, short enough
        # for the suite (a real outage would last minutes; the timings are scaled down).
        seen_open: list[dict[str, Any]] = []
        while time.monotonic() - down_since < 12:
            stats = await cluster.stats()
            if stats["breakers"] and stats["breakers"][0]["state"] == "open":
                seen_open.append(stats)
            await asyncio.sleep(0.25)
        assert len(seen_open) > 20, "queue-stats never showed the circuit open for long"
        last = seen_open[-1]
        assert last["counts"]["dead"] == 0 and last["counts"]["done"] == 0
        assert last["counts"]["pending"] + last["counts"]["processing"] == 20
        assert last["breakers"][0]["provider"] == "flaky"
        assert "HTTP 500" in last["breakers"][0]["last_error"]
        # While open, only one probe per cool-down reaches the provider; items keep attempts.
        assert provider.calls <= 3 + 2 + 12 / cooldown + 2
        assert max(item.attempts for item in await cluster.items()) < max_attempts

        provider.down = False
        stats = await cluster.drained(within=60)
        assert stats["counts"] == {"pending": 0, "processing": 0, "done": 20, "dead": 0}
        assert stats["breakers"][0]["state"] == "closed"
        await cluster.assert_stored_once(frame_ids)
        async with cluster.api.runtime.session_factory() as session:
            changes = await event_types(session, "provider.down", "provider.recovered")
        assert changes == ["provider.down", "provider.recovered"]
        assert provider.successes == 20


@pytest.mark.postgres
@pytest.mark.redis
async def test_dead_letters_show_in_stats_and_retry_dead_brings_them_to_done(
    tmp_path: Path, database: str, redis_broker: str, flaky: tuple[FlakyProvider, str]
) -> None:
    provider = flaky[0]
    provider.down = True
    async with fast_cluster(tmp_path, database, redis_broker, flaky, queue_max_attempts=3,
                            breaker_failure_threshold=1000) as cluster:
        worker = cluster.processes.worker()
        cluster.processes.beat()
        await cluster.wait_for_workers(worker)
        frame_ids = await cluster.send(4)
        stats = await cluster.drained(within=60)
        assert stats["dead_letters"] == 4
        assert stats["counts"] == {"pending": 0, "processing": 0, "done": 0, "dead": 4}
        assert provider.calls == 4 * 3
        dead = await cluster.items(QueueItem.status == "dead")
        assert sorted(item.frame_id for item in dead) == sorted(frame_ids)
        assert all(item.attempts == 3 and "HTTP 500" in (item.last_error or "") for item in dead)
        printed = run_command(cluster.env, "queue", "stats")
        assert printed.returncode == 0, printed.stderr
        cli_stats = json.loads(printed.stdout)
        assert cli_stats["mode"] == "celery" and cli_stats["dead_letters"] == 4
        assert cli_stats["counts"]["dead"] == 4

        provider.down = False
        retried = run_command(cluster.env, "queue", "retry-dead")
        assert retried.returncode == 0, retried.stderr
        assert retried.stdout.startswith("4 dead items requeued")
        stats = await cluster.drained(within=60)
        assert stats["counts"] == {"pending": 0, "processing": 0, "done": 4, "dead": 0}
        await cluster.assert_stored_once(frame_ids)
        assert provider.successes == 4
        async with cluster.api.runtime.session_factory() as session:
            assert len(await event_types(session, "queue.dead_letter")) == 4
            assert len(await event_types(session, "queue.requeued")) == 1


@pytest.mark.postgres
async def test_rabbitmq_as_the_broker(
    tmp_path: Path, database: str, flaky: tuple[FlakyProvider, str]
) -> None:
    amqp_url = amqp_url_or_skip()
    settings = make_settings(tmp_path, database, broker_url=amqp_url)
    try:
        # Declares the queue if needed and drops messages an earlier run left behind.
        create_celery(settings, set_as_current=False).control.purge()
    except OSError as exc:
        raise RuntimeError(
            f"FRAMEWATCH_TEST_AMQP_URL is set but RabbitMQ is unreachable: {exc}") from exc
    async with fast_cluster(tmp_path, database, amqp_url, flaky) as cluster:
        # No beat: every item must arrive through RabbitMQ itself, not through the sweeper.
        worker = cluster.processes.worker(concurrency=2)
        await cluster.wait_for_workers(worker)
        frame_ids = await cluster.send(50)
        stats = await cluster.drained(within=60)
        assert stats["mode"] == "celery"
        assert stats["counts"] == {"pending": 0, "processing": 0, "done": 50, "dead": 0}
        await cluster.assert_stored_once(frame_ids)
        assert flaky[0].calls == 50


@pytest.mark.postgres
@pytest.mark.redis
async def test_queue_stats_lists_the_celery_workers_by_their_heartbeats(
    tmp_path: Path, database: str, redis_broker: str, flaky: tuple[FlakyProvider, str]
) -> None:
    async with fast_cluster(tmp_path, database, redis_broker, flaky) as cluster:
        workers = [cluster.processes.worker(), cluster.processes.worker()]
        stats = await cluster.wait_for_workers(*workers)
        assert stats["mode"] == "celery"
        seen = {entry["worker_id"]: entry for entry in stats["workers"]}
        # The API dispatches through Celery: it runs no in-process worker of its own.
        assert {entry["kind"] for entry in seen.values()} == {"celery"}
        assert sorted(seen) == sorted(celery_worker_id(worker.pid) for worker in workers)
        for worker in workers:
            entry = seen[celery_worker_id(worker.pid)]
            assert entry["pid"] == worker.pid and entry["hostname"] == HOST
        # Heartbeats go on (every second here).
        await asyncio.sleep(2.5)
        later = {entry["worker_id"]: entry for entry in (await cluster.stats())["workers"]}
        for worker_id, entry in seen.items():
            assert _when(later[worker_id]["last_seen_at"]) > _when(entry["last_seen_at"])
            assert later[worker_id]["started_at"] == entry["started_at"]


def test_worker_and_beat_without_a_broker_exit_with_a_clear_message(
    tmp_path: Path, sqlite_url: str
) -> None:
    env = framewatch_env(make_settings(tmp_path, sqlite_url))
    assert "FRAMEWATCH_BROKER_URL" not in env
    for command in ("worker", "beat"):
        result = run_command(env, command, timeout=30)
        assert result.returncode != 0
        assert "FRAMEWATCH_BROKER_URL is not set" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value)
