"""/api/v1/cameras: create, list, read, update, delete (with frames, detections and files)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from framewatch.models import Camera, Detection, DetectionEventLog, Frame, QueueItem
from tests.api.helpers import (
    add_camera,
    add_provider,
    assert_error,
    count_rows,
    post_frame,
    rows_of,
)
from tests.api_fixtures import Api, make_settings, start_api
from tests.conftest import frame_bytes, postgres_emptied
from tests.support.servers import free_port

CAMERAS = "/api/v1/cameras"
# A camera created without retention overrides follows the global settings.
NO_RETENTION = dict.fromkeys(("retention_detections_days", "retention_frames_days",
                              "retention_face_encodings_days", "retention_events_days"))


async def camera_events(api: Api, camera_id: str) -> list[DetectionEventLog]:
    return await rows_of(api, DetectionEventLog, DetectionEventLog.camera_id == camera_id,
                         DetectionEventLog.event_type.like("camera.%"))


async def test_create_answers_201_with_the_camera_and_records_an_event(api_any_db: Api) -> None:
    api = api_any_db
    before = datetime.now(UTC)
    response = await api.client.post(
        CAMERAS, headers=api.auth("admin"),
        json={"id": "front-door", "name": "Front door", "location": "Porch"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    created_at = datetime.fromisoformat(body.pop("created_at"))
    updated_at = datetime.fromisoformat(body.pop("updated_at"))
    assert body == {"id": "front-door", "name": "Front door", "location": "Porch",
                    "enabled": True, "provider_id": None, **NO_RETENTION}
    assert before - timedelta(seconds=1) <= created_at <= datetime.now(UTC)
    assert abs(updated_at - created_at) < timedelta(seconds=1)

    async with api.runtime.session_factory() as session:
        row = await session.get(Camera, "front-door")
        assert row is not None and row.name == "Front door" and row.location == "Porch"
    [event] = await camera_events(api, "front-door")
    assert event.event_type == "camera.created" and event.severity == "info"
    assert event.actor == "key:admin"
    assert event.payload == {"id": "front-door", "name": "Front door", "location": "Porch",
                             "enabled": True, "provider_id": None, **NO_RETENTION}


async def test_the_longest_allowed_values_are_accepted(api: Api) -> None:
    slug = "a" + "-b_9" * 15 + "xyz"
    assert len(slug) == 64
    body = await add_camera(api, slug, name="n" * 200, location="l" * 200, enabled=False)
    assert (body["id"], len(body["name"]), len(body["location"])) == (slug, 200, 200)
    assert body["enabled"] is False


async def test_a_duplicate_id_gets_409_and_the_first_camera_is_kept(api_any_db: Api) -> None:
    api = api_any_db
    await add_camera(api, "gate", name="Gate")
    response = await api.client.post(CAMERAS, headers=api.auth("admin"),
                                     json={"id": "gate", "name": "Other"})
    body = assert_error(response, 409, "conflict")
    assert "gate" in body["detail"]
    kept = (await api.client.get(f"{CAMERAS}/gate", headers=api.auth("viewer"))).json()
    assert kept["name"] == "Gate"
    assert [e.event_type for e in await camera_events(api, "gate")] == ["camera.created"]


async def test_two_concurrent_creates_of_one_id_give_one_201_and_one_409(
    api_any_db: Api,
) -> None:
    api = api_any_db
    responses = await asyncio.gather(*(
        api.client.post(CAMERAS, headers=api.auth("admin"), json={"id": "gate", "name": name})
        for name in ("First", "Second")
    ))
    assert sorted(r.status_code for r in responses) == [201, 409], [r.text for r in responses]
    loser = next(r for r in responses if r.status_code == 409)
    assert_error(loser, 409, "conflict")
    assert await count_rows(api, Camera) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"id": "Front", "name": "x"}, "id"),
        ({"id": "-gate", "name": "x"}, "id"),
        ({"id": "front door", "name": "x"}, "id"),
        ({"id": "gate\n", "name": "x"}, "id"),
        ({"id": "gate/../x", "name": "x"}, "id"),
        ({"id": "a" * 65, "name": "x"}, "id"),
        ({"id": "", "name": "x"}, "id"),
        ({"name": "x"}, "id"),
        ({"id": "gate"}, "name"),
        ({"id": "gate", "name": ""}, "name"),
        ({"id": "gate", "name": "n" * 201}, "name"),
        ({"id": "gate", "name": "x", "location": "l" * 201}, "location"),
        ({"id": "gate", "name": "x", "enabled": "maybe"}, "enabled"),
        ({"id": "gate", "name": "x", "provider_id": "one"}, "provider_id"),
        ({"id": "gate", "name": "x", "colour": "red"}, "colour"),
    ],
    ids=["upper-case", "leading-dash", "space", "newline", "slash", "id-65-chars", "id-empty",
         "id-missing", "name-missing", "name-empty", "name-201-chars", "location-201-chars",
         "enabled-not-bool", "provider-not-int", "unknown-field"],
)
async def test_invalid_bodies_get_422_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    response = await api.client.post(CAMERAS, headers=api.auth("admin"), json=body)
    error = assert_error(response, 422, "validation_error")
    assert field in error["detail"]
    assert any(f["loc"][-1] == field for f in error["fields"]), error["fields"]
    assert await count_rows(api, Camera) == 0


@pytest.mark.parametrize("provider_id", [999, 0, -1, 2**31, 2**63, 10**30])
async def test_an_unknown_provider_id_gets_422_not_a_server_error(
    api_any_db: Api, provider_id: int
) -> None:
    api = api_any_db
    response = await api.client.post(CAMERAS, headers=api.auth("admin"),
                                      json={"id": "gate", "name": "Gate",
                                            "provider_id": provider_id})
    error = assert_error(response, 422, "validation_error")
    assert (error.get("field") or error["fields"][0]["loc"][-1]) == "provider_id", error
    assert await count_rows(api, Camera) == 0

    await add_camera(api)
    patched = await api.client.patch(f"{CAMERAS}/gate", headers=api.auth("admin"),
                                     json={"provider_id": provider_id})
    assert_error(patched, 422, "validation_error")
    kept = (await api.client.get(f"{CAMERAS}/gate", headers=api.auth("viewer"))).json()
    assert kept["provider_id"] is None


async def test_list_is_ordered_by_id_and_get_returns_one(api_any_db: Api) -> None:
    api = api_any_db
    assert (await api.client.get(CAMERAS, headers=api.auth("viewer"))).json() == []
    created = {cid: await add_camera(api, cid) for cid in ("yard", "drive", "gate")}
    listed = await api.client.get(CAMERAS, headers=api.auth("viewer"))
    assert listed.status_code == 200
    assert listed.json() == [created["drive"], created["gate"], created["yard"]]
    one = await api.client.get(f"{CAMERAS}/gate", headers=api.auth("viewer"))
    assert one.status_code == 200 and one.json() == created["gate"]


@pytest.mark.parametrize("camera_id", ["nowhere", "Gate", "%00", "x" * 300])
async def test_an_unknown_camera_is_404_for_get_patch_and_delete(
    api_any_db: Api, camera_id: str
) -> None:
    api = api_any_db
    await add_camera(api)
    for method, role, body in (("GET", "viewer", None), ("PATCH", "admin", {"name": "x"}),
                               ("DELETE", "admin", None)):
        response = await api.client.request(method, f"{CAMERAS}/{camera_id}", json=body,
                                            headers=api.auth(role))
        error = assert_error(response, 404, "not_found")
        assert "no camera with id" in error["detail"], method
    assert await count_rows(api, Camera) == 1


async def test_a_nul_character_in_a_name_or_location_gets_422(api_any_db: Api) -> None:
    api = api_any_db
    for body in ({"id": "gate", "name": "Ga\x00te"},
                 {"id": "gate", "name": "Gate", "location": "\x00"}):
        response = await api.client.post(CAMERAS, headers=api.auth("admin"), json=body)
        assert_error(response, 422, "validation_error")
    created = await add_camera(api, "gate", name="Tab\tand newline\n are fine")
    for body in ({"name": "a\x00"}, {"location": "a\x00"}):
        response = await api.client.patch(f"{CAMERAS}/gate", headers=api.auth("admin"), json=body)
        assert_error(response, 422, "validation_error")
    assert (await api.client.get(f"{CAMERAS}/gate", headers=api.auth("viewer"))).json() == created


async def test_patch_changes_only_the_given_fields_and_records_them(api_any_db: Api) -> None:
    api = api_any_db
    created = await add_camera(api, "gate", name="Gate", location="North")
    await asyncio.sleep(0.01)

    async def patch(body: dict[str, Any]) -> dict[str, Any]:
        response = await api.client.patch(f"{CAMERAS}/gate", headers=api.auth("admin"),
                                          json=body)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    renamed = await patch({"name": "Main gate"})
    assert renamed["name"] == "Main gate" and renamed["location"] == "North"
    assert renamed["enabled"] is True and renamed["created_at"] == created["created_at"]
    assert renamed["updated_at"] > created["updated_at"]
    assert (await patch({"location": None}))["location"] is None
    assert (await patch({"enabled": False}))["enabled"] is False
    stored = (await api.client.get(f"{CAMERAS}/gate", headers=api.auth("viewer"))).json()
    assert (stored["name"], stored["location"], stored["enabled"]) == ("Main gate", None, False)

    events = await camera_events(api, "gate")
    assert [(e.event_type, e.payload) for e in events] == [
        ("camera.created", {"id": "gate", "name": "Gate", "location": "North",
                            "enabled": True, "provider_id": None, **NO_RETENTION}),
        ("camera.updated", {"name": "Main gate"}),
        ("camera.updated", {"location": None}),
        ("camera.updated", {"enabled": False}),
    ]
    assert {e.actor for e in events} == {"key:admin"}


@pytest.mark.parametrize(
    "body", [{"name": None}, {"enabled": None}, {"name": ""}, {"location": "l" * 201},
             {"id": "other"}, {"enabled": "perhaps"}],
    ids=["name-null", "enabled-null", "name-empty", "location-too-long", "id-not-patchable",
         "enabled-not-bool"],
)
async def test_invalid_patches_get_422_and_change_nothing(api: Api, body: dict[str, Any]) -> None:
    created = await add_camera(api, "gate", location="North")
    response = await api.client.patch(f"{CAMERAS}/gate", headers=api.auth("admin"), json=body)
    assert_error(response, 422, "validation_error")
    assert (await api.client.get(f"{CAMERAS}/gate", headers=api.auth("viewer"))).json() == created
    assert [e.event_type for e in await camera_events(api, "gate")] == ["camera.created"]


async def test_the_chosen_provider_is_the_one_that_detects(api_any_db: Api) -> None:
    api = api_any_db
    faces_only = await add_provider(api, name="faces-only", kind="builtin",
                                    detection_types=["face"])
    await add_camera(api, "gate")
    patched = await api.client.patch(f"{CAMERAS}/gate", headers=api.auth("admin"),
                                     json={"provider_id": faces_only["id"]})
    assert patched.status_code == 200 and patched.json()["provider_id"] == faces_only["id"]
    answer = (await post_frame(api, "astronaut.jpg")).json()
    assert answer["provider"] == "faces-only"
    assert answer["detections"] and {d["type"] for d in answer["detections"]} == {"face"}

    back = await api.client.patch(f"{CAMERAS}/gate", headers=api.auth("admin"),
                                  json={"provider_id": None})
    assert back.status_code == 200 and back.json()["provider_id"] is None
    default = (await post_frame(api, "street.jpg")).json()
    assert default["provider"] == "builtin"
    assert "person" in {d["type"] for d in default["detections"]}


async def test_a_disabled_camera_refuses_frames_with_409_until_enabled(api: Api) -> None:
    await add_camera(api, "gate", enabled=False)
    refused = await post_frame(api, "astronaut.jpg")
    error = assert_error(refused, 409, "conflict")
    assert "disabled" in error["detail"] and error["camera_id"] == "gate"
    assert await count_rows(api, Frame) == 0

    # Disabling a camera that has already sent frames works the same way.
    await api.client.patch(f"{CAMERAS}/gate", headers=api.auth("admin"), json={"enabled": True})
    assert (await post_frame(api, "astronaut.jpg")).status_code == 200
    await api.client.patch(f"{CAMERAS}/gate", headers=api.auth("admin"), json={"enabled": False})
    assert_error(await post_frame(api, "street.jpg"), 409, "conflict")
    assert_error(await post_frame(api, "astronaut.jpg"), 409, "conflict")
    assert await count_rows(api, Frame) == 1


async def test_delete_removes_frames_detections_and_unshared_files(api_any_db: Api) -> None:
    api = api_any_db
    await add_camera(api, "gate")
    await add_camera(api, "yard")
    gate_frames = [(await post_frame(api, name)).json() for name in ("astronaut.jpg",
                                                                     "street.jpg")]
    shared = (await post_frame(api, "astronaut.jpg", camera_id="yard")).json()
    assert await count_rows(api, Detection, camera_id="gate") == sum(
        len(f["detections"]) for f in gate_frames) > 0

    frames = {f.id: f for f in await rows_of(api, Frame)}
    path = {fid: api.settings.frames_dir / frame.storage_path for fid, frame in frames.items()}
    astronaut, street = (path[f["frame_id"]] for f in gate_frames)
    assert path[shared["frame_id"]] == astronaut  # the same bytes are stored once
    assert astronaut.is_file() and street.is_file()

    response = await api.client.delete(f"{CAMERAS}/gate", headers=api.auth("admin"))
    assert response.status_code == 204 and response.content == b""

    assert_error(await api.client.get(f"{CAMERAS}/gate", headers=api.auth("viewer")), 404,
                 "not_found")
    listed = (await api.client.get(CAMERAS, headers=api.auth("viewer"))).json()
    assert [c["id"] for c in listed] == ["yard"]
    assert await count_rows(api, Frame, camera_id="gate") == 0
    assert await count_rows(api, Detection, camera_id="gate") == 0
    assert not street.exists()
    # yard's frame shares the astronaut file: the file, the frame and its detections stay.
    assert astronaut.read_bytes() == frame_bytes("astronaut.jpg")
    assert await count_rows(api, Detection, camera_id="yard") == len(shared["detections"])
    image = await api.client.get(f"/api/v1/frames/{shared['frame_id']}/image",
                                 headers=api.auth("viewer"))
    assert image.status_code == 200 and image.content == frame_bytes("astronaut.jpg")

    # Events outlive the camera: its history stays, with the deletion at the end.
    history = await rows_of(api, DetectionEventLog, DetectionEventLog.camera_id == "gate")
    assert [e.event_type for e in history] == [
        "camera.created", "frame.processed", "frame.processed", "camera.deleted",
    ]
    deleted = history[-1]
    assert deleted.severity == "warning" and deleted.actor == "key:admin"
    assert "gate" in deleted.message

    assert_error(await api.client.delete(f"{CAMERAS}/gate", headers=api.auth("admin")), 404,
                 "not_found")


async def test_delete_removes_queued_frames_their_queue_items_and_files(api: Api) -> None:
    dead = await add_provider(api, name="dead", kind="deepstack",
                              base_url=f"http://127.0.0.1:{free_port()}", max_retries=0,
                              timeout_seconds=1)
    await add_camera(api, "gate", provider_id=dead["id"])
    queued = await post_frame(api, "coffee.jpg")
    assert queued.status_code == 503 and queued.json()["queued"] is True, queued.text
    [frame] = await rows_of(api, Frame)
    file = api.settings.frames_dir / frame.storage_path
    assert file.is_file() and await count_rows(api, QueueItem, camera_id="gate") == 1

    response = await api.client.delete(f"{CAMERAS}/gate", headers=api.auth("admin"))
    assert response.status_code == 204
    assert await count_rows(api, QueueItem) == 0 and await count_rows(api, Frame) == 0
    assert not file.exists()
    history = await rows_of(api, DetectionEventLog, DetectionEventLog.camera_id == "gate")
    assert [e.event_type for e in history] == [
        "camera.created", "provider.error", "frame.queued", "camera.deleted",
    ]


async def test_deleting_the_last_user_of_a_file_removes_it(api: Api) -> None:
    await add_camera(api, "gate")
    await add_camera(api, "yard")
    first = (await post_frame(api, "motorcycle.jpg")).json()
    await post_frame(api, "motorcycle.jpg", camera_id="yard")
    [stored] = {f.storage_path for f in await rows_of(api, Frame)}
    file = api.settings.frames_dir / stored
    assert first["detections"]

    for camera_id, file_kept in (("gate", True), ("yard", False)):
        response = await api.client.delete(f"{CAMERAS}/{camera_id}", headers=api.auth("admin"))
        assert response.status_code == 204 and file.is_file() is file_kept
    assert await count_rows(api, Frame) == 0 and await count_rows(api, Detection) == 0
    leftovers = [p for p in api.settings.frames_dir.rglob("*") if p.is_file()]
    assert leftovers == []


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> str:
    return postgres_emptied(request)


@pytest.fixture
async def api_postgres(tmp_path: Path, postgres_url: str) -> AsyncIterator[Api]:
    """The app on PostgreSQL only (skips without FRAMEWATCH_TEST_DATABASE_URL)."""
    async for running in start_api(make_settings(tmp_path, postgres_url)):
        yield running


async def test_a_camera_with_more_frames_than_one_query_can_list_is_deleted(
    api_postgres: Api,
) -> None:
    """PostgreSQL takes at most 32767 parameters in a query; the file check must not need more."""
    api = api_postgres
    await add_camera(api, "gate")
    await add_camera(api, "yard")
    shared = (await post_frame(api, "astronaut.jpg", camera_id="yard")).json()
    [yard_frame] = await rows_of(api, Frame)
    paths = [f"00/00/{i:060d}.jpg" for i in range(33_000)] + [yard_frame.storage_path]
    for path in paths[:3]:
        (api.settings.frames_dir / path).parent.mkdir(parents=True, exist_ok=True)
        (api.settings.frames_dir / path).write_bytes(b"image")
    now = datetime.now(UTC)
    async with api.runtime.session_factory() as session:
        await session.execute(insert(Frame), [
            {"camera_id": "gate", "sha256": f"{i:064x}", "content_type": "image/jpeg",
             "size_bytes": 5, "width": 16, "height": 16, "storage_path": path,
             "received_at": now, "status": "processed", "requested_types": []}
            for i, path in enumerate(paths)
        ])
        await session.commit()

    response = await api.client.delete(f"{CAMERAS}/gate", headers=api.auth("admin"))
    assert response.status_code == 204, response.text
    assert await count_rows(api, Frame) == 1
    assert not any((api.settings.frames_dir / path).exists() for path in paths[:3])
    image = await api.client.get(f"/api/v1/frames/{shared['frame_id']}/image",
                                 headers=api.auth("viewer"))
    assert image.content == frame_bytes("astronaut.jpg")
