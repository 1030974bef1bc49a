"""Hostile frames sent to send-frame, as multipart and as JSON with base64 (corpus: hostile.py).

Each must be answered with a 4xx and the error body, leave nothing behind — no frame row, no
file under the frames folder, no queue item, no detection, no event (audit events aside) — and
leave the server healthy: `/healthz` answers and a normal frame still works afterwards.

The exception is the JPEG with an HTML page and a ZIP archive appended (a polyglot): it *is* a
valid JPEG — decoders stop at its end marker, and cameras append data after it too — so it is
accepted (200) and stored byte for byte. What matters is how it is served back: as
`image/jpeg` with `nosniff` and a same-origin-only content security policy, so no browser ever
runs it as HTML; and the annotated copy is re-encoded, without the appended bytes.

A 50 MB body is refused with 413 before it is read: by its declared length before a single byte,
and when streamed without one (chunked), as soon as the limit is passed, not after buffering it.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from framewatch.app import create_app
from framewatch.models import Detection, DetectionEventLog, Frame, QueueItem
from tests.api.helpers import add_camera
from tests.api_fixtures import Api, make_settings, start_api
from tests.queue.scenario import flaky_provider_body, small_frame
from tests.robustness.hostile import (
    CORPUS,
    POLYGLOT_HTML,
    Hostile,
    jpeg_zip_html_polyglot,
)
from tests.support.flaky_provider import FlakyProvider
from tests.support.servers import serve_app

SEND_FRAME = "/api/v1/detections/send-frame"
AUDIT_EVENTS = {"auth.failed", "auth.denied", "admin.failed"}
BODY_BYTES = 50 * 1024 * 1024
CHUNK = 64 * 1024

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


@pytest.fixture
async def api(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Api]:
    """The app with the fake DeepStack provider as default and a camera `gate`."""
    with serve_app(FlakyProvider().app()) as provider_url:
        async for running in start_api(make_settings(tmp_path, sqlite_url)):
            response = await running.client.post(
                "/api/v1/providers", json=flaky_provider_body(provider_url),
                headers=running.auth("admin"))
            assert response.status_code == 201, response.text
            await add_camera(running)
            yield running


async def stored(api: Api) -> dict[str, Any]:
    """Everything a frame could leave behind."""
    async with api.runtime.session_factory() as session:
        counts = {model.__name__: await session.scalar(select(func.count()).select_from(model))
                  for model in (Frame, QueueItem, Detection)}
        events = list(await session.scalars(
            select(DetectionEventLog.event_type).order_by(DetectionEventLog.id)))
    frames_dir = api.settings.frames_dir
    files = sorted(str(p) for p in frames_dir.rglob("*") if p.is_file()) if frames_dir.exists() \
        else []
    return {**counts, "events": events, "files": files}


async def send(api: Api, hostile: Hostile, as_json: bool) -> httpx.Response:
    if as_json:
        body = {"camera_id": "gate", "image_base64": base64.b64encode(hostile.data).decode()}
        return await api.client.post(SEND_FRAME, json=body, headers=api.auth("operator"))
    return await api.client.post(
        SEND_FRAME, data={"camera_id": "gate"},
        files={"image": (f"{hostile.name}.bin", hostile.data, hostile.content_type)},
        headers=api.auth("operator"))


async def assert_still_healthy(api: Api, index: int) -> None:
    assert (await api.client.get("/healthz")).status_code == 200
    response = await api.client.post(
        SEND_FRAME, data={"camera_id": "gate"},
        files={"image": ("ok.jpg", small_frame(1000 + index), "image/jpeg")},
        headers=api.auth("operator"))
    assert response.status_code == 200, response.text
    assert [d["label"] for d in response.json()["detections"]] == ["person"]


def assert_error_body(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text[:300]
    body = response.json()
    assert body["error"] == code, body
    assert isinstance(body["detail"], str) and body["detail"], body


@pytest.mark.parametrize("as_json", [False, True], ids=["multipart", "json"])
@pytest.mark.parametrize("hostile", CORPUS, ids=[h.name for h in CORPUS])
async def test_a_hostile_frame_is_refused_and_leaves_nothing(
    api: Api, hostile: Hostile, as_json: bool
) -> None:
    before = await stored(api)
    response = await send(api, hostile, as_json)
    assert_error_body(response, *(hostile.json if as_json else hostile.multipart))
    after = await stored(api)
    new_events = after["events"][len(before["events"]):]
    assert set(new_events) <= AUDIT_EVENTS, new_events
    assert {**after, "events": None} == {**before, "events": None}
    await assert_still_healthy(api, 0)


async def test_a_jpeg_with_html_and_zip_appended_is_served_only_as_an_image(api: Api) -> None:
    for index, as_json in enumerate((False, True)):
        polyglot = jpeg_zip_html_polyglot(index)
        before = await stored(api)
        response = await send(api, Hostile("polyglot", polyglot, "text/html", (200, ""),
                                           (200, "")), as_json)
        assert response.status_code == 200, response.text
        frame_id = response.json()["frame_id"]
        after = await stored(api)
        # Stored as a JPEG: one frame, one file.
        assert after["Frame"] == before["Frame"] + 1
        new_files = sorted(set(after["files"]) - set(before["files"]))
        assert len(new_files) == 1 and new_files[0].endswith(".jpg"), new_files
        image = await api.client.get(f"/api/v1/frames/{frame_id}/image",
                                     headers=api.auth("viewer"))
        assert image.status_code == 200
        assert image.content == polyglot  # kept as sent: nothing was parsed out of it
        assert image.headers["content-type"] == "image/jpeg"
        assert image.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'self'" in image.headers["content-security-policy"]
        assert "content-disposition" not in image.headers
        annotated = await api.client.get(f"/api/v1/frames/{frame_id}/image?annotate=true",
                                         headers=api.auth("viewer"))
        assert annotated.status_code == 200
        assert annotated.headers["content-type"] == "image/jpeg"
        assert POLYGLOT_HTML not in annotated.content and b"PK\x03\x04" not in annotated.content
        await assert_still_healthy(api, 10 + index)


class CountingBody:
    """A streamed request body of `total` bytes that counts how much of it was read."""

    def __init__(self, total: int, prefix: bytes = b"", suffix: bytes = b"") -> None:
        self.total, self.prefix, self.suffix = total, prefix, suffix
        self.read = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in (self.prefix, *self._filler(), self.suffix):
            self.read += len(chunk)
            yield chunk

    def _filler(self) -> list[bytes]:
        filler = self.total - len(self.prefix) - len(self.suffix)
        return [b"A" * CHUNK] * (filler // CHUNK) + [b"A" * (filler % CHUNK)]


def fifty_megabytes(as_json: bool) -> tuple[CountingBody, str]:
    if as_json:
        return (CountingBody(BODY_BYTES, b'{"camera_id": "gate", "image_base64": "', b'"}'),
                "application/json")
    boundary = "hostileboundary"
    prefix = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"camera_id\"\r\n\r\n"
              f"gate\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
              f"filename=\"big.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8\xff").encode(
                  "latin-1")
    return (CountingBody(BODY_BYTES, prefix, f"\r\n--{boundary}--\r\n".encode()),
            f"multipart/form-data; boundary={boundary}")


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize("as_json", [False, True], ids=["multipart", "json"])
async def test_a_50_mb_body_is_refused_before_it_is_read(
    api: Api, as_json: bool, declared: bool
) -> None:
    before = await stored(api)
    body, content_type = fifty_megabytes(as_json)
    headers = {**api.auth("operator"), "Content-Type": content_type}
    if declared:
        headers["Content-Length"] = str(BODY_BYTES)
    response = await api.client.post(SEND_FRAME, content=body, headers=headers)
    assert_error_body(response, 413, "request_too_large")
    limit = api.settings.max_request_bytes
    assert response.json()["limit_bytes"] == limit
    if declared:
        assert body.read == 0  # refused on the header alone
    else:
        assert limit < body.read <= limit + 2 * CHUNK + len(body.prefix)
    assert await stored(api) == before
    await assert_still_healthy(api, 20 + as_json * 2 + declared)


def test_a_served_instance_answers_413_on_the_declared_length_alone(
    tmp_path: Path, sqlite_url: str
) -> None:
    """Over a real socket: the answer comes while not one byte of the body was sent."""
    with serve_app(create_app(make_settings(tmp_path, sqlite_url))) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(
                f"POST {SEND_FRAME} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {api_key()}\r\nContent-Type: image/jpeg\r\n"
                f"Content-Length: {BODY_BYTES}\r\n\r\n".encode())
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                chunk = connection.recv(65536)
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert b'"error":"request_too_large"' in answer
        assert (httpx.get(f"{url}/healthz", timeout=5)).status_code == 200


def api_key() -> str:
    from tests.api_fixtures import ADMIN_KEY

    return ADMIN_KEY
