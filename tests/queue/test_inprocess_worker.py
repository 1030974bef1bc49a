"""The queue with the in-process worker of `framewatch serve` (no broker) on SQLite: the same
scenarios the Celery suite runs on PostgreSQL, against a real flaky DeepStack-format server."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from framewatch.core.database import utcnow
from framewatch.models import DetectionEventLog, Frame, QueueItem
from tests.api.helpers import add_camera
from tests.api_fixtures import Api, make_settings, start_api
from tests.queue.scenario import (
    assert_each_frame_stored_once,
    event_types,
    flaky_provider_body,
    send_async,
    small_frame,
    wait_for_queue,
)
from tests.support.flaky_provider import FlakyProvider
from tests.support.servers import serve_app

FAST_QUEUE: dict[str, Any] = {
    "worker_concurrency": 2,
    "worker_poll_seconds": 0.05,
    "queue_retry_base_seconds": 0.02,
    "queue_retry_max_seconds": 0.2,
    "queue_max_attempts": 12,
    "breaker_failure_threshold": 5,
    "breaker_cooldown_seconds": 0.3,
    # The periodic health check would race the scenarios' own breaker changes.
    "provider_check_seconds": 3600,
}


@pytest.fixture
def flaky() -> Iterator[tuple[FlakyProvider, str]]:
    provider = FlakyProvider(seed=7)
    with serve_app(provider.app()) as url:
        yield provider, url


async def queue_api(tmp_path: Path, sqlite_url: str, url: str,
                    **overrides: Any) -> AsyncIterator[Api]:
    settings = make_settings(tmp_path, sqlite_url, **{**FAST_QUEUE, **overrides})
    async for api in start_api(settings):
        response = await api.client.post("/api/v1/providers", json=flaky_provider_body(url),
                                          headers=api.auth("admin"))
        assert response.status_code == 201, response.text
        await add_camera(api)
        yield api


@pytest.fixture
async def api(tmp_path: Path, sqlite_url: str,
              flaky: tuple[FlakyProvider, str]) -> AsyncIterator[Api]:
    async for running in queue_api(tmp_path, sqlite_url, flaky[1]):
        yield running


async def test_async_send_answers_202_and_the_item_can_be_followed(
    api: Api, flaky: tuple[FlakyProvider, str]
) -> None:
    (answer,) = await send_async(api.client, api.auth("operator"), "gate", range(1))
    assert answer["status"] == "pending" and answer["camera_id"] == "gate"
    assert isinstance(answer["queue_item_id"], int) and isinstance(answer["frame_id"], int)
    await wait_for_queue(api.client, api.auth("viewer"), within=10)
    response = await api.client.get(f"/api/v1/detections/queue/{answer['queue_item_id']}",
                                    headers=api.auth("viewer"))
    item = response.json()
    assert item["status"] == "done" and item["attempts"] == 1 and item["finished_at"]
    assert item["frame_id"] == answer["frame_id"] and item["lease_owner"] is None
    (detection,) = item["detections"]
    assert detection["label"] == "person" and detection["bbox"]["x_max"] == 30
    assert flaky[0].calls == 1
    missing = await api.client.get("/api/v1/detections/queue/999999", headers=api.auth("viewer"))
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


async def test_an_unknown_mode_is_refused_and_nothing_is_stored(api: Api) -> None:
    response = await api.client.post(
        "/api/v1/detections/send-frame",
        files={"image": ("f.jpg", small_frame(1), "image/jpeg")},
        data={"camera_id": "gate", "mode": "later"}, headers=api.auth("operator"),
    )
    assert response.status_code == 422 and response.json()["error"] == "validation_error"
    async with api.runtime.session_factory() as session:
        assert await session.scalar(select(func.count()).select_from(QueueItem)) == 0


async def test_frames_through_a_provider_failing_30_percent_all_end_done_once(
    api: Api, flaky: tuple[FlakyProvider, str]
) -> None:
    provider = flaky[0]
    provider.fail_rate = 0.3
    answers = await send_async(api.client, api.auth("operator"), "gate", range(300))
    stats = await wait_for_queue(api.client, api.auth("viewer"), within=120)

    assert stats["counts"]["done"] == 300 and stats["dead_letters"] == 0
    assert stats["windows"]["15m"]["done"] == 300
    async with api.runtime.session_factory() as session:
        await assert_each_frame_stored_once(session, [a["frame_id"] for a in answers])
        retries = await session.scalar(
            select(func.count()).select_from(DetectionEventLog)
            .where(DetectionEventLog.event_type == "queue.retry")
        )
    # One successful call per frame; every failed call scheduled exactly one retry.
    assert provider.successes == 300
    assert provider.failures > 30 and retries == provider.failures
    assert stats["windows"]["15m"]["retries"] == provider.failures
    (worker,) = stats["workers"]
    assert worker["kind"] == "inprocess"


async def test_a_provider_down_opens_the_circuit_and_items_wait_then_complete(
    api: Api, flaky: tuple[FlakyProvider, str]
) -> None:
    provider = flaky[0]
    provider.down = True
    answers = await send_async(api.client, api.auth("operator"), "gate", range(20))
    stats = await _wait_for_breaker(api, "open")
    # The circuit opened after 5 failures: the items wait without spending their attempts.
    await asyncio.sleep(1.0)
    calls_while_open, since = provider.calls, time.monotonic()
    async with api.runtime.session_factory() as session:
        attempts = list(await session.scalars(select(QueueItem.attempts)))
    assert max(attempts) < FAST_QUEUE["queue_max_attempts"]
    assert stats["counts"]["dead"] == 0
    # While open, only one probe call per cool-down reaches the provider: counted over the
    # time that really passed (on a loaded machine a 1 s sleep can last longer).
    await asyncio.sleep(1.0)
    calls, elapsed = provider.calls - calls_while_open, time.monotonic() - since
    assert calls <= elapsed / FAST_QUEUE["breaker_cooldown_seconds"] + 2, (calls, elapsed)

    provider.down = False
    stats = await wait_for_queue(api.client, api.auth("viewer"), within=30)
    assert stats["counts"]["done"] == 20 and stats["breakers"][0]["state"] == "closed"
    async with api.runtime.session_factory() as session:
        await assert_each_frame_stored_once(session, [a["frame_id"] for a in answers])
        changes = await event_types(session, "provider.down", "provider.recovered")
    assert changes == ["provider.down", "provider.recovered"]


async def _wait_for_breaker(api: Api, state: str) -> dict[str, Any]:
    for _ in range(200):
        stats: dict[str, Any] = (await api.client.get(
            "/api/v1/detections/queue-stats", headers=api.auth("viewer"))).json()
        if stats["breakers"] and stats["breakers"][0]["state"] == state:
            return stats
        await asyncio.sleep(0.05)
    raise AssertionError(f"the breaker did not become {state}")


async def test_dead_letter_after_max_attempts_then_requeue_brings_it_to_done(
    tmp_path: Path, sqlite_url: str, flaky: tuple[FlakyProvider, str]
) -> None:
    provider, url = flaky
    provider.down = True
    async for api in queue_api(tmp_path, sqlite_url, url, queue_max_attempts=3,
                               breaker_failure_threshold=1000):
        answers = await send_async(api.client, api.auth("operator"), "gate", range(4))
        stats = await wait_for_queue(api.client, api.auth("viewer"), within=20)
        assert stats["dead_letters"] == 4 and stats["counts"]["dead"] == 4
        assert provider.calls == 4 * 3
        dead = (await api.client.get("/api/v1/detections/queue?status=dead",
                                     headers=api.auth("viewer"))).json()["items"]
        assert sorted(i["frame_id"] for i in dead) == sorted(a["frame_id"] for a in answers)
        assert all(i["attempts"] == 3 and "HTTP 500" in i["last_error"] for i in dead)

        provider.down = False
        first = answers[0]["queue_item_id"]
        denied = await api.client.post(f"/api/v1/detections/queue/{first}/retry",
                                       headers=api.auth("operator"))
        assert denied.status_code == 403
        retried = await api.client.post(f"/api/v1/detections/queue/{first}/retry",
                                        headers=api.auth("admin"))
        assert retried.status_code == 200 and retried.json()["attempts"] == 0
        again = await api.client.post(f"/api/v1/detections/queue/{first}/retry",
                                      headers=api.auth("admin"))
        assert again.status_code in (409, 200)  # 409 unless it already died again (it cannot)
        rest = await api.client.post("/api/v1/detections/queue/retry-dead",
                                     headers=api.auth("admin"))
        assert len(rest.json()["requeued"]) == 3
        stats = await wait_for_queue(api.client, api.auth("viewer"), within=20)
        assert stats["counts"] == {"pending": 0, "processing": 0, "done": 4, "dead": 0}
        async with api.runtime.session_factory() as session:
            await assert_each_frame_stored_once(session, [a["frame_id"] for a in answers])
            assert (await event_types(session, "queue.dead_letter")).count("queue.dead_letter") == 4
            assert len(await event_types(session, "queue.requeued")) == 2


async def test_a_sync_call_whose_provider_fails_leaves_the_frame_queued(
    api: Api, flaky: tuple[FlakyProvider, str]
) -> None:
    provider = flaky[0]
    provider.down = True
    response = await api.client.post(
        "/api/v1/detections/send-frame",
        files={"image": ("f.jpg", small_frame(5), "image/jpeg")},
        data={"camera_id": "gate"}, headers=api.auth("operator"),
    )
    body = response.json()
    assert response.status_code == 503 and body["error"] == "provider_unavailable"
    assert body["queued"] is True and body["frame_id"]
    provider.down = False
    await wait_for_queue(api.client, api.auth("viewer"), within=20)
    async with api.runtime.session_factory() as session:
        await assert_each_frame_stored_once(session, [body["frame_id"]])


async def test_an_item_held_by_a_dead_worker_is_taken_over_after_its_lease(
    api: Api, flaky: tuple[FlakyProvider, str]
) -> None:
    # The state a worker killed mid-item leaves behind: processing, leased to a process that is
    # gone. Nothing touches it until the lease expires; then the in-process worker takes over.
    provider = flaky[0]
    data = small_frame(9)
    sha256 = hashlib.sha256(data).hexdigest()
    async with api.runtime.session_factory() as session:
        path = await api.runtime.frame_store.save(data, sha256, "image/jpeg")
        frame = Frame(camera_id="gate", sha256=sha256, content_type="image/jpeg",
                      size_bytes=len(data), width=64, height=48, storage_path=path,
                      received_at=utcnow(), status="queued", requested_types=["person"])
        session.add(frame)
        await session.flush()
        item = QueueItem(frame_id=frame.id, camera_id="gate", detection_types=["person"],
                         status="processing", attempts=1, max_attempts=5,
                         next_attempt_at=utcnow(), lease_owner="celery@gone:4242",
                         lease_expires_at=utcnow() + timedelta(seconds=1.0))
        session.add(item)
        await session.commit()
        frame_id, item_id = frame.id, item.id
    await asyncio.sleep(0.5)
    async with api.runtime.session_factory() as session:
        held = await session.get(QueueItem, item_id)
        assert held is not None and held.status == "processing"
        assert held.lease_owner == "celery@gone:4242"
    assert provider.calls == 0
    await wait_for_queue(api.client, api.auth("viewer"), within=10)
    async with api.runtime.session_factory() as session:
        await assert_each_frame_stored_once(session, [frame_id])
        done = await session.get(QueueItem, item_id, populate_existing=True)
        assert done is not None and done.attempts == 2
    assert provider.calls == 1
