"""Shared pieces of the persons tests: the test photographs, the gallery endpoints, frames.

The three men of tests/data (two photos each) and two women who are never registered:
- `player_left_1/2.jpg`: one man, two frames; `player_right_1/2.jpg`: another man, likewise;
- `desk_closeup.jpg` / `desk_closeup_left.jpg`: a third man, seen by the two cameras of a pair;
- `astronaut.jpg`, `grace_hopper.jpg`: strangers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np

from framewatch.models import DetectionEventLog
from framewatch.persons.index import current_version
from tests.api.helpers import jpeg_variant, post_frame, rows_of
from tests.api_fixtures import Api
from tests.conftest import frame_bytes

PERSONS = "/api/v1/persons"
# Each man: (the photo he is registered from, another photo of him).
MEN = {
    "player_left": ("player_left_1.jpg", "player_left_2.jpg"),
    "player_right": ("player_right_1.jpg", "player_right_2.jpg"),
    "desk": ("desk_closeup.jpg", "desk_closeup_left.jpg"),
}
STRANGERS = ("astronaut.jpg", "grace_hopper.jpg")
# Where the built-in face detector finds each man's face in the second photo (pixels, ±2).
FACE_BOXES = {
    "player_left_2.jpg": (71, 93, 103, 134),
    "player_right_2.jpg": (118, 62, 155, 126),
    "desk_closeup_left.jpg": (241, 117, 324, 238),
}


async def create_person(api: Api, name: str, **fields: Any) -> dict[str, Any]:
    response = await api.client.post(PERSONS, json={"name": name, **fields},
                                     headers=api.auth("admin"))
    assert response.status_code == 201, response.text
    person: dict[str, Any] = response.json()
    return person


async def upload_face(api: Api, person_id: int, image: bytes | str,
                      role: str = "admin") -> httpx.Response:
    data = frame_bytes(image) if isinstance(image, str) else image
    return await api.client.post(f"{PERSONS}/{person_id}/faces",
                                 files={"image": ("photo.jpg", data, "image/jpeg")},
                                 headers=api.auth(role))


async def register(api: Api, name: str, photo: str) -> tuple[int, dict[str, Any]]:
    """A new person named `name` with the one face of `photo`: (person id, the face)."""
    person = await create_person(api, name)
    response = await upload_face(api, person["id"], photo)
    assert response.status_code == 201, response.text
    face: dict[str, Any] = response.json()
    return person["id"], face


async def search(api: Api, image: bytes | str, headers: dict[str, str] | None = None,
                 **params: Any) -> httpx.Response:
    """`POST /api/v1/persons/search` with the photo, as a viewer unless `headers` say else."""
    data = frame_bytes(image) if isinstance(image, str) else image
    return await api.client.post(f"{PERSONS}/search", params=params,
                                 files={"image": ("photo.jpg", data, "image/jpeg")},
                                 headers=headers or api.auth("viewer"))


async def send_faces(api: Api, photo: str, camera_id: str = "gate", tag: str | None = None,
                     **fields: str) -> dict[str, Any]:
    """Send `photo` (with a JPEG comment `tag`: new bytes, the same pixels) for faces only; the
    answer, checked to be a 200. `fields`: other form fields (`detection_types`, `captured_at`)."""
    data = jpeg_variant(photo, tag) if tag else frame_bytes(photo)
    response = await post_frame(api, data, camera_id=camera_id,
                                **{"detection_types": "face", **fields})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def the_face(answer: dict[str, Any]) -> dict[str, Any]:
    """The one face detection of a send-frame answer (or detection message)."""
    faces = [d for d in answer["detections"] if d["type"] == "face"]
    assert len(faces) == 1, answer
    face: dict[str, Any] = faces[0]
    return face


def two_faces_photo() -> bytes:
    """The two players side by side (480×320): a photo with two faces."""
    left, right = (cv2.imread(str(Path(__file__).parents[1] / "data" / name))
                   for name in ("player_left_1.jpg", "player_right_1.jpg"))
    assert left is not None and right is not None
    ok, data = cv2.imencode(".jpg", np.hstack([left, right]), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return bytes(data.tobytes())


def as_vector(encoding: bytes | list[float] | None) -> np.ndarray:
    assert encoding is not None
    if isinstance(encoding, bytes):
        return np.frombuffer(encoding, dtype="<f4").astype(np.float64)
    return np.asarray(encoding, dtype=np.float64)


def distance(a: bytes | list[float] | None, b: bytes | list[float] | None) -> float:
    return float(np.linalg.norm(as_vector(a) - as_vector(b)))


async def events_of(api: Api, *types: str) -> list[DetectionEventLog]:
    """The stored events of these types, oldest first (with their `address`, which the API
    does not show)."""
    return await rows_of(api, DetectionEventLog, DetectionEventLog.event_type.in_(types))


async def gallery_version(api: Api) -> int:
    async with api.runtime.session_factory() as session:
        return await current_version(session)
