"""The MQTT publisher against a real Mosquitto: a real frame posted to the API comes out as
per-camera, per-type topics with JSON payloads; the latest state is retained for clients that
subscribe later; `status` says online, then offline; Home Assistant discovery; and messages
wait in the buffer while the broker is down (the oldest dropped when it is full)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api_fixtures import Api
from tests.conftest import frame_bytes
from tests.mqtt.support import (
    broker_url_or_skip,
    clear_retained,
    private_broker,
    retained,
    subscribed,
    unique_prefix,
)
from tests.support.servers import free_port
from tests.webhooks.support import until, webhook_api


@pytest.fixture
def broker_url() -> str:
    return broker_url_or_skip()


@pytest.fixture
def prefix(broker_url: str) -> Iterator[str]:
    name = unique_prefix("fw")
    yield name
    clear_retained(broker_url, name)


async def post_street(api: Api, camera_id: str) -> dict[str, Any]:
    """tests/data/street.jpg to `camera_id`, processed before the answer."""
    response = await api.client.post(
        "/api/v1/detections/send-frame", headers=api.auth("operator"),
        files={"image": ("street.jpg", frame_bytes("street.jpg"), "image/jpeg")},
        data={"camera_id": camera_id, "mode": "sync"},
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_a_frame_is_published_per_camera_and_type_and_the_state_is_retained(
    tmp_path: Path, sqlite_url: str, broker_url: str, prefix: str
) -> None:
    with subscribed(broker_url, f"{prefix}/#") as live:
        async with webhook_api(tmp_path, sqlite_url, mqtt_url=broker_url,
                               mqtt_topic_prefix=prefix,
                               mqtt_event_types="frame.processed,provider.down") as api:
            live.wait_for(lambda ms: any(m.topic == f"{prefix}/status" and m.payload == b"online"
                                         for m in ms), "status online")
            frame = await post_street(api, "gate")
            topics = {f"{prefix}/gate/person", f"{prefix}/gate/person/last_seen",
                      f"{prefix}/gate/vehicle", f"{prefix}/gate/vehicle/last_seen",
                      f"{prefix}/gate/state", f"{prefix}/events/frame.processed"}
            live.wait_for_topics(topics)
            stats = api.runtime.mqtt.stats()
        # Stopping, the app says so (its will would, were it killed).
        live.wait_for(lambda ms: [m.payload for m in ms if m.topic == f"{prefix}/status"][-1:]
                      == [b"offline"], "status offline")

    frame_id = frame["frame_id"]
    (person,) = live.on(f"{prefix}/gate/person")
    assert person.json["camera_id"] == "gate" and person.json["frame_id"] == frame_id
    assert person.json["type"] == "person" and person.json["count"] == 1
    assert person.json["provider"] == "flaky" and person.json["persons"] == []
    assert [(d["type"], d["label"], d["confidence"]) for d in person.json["detections"]] == [
        ("person", "person", 0.9)]
    assert person.json["detections"][0]["bbox"] == {"x_min": 10, "y_min": 10,
                                                    "x_max": 30, "y_max": 40}
    (vehicle,) = live.on(f"{prefix}/gate/vehicle")
    assert [(d["type"], d["label"]) for d in vehicle.json["detections"]] == [("vehicle", "car")]
    (last_seen,) = live.on(f"{prefix}/gate/person/last_seen")
    assert "detections" not in last_seen.json
    assert {k: last_seen.json[k] for k in ("frame_id", "type", "count")} == {
        "frame_id": frame_id, "type": "person", "count": 1}
    (state,) = live.on(f"{prefix}/gate/state")
    assert state.json["frame_id"] == frame_id and state.json["camera_id"] == "gate"
    assert state.json["counts"] == {"person": 1, "vehicle": 1}
    (event,) = live.on(f"{prefix}/events/frame.processed")
    assert event.json["event_type"] == "frame.processed"
    assert event.json["frame_id"] == frame_id and event.json["camera_id"] == "gate"
    # Nothing for the camera that sent nothing, nor for event types not asked for.
    assert not [m for m in live.received() if m.topic.startswith(f"{prefix}/yard/")]
    assert {m.topic for m in live.received() if "/events/" in m.topic} == {
        f"{prefix}/events/frame.processed"}
    assert stats["connected"] and stats["dropped"] == 0 and stats["buffered"] == 0
    assert stats["published"] == 6

    # A client that subscribes now gets the latest state at once, and the status: the app has
    # stopped, so the broker keeps `offline`.
    kept = retained(broker_url, prefix)
    assert set(kept) == {f"{prefix}/status", f"{prefix}/gate/state",
                         f"{prefix}/gate/person/last_seen", f"{prefix}/gate/vehicle/last_seen"}
    assert kept[f"{prefix}/status"].payload == b"offline"
    assert kept[f"{prefix}/gate/state"].json == state.json


async def test_without_retention_only_the_status_is_kept(
    tmp_path: Path, sqlite_url: str, broker_url: str, prefix: str
) -> None:
    with subscribed(broker_url, f"{prefix}/#") as live:
        async with webhook_api(tmp_path, sqlite_url, mqtt_url=broker_url,
                               mqtt_topic_prefix=prefix, mqtt_retain_last_seen=False) as api:
            await post_street(api, "yard")
            live.wait_for_topics({f"{prefix}/yard/state"})
    assert set(retained(broker_url, prefix)) == {f"{prefix}/status"}


async def test_home_assistant_discovery_announces_a_sensor_per_camera_and_type(
    tmp_path: Path, sqlite_url: str, broker_url: str, prefix: str
) -> None:
    discovery = unique_prefix("ha")
    try:
        async with webhook_api(tmp_path, sqlite_url, mqtt_url=broker_url,
                               mqtt_topic_prefix=prefix, mqtt_discovery_prefix=discovery) as api:
            with subscribed(broker_url, f"{discovery}/#") as announcements:
                await post_street(api, "gate")
                await post_street(api, "gate")  # announced once per connection, not per frame
                device = f"{prefix}_gate".replace("-", "_")
                person_topic = f"{discovery}/binary_sensor/{device}_person/config"
                vehicle_topic = f"{discovery}/binary_sensor/{device}_vehicle/config"
                announcements.wait_for_topics({person_topic, vehicle_topic})
                announced = announcements.drain(f"{discovery}/_marker")
        kept = retained(broker_url, discovery)
    finally:
        clear_retained(broker_url, discovery)

    assert sorted(m.topic for m in announced) == sorted([person_topic, vehicle_topic])
    config = kept[person_topic].json
    assert config == {
        "name": "person", "unique_id": f"{device}_person",
        "state_topic": f"{prefix}/gate/person", "value_template": "ON", "payload_on": "ON",
        "off_delay": 30, "json_attributes_topic": f"{prefix}/gate/person/last_seen",
        "availability_topic": f"{prefix}/status", "device_class": "occupancy",
        "device": {"identifiers": [device], "name": "Camera gate", "manufacturer": "framewatch"},
    }
    assert "device_class" not in kept[vehicle_topic].json


async def test_messages_wait_for_a_broker_that_is_down_and_the_oldest_are_dropped(
    tmp_path: Path, sqlite_url: str
) -> None:
    broker_url_or_skip()  # the private broker is a Mosquitto too: same switch
    port = free_port()  # nothing listens there yet
    prefix = unique_prefix("down")
    async with webhook_api(tmp_path, sqlite_url, mqtt_url=f"mqtt://127.0.0.1:{port}",
                           mqtt_topic_prefix=prefix, mqtt_buffer_messages=3) as api:
        publisher = api.runtime.mqtt
        frame = await post_street(api, "gate")
        # 5 messages (person, vehicle, their last_seen, state) for a buffer of 3.
        down = publisher.stats()
        assert (down["connected"], down["buffered"], down["dropped"]) == (False, 3, 2)
        metrics = await api.client.get("/metrics", headers=api.auth("admin"))
        assert "framewatch_mqtt_messages_dropped_total 2.0" in metrics.text
        assert "framewatch_mqtt_connected 0.0" in metrics.text
        with private_broker(port) as url:
            async def flushed() -> dict[str, Any] | None:
                stats = publisher.stats()
                # The last message leaves the buffer a moment before it counts as published.
                handed = stats["published"] + stats["dropped"] >= 5
                return stats if stats["connected"] and stats["buffered"] == 0 and handed else None

            up = await until(flushed, 30, "the buffer flushed once the broker is up")
            # Handed to paho is not yet at the broker: wait until they are there.
            with subscribed(url, f"{prefix}/#") as late:
                late.wait_for_topics({f"{prefix}/gate/state"})
            kept = retained(url, prefix)
    assert (up["published"], up["dropped"], up["connections"]) == (3, 2, 1)
    # The newest three were kept: the vehicle's messages and the camera's state.
    assert set(kept) == {f"{prefix}/status", f"{prefix}/gate/state",
                         f"{prefix}/gate/vehicle/last_seen"}
    assert kept[f"{prefix}/status"].payload == b"online"
    assert kept[f"{prefix}/gate/state"].json["frame_id"] == frame["frame_id"]
