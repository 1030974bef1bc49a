"""Small request helpers shared by the API tests."""

from __future__ import annotations

import base64
from typing import Any, TypeVar

import httpx
from sqlalchemy import func, select

from tests.api_fixtures import Api
from tests.conftest import frame_bytes

T = TypeVar("T")


async def add_camera(api: Api, camera_id: str = "gate", **fields: Any) -> dict[str, Any]:
    body = {"id": camera_id, "name": camera_id.title(), **fields}
    response = await api.client.post("/api/v1/cameras", json=body, headers=api.auth("admin"))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def add_provider(api: Api, **body: Any) -> dict[str, Any]:
    response = await api.client.post("/api/v1/providers", json=body, headers=api.auth("admin"))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def post_frame(
    api: Api, data: bytes | str, camera_id: str = "gate", role: str = "operator",
    **fields: str,
) -> httpx.Response:
    image = frame_bytes(data) if isinstance(data, str) else data
    return await api.client.post(
        "/api/v1/detections/send-frame",
        files={"image": ("frame.jpg", image, "image/jpeg")},
        data={"camera_id": camera_id, **fields},
        headers=api.auth(role),
    )


async def post_frame_json(api: Api, data: bytes | str, camera_id: str = "gate",
                          **fields: Any) -> httpx.Response:
    image = frame_bytes(data) if isinstance(data, str) else data
    body = {"camera_id": camera_id, "image_base64": base64.b64encode(image).decode(), **fields}
    return await api.client.post("/api/v1/detections/send-frame", json=body,
                                 headers=api.auth("operator"))


async def count_rows(api: Api, model: type, **where: Any) -> int:
    async with api.runtime.session_factory() as session:
        query = select(func.count()).select_from(model)
        for column, value in where.items():
            query = query.where(getattr(model, column) == value)
        return int(await session.scalar(query) or 0)


def covers(box: dict[str, float], x: float, y: float) -> bool:
    return box["x_min"] <= x <= box["x_max"] and box["y_min"] <= y <= box["y_max"]


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is `status` with the one error body shape `{"error": code, "detail": ...}`."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == code, body
    assert isinstance(body["detail"], str) and body["detail"], body
    return body


def jpeg_variant(name: str, tag: str) -> bytes:
    """The photograph with a JPEG comment segment added: the same pixels, other bytes.

    Its sha256 differs, so send-frame stores it as a new frame instead of answering from the
    cache, and the detector finds exactly what it finds in the original.
    """
    data = frame_bytes(name)
    assert data[:2] == b"\xff\xd8"
    comment = tag.encode()
    segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
    return data[:2] + segment + data[2:]


async def rows_of(api: Api, model: type[T], *where: Any) -> list[T]:
    """The stored rows of `model` matching the SQL conditions, ordered by id."""
    async with api.runtime.session_factory() as session:
        query = select(model).where(*where).order_by(model.id)  # type: ignore[attr-defined]
        return list(await session.scalars(query))
