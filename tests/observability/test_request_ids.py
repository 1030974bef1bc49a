"""A request's id — the caller's `X-Request-ID` when sane, a new one otherwise — is answered
back, stored on the events the request causes, carried on the queue item a frame becomes and so
onto the events its worker writes."""

from __future__ import annotations

import asyncio
import re
import time

from sqlalchemy import select

from framewatch.models import DetectionEventLog, QueueItem
from tests.api.helpers import add_camera
from tests.api_fixtures import Api
from tests.queue.scenario import small_frame


async def wait_done(api: Api, item_id: int, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while True:
        answer = await api.client.get(f"/api/v1/detections/queue/{item_id}",
                                      headers=api.auth("viewer"))
        assert answer.status_code == 200, answer.text
        if answer.json()["status"] == "done":
            return
        assert time.monotonic() < deadline, answer.json()
        await asyncio.sleep(0.05)


async def events_of(api: Api, frame_id: int) -> list[tuple[str, str | None]]:
    async with api.runtime.session_factory() as session:
        rows = await session.scalars(select(DetectionEventLog)
                                     .where(DetectionEventLog.frame_id == frame_id)
                                     .order_by(DetectionEventLog.id))
        return [(row.event_type, row.request_id) for row in rows]


async def test_the_callers_id_goes_from_the_request_through_the_queue_to_the_events(
    api: Api,
) -> None:
    await add_camera(api)
    answer = await api.client.post(
        "/api/v1/detections/send-frame",
        files={"image": ("f.jpg", small_frame(1), "image/jpeg")},
        data={"camera_id": "gate", "mode": "async"},
        headers={**api.auth("operator"), "X-Request-ID": "door-cam.42_a"},
    )
    assert answer.status_code == 202, answer.text
    assert answer.headers["x-request-id"] == "door-cam.42_a"
    body = answer.json()
    async with api.runtime.session_factory() as session:
        item = await session.get(QueueItem, body["queue_item_id"])
        assert item is not None and item.request_id == "door-cam.42_a"

    await wait_done(api, body["queue_item_id"])
    events = await events_of(api, body["frame_id"])
    # Written by the in-process worker, long after the request ended: still the caller's id.
    assert ("frame.processed", "door-cam.42_a") in events
    assert {request_id for _, request_id in events} == {"door-cam.42_a"}


async def test_an_unusable_id_is_replaced_and_every_request_gets_one(api: Api) -> None:
    await add_camera(api)
    given = await api.client.post(
        "/api/v1/detections/send-frame",
        files={"image": ("f.jpg", small_frame(2), "image/jpeg")}, data={"camera_id": "gate"},
        headers={**api.auth("operator"), "X-Request-ID": "has spaces; and;"},
    )
    assert given.status_code == 200, given.text
    replaced = given.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", replaced)
    events = await events_of(api, given.json()["frame_id"])
    assert events and {request_id for _, request_id in events} == {replaced}

    first = await api.client.get("/healthz")
    second = await api.client.get("/healthz")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    too_long = await api.client.get("/healthz", headers={"X-Request-ID": "a" * 65})
    assert too_long.headers["x-request-id"] != "a" * 65
    # Refusals carry one too.
    refused = await api.client.get("/api/v1/cameras", headers={"X-Request-ID": "probe-1"})
    assert refused.status_code == 401 and refused.headers["x-request-id"] == "probe-1"

