"""Small request helpers shared by the API tests."""

from __future__ import annotations

import base64
from typing import Any

import httpx
from sqlalchemy import func, select

from tests.api_fixtures import Api
from tests.conftest import frame_bytes


async def add_camera(api: Api, camera_id: str = "gate", **fields: Any) -> dict[str, Any]:
    body = {"id": camera_id, "name": camera_id.title(), **fields}
    response = await api.client.post("/api/v1/cameras", json=body, headers=api.auth("admin"))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


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
