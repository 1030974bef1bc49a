"""Webhooks with the in-process worker on SQLite: what arrives at a real receiver — signed
bodies and headers, only what the filters want, each message exactly once — and test pings."""

from __future__ import annotations

import time
from pathlib import Path

from framewatch.webhooks.signing import verify
from tests.webhooks.support import (
    create_webhook,
    deliveries,
    receiving,
    send,
    settled,
    webhook_api,
)


async def test_signed_filtered_deliveries_arrive_exactly_once(
    tmp_path: Path, sqlite_url: str
) -> None:
    with receiving() as (everything, everything_url), receiving() as (narrow, narrow_url):
        async with webhook_api(tmp_path, sqlite_url) as api:
            wide = await create_webhook(api, everything_url,
                                        event_types=["detection", "frame.processed"])
            person_at_gate = await create_webhook(api, narrow_url, camera_ids=["gate"],
                                                  detection_types=["person"])
            assert wide["secret"].startswith("whsec_") and person_at_gate["secret"]
            frames = {"gate": [], "yard": []}
            for index, camera in enumerate(["gate", "yard", "gate", "yard"]):
                frames[camera].append((await send(api, camera, index))["frame_id"])

            wide_rows = await settled(api, wide["id"], 8)  # 4 frames + 4 frame.processed
            narrow_rows = await settled(api, person_at_gate["id"], 2)

    # The narrow webhook: only gate's frames, and of their detections only the person.
    assert sorted(h.json["data"]["frame_id"] for h in narrow.hits) == sorted(frames["gate"])
    for hit in narrow.hits:
        assert hit.json["type"] == "detection" and hit.json["webhook_id"] == person_at_gate["id"]
        assert hit.json["data"]["camera_id"] == "gate"
        assert [d["type"] for d in hit.json["data"]["detections"]] == ["person"]
        assert verify(person_at_gate["secret"], hit.body, hit.headers["x-framewatch-signature"])
        assert not verify(wide["secret"], hit.body, hit.headers["x-framewatch-signature"])
    # The wide one: every frame with both detections, and the frame.processed events.
    detections = wide_and_type(everything, "detection")
    assert sorted(h.json["data"]["frame_id"] for h in detections) == sorted(
        frames["gate"] + frames["yard"])
    assert all(sorted(d["type"] for d in h.json["data"]["detections"]) == ["person", "vehicle"]
               for h in detections)
    processed = wide_and_type(everything, "frame.processed")
    assert sorted(h.json["data"]["frame_id"] for h in processed) == sorted(
        frames["gate"] + frames["yard"])
    assert all(h.json["data"]["event_type"] == "frame.processed" for h in processed)
    # Headers: the delivery id is the history's, the event type the body's; signatures are
    # fresh and verify; nothing was sent twice.
    for receiver, rows in ((everything, wide_rows), (narrow, narrow_rows)):
        by_id = {str(row["id"]): row for row in rows}
        assert sorted(h.headers["x-framewatch-delivery"] for h in receiver.hits) == sorted(by_id)
        for hit in receiver.hits:
            row = by_id[hit.headers["x-framewatch-delivery"]]
            assert hit.headers["x-framewatch-event"] == row["event_type"] == hit.json["type"]
            assert hit.headers["content-type"] == "application/json"
            assert row["body"] == hit.json
            assert row["status"] == "delivered" and row["attempts"] == 1
            assert row["last_status_code"] == 200 and row["last_error"] is None
            assert row["last_response_ms"] is not None and row["last_response_ms"] >= 0
            stamp = int(hit.headers["x-framewatch-signature"].split(",")[0].removeprefix("t="))
            assert abs(time.time() - stamp) < 60


def wide_and_type(receiver: object, event_type: str) -> list:  # type: ignore[type-arg]
    return receiver.of_type(event_type)  # type: ignore[attr-defined,no-any-return]


async def test_a_non_matching_message_is_not_delivered(tmp_path: Path, sqlite_url: str) -> None:
    with receiving() as (receiver, url):
        async with webhook_api(tmp_path, sqlite_url) as api:
            cars_at_yard = await create_webhook(api, url, camera_ids=["yard"],
                                                detection_types=["vehicle"],
                                                min_confidence=0.5)
            confident_cars = await create_webhook(api, url, detection_types=["vehicle"],
                                                  min_confidence=0.7)
            only_events = await create_webhook(api, url, event_types=["provider.down"])
            disabled = await create_webhook(api, url, enabled=False)
            sent_to_gate = (await send(api, "gate", 1))["frame_id"]
            sent_to_yard = (await send(api, "yard", 2))["frame_id"]
            yard_rows = await settled(api, cars_at_yard["id"], 1)

            assert await deliveries(api, confident_cars["id"]) == []  # the car is at 0.6
            assert await deliveries(api, only_events["id"]) == []
            assert await deliveries(api, disabled["id"]) == []
    assert [h.json["data"]["frame_id"] for h in receiver.hits] == [sent_to_yard]
    assert sent_to_gate not in [row["body"]["data"]["frame_id"] for row in yard_rows]
    assert [d["type"] for d in receiver.hits[0].json["data"]["detections"]] == ["vehicle"]


async def test_ping_is_sent_at_once_and_shown_in_the_history(
    tmp_path: Path, sqlite_url: str
) -> None:
    with receiving() as (receiver, url):
        async with webhook_api(tmp_path, sqlite_url) as api:
            hook = await create_webhook(api, url, enabled=False)
            response = await api.client.post(f"/api/v1/webhooks/{hook['id']}/ping",
                                             headers=api.auth("admin"))
            assert response.status_code == 200, response.text
            ping = response.json()
            history = await deliveries(api, hook["id"])
    assert ping["status"] == "delivered" and ping["attempts"] == 1
    assert ping["event_type"] == "ping" and ping["last_status_code"] == 200
    assert ping["body"]["data"]["webhook_id"] == hook["id"]
    assert [row["id"] for row in history] == [ping["id"]]
    (hit,) = receiver.hits
    assert hit.headers["x-framewatch-event"] == "ping"
    assert hit.headers["x-framewatch-delivery"] == str(ping["id"])
    assert verify(hook["secret"], hit.body, hit.headers["x-framewatch-signature"])
