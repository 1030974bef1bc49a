"""`GET /api/v1/cameras/{id}/state` on SQLite and PostgreSQL: a silent camera, the last frame
and detection after processing, online/offline decided at read time (also from the cache), a
disabled camera, the provider's circuit, the cache and its invalidation by processed frames."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from framewatch.live.feed import CACHE_STATE
from framewatch.models import Detection, Frame
from framewatch.providers.breaker import record_failure
from tests.api.helpers import add_camera, add_provider, assert_error, post_frame, rows_of
from tests.api_fixtures import Api, make_settings, start_api
from tests.queue.scenario import flaky_provider_body, small_frame
from tests.support.flaky_provider import FlakyProvider
from tests.support.servers import serve_app

QUIET = {"provider_check_seconds": 3600, "stats_interval_seconds": 3600,
         "cleanup_interval_seconds": 3600}


@pytest.fixture
def flaky_url() -> Iterator[str]:
    with serve_app(FlakyProvider().app()) as url:
        yield url


@asynccontextmanager
async def state_api(tmp_path: Path, url: str, provider_url: str,
                    **overrides: Any) -> AsyncIterator[Api]:
    apps = start_api(make_settings(tmp_path, url, **{**QUIET, **overrides}))
    api = await anext(apps)
    try:
        await add_provider(api, **flaky_provider_body(provider_url))
        await add_camera(api, "gate")
        yield api
    finally:
        await anext(apps, None)


async def state(api: Api, camera_id: str = "gate") -> dict[str, Any]:
    response = await api.client.get(f"/api/v1/cameras/{camera_id}/state",
                                    headers=api.auth("viewer"))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def send(api: Api, index: int, camera_id: str = "gate") -> int:
    response = await post_frame(api, small_frame(index), camera_id=camera_id)
    assert response.status_code == 200, response.text
    frame_id: int = response.json()["frame_id"]
    return frame_id


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def state_hits(api: Api) -> int:
    return api.runtime.cache.stats().get(CACHE_STATE, {}).get("hits", 0)


async def test_a_camera_without_frames_is_offline(
    tmp_path: Path, any_database_url: str, flaky_url: str
) -> None:
    async with state_api(tmp_path, any_database_url, flaky_url) as api:
        body = await state(api)
        assert moment(body.pop("checked_at")) <= datetime.now(UTC)
        assert body == {
            "camera_id": "gate", "name": "Gate", "enabled": True, "last_frame_id": None,
            "last_frame_at": None, "last_frame_status": None, "last_detection": None,
            "provider": "flaky", "provider_state": "closed", "online": False,
            "offline_after_seconds": 300.0,
        }
        response = await api.client.get("/api/v1/cameras/nowhere/state",
                                        headers=api.auth("viewer"))
        assert_error(response, 404, "not_found")
        assert_error(await api.client.get("/api/v1/cameras/gate/state"), 401, "unauthorized")


async def test_after_a_processed_frame(
    tmp_path: Path, any_database_url: str, flaky_url: str
) -> None:
    async with state_api(tmp_path, any_database_url, flaky_url) as api:
        frame_id = await send(api, 1)
        [frame] = await rows_of(api, Frame, Frame.id == frame_id)
        [found] = await rows_of(api, Detection, Detection.frame_id == frame_id)
        body = await state(api)
        assert body["last_frame_id"] == frame_id
        assert moment(body["last_frame_at"]) == frame.received_at
        assert body["last_frame_status"] == "processed"
        assert body["last_detection"] == {
            "id": found.id, "type": "person", "label": "person", "confidence": 0.9,
            "bbox": {"x_min": 10, "y_min": 10, "x_max": 30, "y_max": 40},
            "bbox_norm": {"x_min": 0.15625, "y_min": 0.20833, "x_max": 0.46875,
                          "y_max": 0.83333},
            "subject": None, "person_id": None, "person": None, "frame_id": frame_id,
            "detected_at": body["last_detection"]["detected_at"],
        }
        assert moment(body["last_detection"]["detected_at"]) == found.detected_at
        assert (body["provider"], body["provider_state"], body["online"]) == (
            "flaky", "closed", True)


async def test_online_is_decided_at_each_read_even_from_the_cache(
    tmp_path: Path, any_database_url: str, flaky_url: str
) -> None:
    async with state_api(tmp_path, any_database_url, flaky_url,
                         camera_offline_seconds=0.5) as api:
        await send(api, 1)
        first = await state(api)
        silence = moment(first["checked_at"]) - moment(first["last_frame_at"])
        assert first["online"] is (silence <= timedelta(seconds=0.5))
        assert first["offline_after_seconds"] == 0.5
        await asyncio.sleep(max(0.0, 0.55 - silence.total_seconds()))
        hits = state_hits(api)
        later = await state(api)
        assert state_hits(api) == hits + 1  # the same stored state ...
        assert later["last_frame_id"] == first["last_frame_id"]
        assert later["online"] is False  # ... judged again now


async def test_a_disabled_camera_is_offline_at_once(
    tmp_path: Path, any_database_url: str, flaky_url: str
) -> None:
    async with state_api(tmp_path, any_database_url, flaky_url) as api:
        await send(api, 1)
        assert (await state(api))["online"] is True  # now cached
        response = await api.client.patch("/api/v1/cameras/gate", json={"enabled": False},
                                          headers=api.auth("admin"))
        assert response.status_code == 200, response.text
        body = await state(api)
        assert (body["enabled"], body["online"]) == (False, False)
        assert body["last_frame_id"] is not None
        response = await api.client.patch("/api/v1/cameras/gate",
                                          json={"enabled": True, "name": "Front gate"},
                                          headers=api.auth("admin"))
        assert response.status_code == 200, response.text
        body = await state(api)
        assert (body["enabled"], body["online"], body["name"]) == (True, True, "Front gate")


async def test_an_open_circuit_is_shown(
    tmp_path: Path, any_database_url: str, flaky_url: str
) -> None:
    async with state_api(tmp_path, any_database_url, flaky_url) as api:
        await add_camera(api, "yard")
        await send(api, 1)
        assert (await state(api))["provider_state"] == "closed"  # cached for a minute
        async with api.runtime.session_factory() as session:
            opened = await record_failure(session, "flaky", "boom",
                                          api.runtime.breaker_policy, trip=True)
            await session.commit()
        assert opened is True
        # A camera whose state was not cached sees it at once; a cached one once invalidated.
        yard = await state(api, "yard")
        assert (yard["provider"], yard["provider_state"]) == ("flaky", "open")
        await api.runtime.cache.bump(CACHE_STATE, "gate")
        gate = await state(api)
        assert (gate["provider"], gate["provider_state"]) == ("flaky", "open")


async def test_a_disabled_provider_is_still_named(
    tmp_path: Path, any_database_url: str, flaky_url: str
) -> None:
    async with state_api(tmp_path, any_database_url, flaky_url) as api:
        spare = await add_provider(api, **flaky_provider_body(
            flaky_url, name="spare", is_default=False, enabled=False))
        await add_camera(api, "yard", provider_id=spare["id"])
        body = await state(api, "yard")
        assert (body["provider"], body["provider_state"]) == ("spare", "closed")


async def test_the_cache_and_its_invalidation_by_a_new_frame(
    tmp_path: Path, any_database_url: str, flaky_url: str
) -> None:
    async with state_api(tmp_path, any_database_url, flaky_url,
                         camera_state_ttl_seconds=3600) as api:
        await add_camera(api, "yard")
        first_frame = await send(api, 1)
        first = await state(api)
        hits = state_hits(api)
        again = await state(api)
        assert state_hits(api) == hits + 1
        assert {k: v for k, v in again.items() if k != "checked_at"} == {
            k: v for k, v in first.items() if k != "checked_at"}
        # Another camera's frame leaves this entry alone; this camera's replaces it at once.
        await send(api, 2, "yard")
        assert (await state(api))["last_frame_id"] == first_frame
        assert state_hits(api) == hits + 2
        second_frame = await send(api, 3)
        body = await state(api)
        assert body["last_frame_id"] == second_frame != first_frame
        assert body["last_detection"]["frame_id"] == second_frame
        assert state_hits(api) == hits + 2  # a miss: rebuilt from the database
        assert (await state(api, "yard"))["last_frame_id"] == second_frame - 1
