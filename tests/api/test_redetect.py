"""Sending a stored frame to a provider on demand (`send_frame_to_provider`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from framewatch.models import Detection, DetectionEventLog
from tests.api.helpers import add_camera, assert_error, post_frame
from tests.api_fixtures import Api
from tests.queue.scenario import flaky_provider_body
from tests.support.flaky_provider import FlakyProvider
from tests.support.servers import serve_app


@pytest.fixture
def flaky() -> Iterator[tuple[FlakyProvider, str]]:
    provider = FlakyProvider()
    with serve_app(provider.app()) as url:
        yield provider, url


async def test_a_stored_frame_goes_to_another_provider_without_replacing_its_detections(
    api: Api, flaky: tuple[FlakyProvider, str]
) -> None:
    body = {**flaky_provider_body(flaky[1]), "is_default": False, "name": "second-opinion"}
    created = await api.client.post("/api/v1/providers", json=body, headers=api.auth("admin"))
    provider_id = created.json()["id"]
    await add_camera(api)
    sent = (await post_frame(api, "astronaut.jpg")).json()
    frame_id = sent["frame_id"]

    response = await api.client.post(f"/api/v1/frames/{frame_id}/redetect",
                                     json={"provider_id": provider_id},
                                     headers=api.auth("operator"))

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["frame_id"] == frame_id and answer["provider"] == "second-opinion"
    assert answer["model"].startswith("deepstack")
    assert [(d["label"], d["bbox"]) for d in answer["detections"]] == [
        ("person", {"x_min": 10.0, "y_min": 10.0, "x_max": 30.0, "y_max": 40.0})]
    assert flaky[0].calls == 1
    async with api.runtime.session_factory() as session:
        stored = list(await session.scalars(
            select(Detection.provider_name).where(Detection.frame_id == frame_id)))
        event = await session.scalar(select(DetectionEventLog).where(
            DetectionEventLog.event_type == "frame.redetected"))
    assert stored and set(stored) == {"builtin"}  # the frame's own detections are untouched
    assert event is not None and event.frame_id == frame_id and event.actor == "key:test-operator"
    assert event.payload["detections"] == answer["detections"]


async def test_the_default_is_the_cameras_provider_and_errors_are_clear(
    api: Api, flaky: tuple[FlakyProvider, str]
) -> None:
    await add_camera(api)
    frame_id = (await post_frame(api, "coffee.jpg")).json()["frame_id"]
    same = await api.client.post(f"/api/v1/frames/{frame_id}/redetect",
                                 headers=api.auth("operator"))
    assert same.status_code == 200 and same.json()["provider"] == "builtin"

    assert_error(await api.client.post("/api/v1/frames/999999/redetect",
                                       headers=api.auth("operator")), 404, "not_found")
    assert_error(await api.client.post(f"/api/v1/frames/{frame_id}/redetect",
                                       json={"provider_id": 77}, headers=api.auth("operator")),
                 404, "not_found")
    body = {**flaky_provider_body(flaky[1]), "is_default": False, "name": "down"}
    down_id = (await api.client.post("/api/v1/providers", json=body,
                                     headers=api.auth("admin"))).json()["id"]
    flaky[0].down = True
    assert_error(await api.client.post(f"/api/v1/frames/{frame_id}/redetect",
                                       json={"provider_id": down_id},
                                       headers=api.auth("operator")), 503, "provider_unavailable")
    assert_error(await api.client.post(f"/api/v1/frames/{frame_id}/redetect",
                                       json={"provider_id": 0}, headers=api.auth("operator")),
                 422, "validation_error")
