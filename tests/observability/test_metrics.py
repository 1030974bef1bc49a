"""`GET /metrics` scraped before and after real traffic: the counters move by exactly what the
traffic did (requests by route and status, frames by camera and provider, detections by type,
provider latency, queue tasks, WebSocket messages, failures), and the endpoint is guarded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from framewatch.auth.service import Role, create_key
from framewatch.models import QueueItem
from tests.api.helpers import add_camera, post_frame
from tests.api_fixtures import Api, make_settings, start_api
from tests.live.clients import QUIET, live_server
from tests.queue.scenario import flaky_provider_body, small_frame
from tests.support.flaky_provider import FlakyProvider
from tests.support.servers import serve_app

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
SEND_FRAME = "/api/v1/detections/send-frame"


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def scrape(client: httpx.AsyncClient, key: str) -> Samples:
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def test_the_counters_move_by_what_the_traffic_did(tmp_path: Path, sqlite_url: str) -> None:
    async with live_server(tmp_path, sqlite_url) as server:
        viewer = server.keys["viewer"]
        before = await scrape(server.http, viewer)
        async with server.ws() as ws:
            await ws.subscribe()
            for _ in range(3):
                await server.post_frame("gate")
            for _ in range(2):
                await server.post_frame("yard", mode="async")
            only_camera = {"camera_id": (None, "gate")}  # multipart, without an image
            bad = await server.http.post(SEND_FRAME, files=only_camera,
                                         headers={"Authorization": f"Bearer {viewer}"})
            assert bad.status_code == 403  # a viewer may not send frames...
            server.expected += 1  # ...and the refusal is audited: an `auth.denied` event
            missing = await server.http.post(
                SEND_FRAME, files=only_camera,
                headers={"Authorization": f"Bearer {server.keys['operator']}"})
            assert missing.status_code == 400  # no image
            # Every live message is out (and read) once the stats answer comes after them.
            await ws.until_published(server.expected, within=60)
            await ws.stats()
            after = await scrape(server.http, viewer)
            connections = value(after, "framewatch_websocket_connections")
            received = ws.received

    route = {"route": SEND_FRAME, "method": "POST"}
    assert moved(before, after, "framewatch_http_requests_total", **route, status="200") == 3
    assert moved(before, after, "framewatch_http_requests_total", **route, status="202") == 2
    assert moved(before, after, "framewatch_http_requests_total", **route, status="403") == 1
    assert moved(before, after, "framewatch_http_requests_total", **route, status="400") == 1
    assert moved(before, after, "framewatch_http_request_duration_seconds_count", **route) == 7
    # The scrape before this one was counted too, by its route template.
    assert moved(before, after, "framewatch_http_requests_total", route="/metrics",
                 method="GET", status="200") == 1

    assert moved(before, after, "framewatch_frames_received_total", camera="gate") == 3
    assert moved(before, after, "framewatch_frames_received_total", camera="yard") == 2
    assert moved(before, after, "framewatch_frames_processed_total", camera="gate",
                 provider="crowd") == 3
    assert moved(before, after, "framewatch_frames_processed_total", camera="yard",
                 provider="crowd") == 2
    # The crowd provider finds two persons and a car in every frame.
    assert moved(before, after, "framewatch_detections_total", camera="gate", type="person") == 6
    assert moved(before, after, "framewatch_detections_total", camera="gate", type="vehicle") == 3
    assert moved(before, after, "framewatch_detections_total", camera="yard", type="person") == 4
    assert moved(before, after, "framewatch_provider_latency_seconds_count", provider="crowd") == 5
    assert moved(before, after, "framewatch_tasks_total", task="process_detection_frame",
                 outcome="done") == 2
    assert moved(before, after, "framewatch_frames_failed_total", camera="gate",
                 provider="crowd") == 0

    # One client was open; every text it read was a message the server counted as sent.
    assert connections == 1
    assert moved(before, after, "framewatch_websocket_messages_sent_total") == received
    assert value(after, "framewatch_websocket_messages_dropped_total") == 0
    assert value(after, "framewatch_queue_items", status="done") == 2
    assert value(after, "framewatch_queue_oldest_pending_seconds") == 0


@pytest.fixture
def down_provider() -> AsyncIterator[tuple[FlakyProvider, str]]:
    provider = FlakyProvider(down=True)
    with serve_app(provider.app()) as url:
        yield provider, url


async def test_failures_and_the_queue_gauge(
    tmp_path: Path, sqlite_url: str, down_provider: tuple[FlakyProvider, str]
) -> None:
    provider, url = down_provider
    # A failed item waits an hour before its next attempt: the counts stay still while read.
    settings = make_settings(tmp_path, sqlite_url, queue_retry_base_seconds=3600,
                             queue_retry_max_seconds=3600, **QUIET)
    async for api in start_api(settings):
        await _failures(api, provider, url)


async def _failures(api: Api, provider: FlakyProvider, url: str) -> None:
    created = await api.client.post("/api/v1/providers", json=flaky_provider_body(url),
                                    headers=api.auth("admin"))
    assert created.status_code == 201, created.text
    await add_camera(api)
    before = parse((await api.client.get("/metrics", headers=api.auth("viewer"))).text)
    for index in range(2):
        answer = await post_frame(api, small_frame(index))
        assert answer.status_code == 503, answer.text
    after = parse((await api.client.get("/metrics", headers=api.auth("viewer"))).text)

    assert provider.failures == 2
    assert moved(before, after, "framewatch_frames_received_total", camera="gate") == 2
    assert moved(before, after, "framewatch_frames_failed_total", camera="gate",
                 provider="flaky") == 2
    assert moved(before, after, "framewatch_provider_errors_total", provider="flaky",
                 kind="unreachable") == 2
    assert moved(before, after, "framewatch_frames_processed_total", camera="gate",
                 provider="flaky") == 0
    assert moved(before, after, "framewatch_http_requests_total", route=SEND_FRAME,
                 method="POST", status="503") == 2
    # Both frames were left queued, waiting for their next attempt.
    async with api.runtime.session_factory() as session:
        queued = await session.scalar(select(func.count()).select_from(QueueItem))
    statuses = {labels: count for (name, labels), count in after.items()
                if name == "framewatch_queue_items"}
    assert queued == 2 and sum(statuses.values()) == 2
    assert value(after, "framewatch_queue_oldest_pending_seconds") >= 0


async def test_metrics_need_a_key_that_may_read_statistics(api: Api) -> None:
    async with api.runtime.session_factory() as session:
        _, agent = await create_key(session, name="door-agent", role=Role.AGENT)
        await session.commit()
    anonymous = await api.client.get("/metrics")
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized"
    refused = await api.client.get("/metrics", headers={"Authorization": f"Bearer {agent}"})
    assert refused.status_code == 403
    assert refused.json()["required_permission"] == "stats:read"
    answer = await api.client.get("/metrics", headers=api.auth("viewer"))
    assert answer.status_code == 200
    names = {family.name for family in text_string_to_metric_families(answer.text)}
    assert {"framewatch_http_requests", "framewatch_frames_received", "framewatch_queue_items",
            "framewatch_cache_hits", "framewatch_websocket_connections",
            "framewatch_tasks"} <= names
