"""send-frame: real photographs through the built-in detector, every error status, the cache."""

from __future__ import annotations

import asyncio
import base64
import io
import zlib

import pytest
from PIL import Image
from sqlalchemy import select

from framewatch.models import Detection, DetectionEventLog, Frame, QueueItem
from tests.api.helpers import add_camera, count_rows, covers, post_frame, post_frame_json
from tests.api_fixtures import Api, make_settings, start_api
from tests.conftest import frame_bytes
from tests.support.servers import free_port

# In astronaut.jpg (512×512) the face is around (228, 120); the suit fills the lower half.
ASTRONAUT_FACE = (228, 120)
ASTRONAUT_CHEST = (230, 330)


async def test_a_person_is_found_where_the_person_is(api_any_db: Api) -> None:
    api = api_any_db
    await add_camera(api)
    response = await post_frame(api, "astronaut.jpg")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["camera_id"] == "gate"
    assert body["provider"] == "builtin"
    assert body["cached"] is False
    assert body["latency_ms"] > 0
    persons = [d for d in body["detections"] if d["type"] == "person"]
    faces = [d for d in body["detections"] if d["type"] == "face"]
    assert persons and faces
    person = max(persons, key=lambda d: d["confidence"])
    assert covers(person["bbox"], *ASTRONAUT_FACE) and covers(person["bbox"], *ASTRONAUT_CHEST)
    assert covers(faces[0]["bbox"], *ASTRONAUT_FACE)
    norm = person["bbox_norm"]
    assert norm["x_min"] == pytest.approx(person["bbox"]["x_min"] / 512, abs=1e-4)
    assert 0 <= norm["x_min"] < norm["x_max"] <= 1 and 0 <= norm["y_min"] < norm["y_max"] <= 1

    # Stored: the frame on disk, its detections (with the face encoding) and an event.
    async with api.runtime.session_factory() as session:
        frame = await session.get(Frame, body["frame_id"])
        assert frame is not None and frame.status == "processed"
        assert (frame.width, frame.height) == (512, 512)
        assert frame.provider_response is not None and frame.model
        stored = (api.settings.frames_dir / frame.storage_path).read_bytes()
        assert stored == frame_bytes("astronaut.jpg")
        rows = list(await session.scalars(select(Detection).where(
            Detection.frame_id == frame.id)))
        assert sorted(r.id for r in rows) == sorted(d["id"] for d in body["detections"])
        face_row = next(r for r in rows if r.type == "face")
        assert face_row.face_encoding is not None and len(face_row.face_encoding) == 128 * 4
        events = list(await session.scalars(select(DetectionEventLog).where(
            DetectionEventLog.frame_id == frame.id)))
        assert [e.event_type for e in events] == ["frame.processed"]
        assert events[0].payload["counts"]["person"] == len(persons)


async def test_json_and_multipart_give_the_same_answer(api: Api) -> None:
    await add_camera(api)
    multipart = (await post_frame(api, "street.jpg")).json()
    await add_camera(api, "yard")
    as_json = await post_frame_json(api, "street.jpg", camera_id="yard",
                                    detection_types=["person", "vehicle"])
    assert as_json.status_code == 200, as_json.text
    def shape(body: dict) -> list:  # type: ignore[type-arg]
        return sorted((d["type"], tuple(d["bbox"].values())) for d in body["detections"])
    assert shape(as_json.json()) == shape(multipart)
    assert sum(d["type"] == "person" for d in multipart["detections"]) >= 2


async def test_detection_types_limit_what_comes_back(api: Api) -> None:
    await add_camera(api)
    body = (await post_frame(api, "astronaut.jpg", detection_types="face")).json()
    assert body["detections"] and {d["type"] for d in body["detections"]} == {"face"}


async def test_a_photo_without_people_finds_none(api: Api) -> None:
    await add_camera(api)
    body = (await post_frame(api, "coffee.jpg")).json()
    assert [d for d in body["detections"] if d["type"] in ("person", "face")] == []


async def test_same_bytes_within_the_ttl_come_from_the_cache(api: Api) -> None:
    await add_camera(api)
    first = (await post_frame(api, "astronaut.jpg")).json()
    second = (await post_frame(api, "astronaut.jpg")).json()
    assert second["cached"] is True
    assert second["frame_id"] == first["frame_id"]
    assert second["detections"] == first["detections"]
    assert await count_rows(api, Frame) == 1
    assert api.runtime.cache.stats()["frame"]["hits"] == 1
    # Another camera with the same bytes is its own frame.
    await add_camera(api, "yard")
    other = (await post_frame(api, "astronaut.jpg", camera_id="yard")).json()
    assert other["cached"] is False and other["frame_id"] != first["frame_id"]


async def test_after_the_ttl_the_provider_is_called_again(tmp_path, sqlite_url) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path, sqlite_url, live_ttl_seconds=0.2)
    async for api in start_api(settings):
        await add_camera(api)
        first = (await post_frame(api, "coffee.jpg")).json()
        await asyncio.sleep(0.3)
        second = (await post_frame(api, "coffee.jpg")).json()
        assert second["cached"] is False and second["frame_id"] != first["frame_id"]
        assert await count_rows(api, Frame) == 2


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG that declares `width`×`height` pixels (a decompression bomb's header)."""
    small = io.BytesIO()
    Image.new("L", (1, 1)).save(small, format="PNG")
    data = bytearray(small.getvalue())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # IHDR's checksum
    return bytes(data)


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"", 400, "invalid_frame"),
        (b"GIF89a not supported", 400, "invalid_frame"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 100, 400, "invalid_frame"),
        ("truncated", 400, "invalid_frame"),
        (png_header(100_000, 100_000), 413, "frame_too_large"),
        ("tiny", 400, "invalid_frame"),
    ],
    ids=["empty", "not-an-image", "jpeg-magic-only", "truncated-jpeg", "png-bomb", "too-small"],
)
async def test_bad_images_are_refused_and_nothing_is_stored(
    api: Api, payload: bytes | str, status: int, code: str
) -> None:
    await add_camera(api)
    if payload == "truncated":
        payload = frame_bytes("astronaut.jpg")[:20_000]
    elif payload == "tiny":
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, format="JPEG")
        payload = buffer.getvalue()
    assert isinstance(payload, bytes)
    response = await post_frame(api, payload)
    assert response.status_code == status, response.text
    assert response.json()["error"] == code
    assert response.json()["detail"]
    assert await count_rows(api, Frame) == 0
    assert not api.settings.frames_dir.exists() or not any(api.settings.frames_dir.rglob("*.*"))


async def test_field_errors(api: Api) -> None:
    await add_camera(api)
    await add_camera(api, "off", enabled=False)
    cases = [
        (await post_frame(api, "coffee.jpg", camera_id="nowhere"), 404, "not_found"),
        (await post_frame(api, "coffee.jpg", camera_id="off"), 409, "conflict"),
        (await post_frame(api, "coffee.jpg", camera_id="Not A Slug!"), 422, "validation_error"),
        (await post_frame(api, "coffee.jpg", captured_at="2026-01-01T10:00:00"), 422,
         "validation_error"),
        (await post_frame(api, "coffee.jpg", detection_types="person;drop table"), 422,
         "validation_error"),
        (await post_frame_json(api, "coffee.jpg", camera_id="nowhere"), 404, "not_found"),
        (await api.client.post("/api/v1/detections/send-frame", headers=api.auth("operator"),
                               json={"camera_id": "gate", "image_base64": "%%%not base64"}),
         400, "invalid_frame"),
        (await api.client.post("/api/v1/detections/send-frame", headers=api.auth("operator"),
                               json={"camera_id": "gate"}), 422, "validation_error"),
        (await api.client.post("/api/v1/detections/send-frame",
                               headers={**api.auth("operator"),
                                        "content-type": "application/json"},
                               content=b"{not json"), 422, "validation_error"),
        (await api.client.post("/api/v1/detections/send-frame",
                               headers={**api.auth("operator"), "content-type": "text/plain"},
                               content=b"hello"), 415, "unsupported_media_type"),
        (await api.client.post("/api/v1/detections/send-frame", headers=api.auth("operator"),
                               data={"camera_id": "gate"},
                               files={"other": ("x", b"y", "text/plain")}), 400, "bad_request"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        assert response.json()["error"] == code, response.text
        assert isinstance(response.json()["detail"], str)
    assert await count_rows(api, Frame) == 0


async def test_frames_over_the_byte_limit_get_413(tmp_path, sqlite_url) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path, sqlite_url, max_frame_bytes=50_000)
    async for api in start_api(settings):
        await add_camera(api)
        response = await post_frame(api, "astronaut.jpg")  # 68 kB
        assert response.status_code == 413
        assert response.json()["error"] == "frame_too_large"
        as_json = await post_frame_json(api, "astronaut.jpg")
        assert as_json.status_code == 413
        # A body far over the limit is refused before it is read.
        huge = await api.client.post(
            "/api/v1/detections/send-frame", headers=api.auth("operator"),
            files={"image": ("f.jpg", b"\xff" * 3_000_000, "image/jpeg")},
            data={"camera_id": "gate"},
        )
        assert huge.status_code == 413 and huge.json()["error"] == "request_too_large"
        assert await count_rows(api, Frame) == 0


async def test_a_failing_provider_gives_503_and_the_frame_is_kept(api_any_db: Api) -> None:
    api = api_any_db
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    created = await api.client.post(
        "/api/v1/providers", headers=api.auth("admin"),
        json={"name": "remote", "kind": "deepstack", "base_url": dead, "max_retries": 1,
              "timeout_seconds": 1, "options": {"retry_backoff_seconds": 0.01}},
    )
    assert created.status_code == 201, created.text
    await add_camera(api, provider_id=created.json()["id"])

    response = await post_frame(api, "astronaut.jpg")
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] == "provider_unavailable"
    assert "remote" in body["detail"] and body["queued"] is True
    async with api.runtime.session_factory() as session:
        frame = await session.get(Frame, body["frame_id"])
        assert frame is not None and frame.status == "queued"
        assert (api.settings.frames_dir / frame.storage_path).read_bytes() == frame_bytes(
            "astronaut.jpg")
        item = await session.scalar(select(QueueItem).where(QueueItem.frame_id == frame.id))
        assert item is not None and item.status == "pending" and item.attempts == 1
        assert item.last_error and "connection failed" in item.last_error
        types = [e.event_type for e in await session.scalars(
            select(DetectionEventLog).where(DetectionEventLog.frame_id == frame.id)
            .order_by(DetectionEventLog.id))]
        assert types == ["provider.error", "frame.queued"]
    assert await count_rows(api, Detection) == 0


def test_png_header_helper_declares_the_size() -> None:
    with Image.open(io.BytesIO(png_header(1234, 567))) as image:
        assert image.size == (1234, 567)
    assert base64.b64encode(png_header(1, 1))
