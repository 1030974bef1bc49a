"""Shared pieces of the queue scenarios: distinct small frames, a flaky provider as the default,
waiting for the queue to drain, and the invariants every scenario ends with."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import cv2
import httpx
import numpy as np
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.models import Detection, DetectionEventLog, Frame, QueueItem


def small_frame(index: int) -> bytes:
    """A 64×48 JPEG whose pixels (and so sha256) differ for every `index`."""
    image = np.full((48, 64, 3), index % 251, dtype=np.uint8)
    image[0, 0] = (index // 251 % 256, index // 64_000 % 256, 7)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return data.tobytes()


def flaky_provider_body(url: str, **overrides: Any) -> dict[str, Any]:
    """A DeepStack provider at `url` without its own retries, so every failed call is a failed
    queue attempt; made the default."""
    return {
        "name": "flaky", "kind": "deepstack", "base_url": url, "max_retries": 0,
        "timeout_seconds": 5, "detection_types": ["person"], "min_confidence": 0.1,
        "is_default": True, "options": {"retry_backoff_seconds": 0}, **overrides,
    }


async def send_async(client: httpx.AsyncClient, headers: dict[str, str], camera_id: str,
                     indexes: range) -> list[dict[str, Any]]:
    answers = []
    for index in indexes:
        response = await client.post(
            "/api/v1/detections/send-frame",
            files={"image": (f"f{index}.jpg", small_frame(index), "image/jpeg")},
            data={"camera_id": camera_id, "mode": "async"}, headers=headers,
        )
        assert response.status_code == 202, response.text
        answers.append(response.json())
    return answers


async def wait_for_queue(client: httpx.AsyncClient, headers: dict[str, str], *,
                         within: float) -> dict[str, Any]:
    """Poll queue-stats until nothing is pending or processing; fail after `within` seconds."""
    deadline = time.monotonic() + within
    stats: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await client.get("/api/v1/detections/queue-stats", headers=headers)
        assert response.status_code == 200, response.text
        stats = response.json()
        if stats["counts"]["pending"] == 0 and stats["counts"]["processing"] == 0:
            return stats
        await asyncio.sleep(0.1)
    raise AssertionError(f"the queue did not drain in {within} s: {stats}")


async def assert_each_frame_stored_once(session: AsyncSession, frame_ids: list[int]) -> None:
    """Every frame done, with exactly one detection (the flaky provider finds one person) and
    exactly one `frame.processed` event: nothing lost, nothing doubled."""
    statuses = dict((await session.execute(
        select(QueueItem.frame_id, QueueItem.status).where(QueueItem.frame_id.in_(frame_ids))
    )).all())
    assert len(statuses) == len(frame_ids)
    assert set(statuses.values()) == {"done"}
    per_frame = dict((await session.execute(
        select(Detection.frame_id, func.count()).where(Detection.frame_id.in_(frame_ids))
        .group_by(Detection.frame_id)
    )).all())
    assert per_frame == dict.fromkeys(frame_ids, 1)
    events = dict((await session.execute(
        select(DetectionEventLog.frame_id, func.count())
        .where(DetectionEventLog.event_type == "frame.processed",
               DetectionEventLog.frame_id.in_(frame_ids))
        .group_by(DetectionEventLog.frame_id)
    )).all())
    assert events == dict.fromkeys(frame_ids, 1)
    processed = await session.scalar(
        select(func.count()).select_from(Frame)
        .where(Frame.id.in_(frame_ids), Frame.status == "processed")
    )
    assert processed == len(frame_ids)


async def event_types(session: AsyncSession, *types: str) -> list[str]:
    rows = await session.scalars(
        select(DetectionEventLog.event_type).where(DetectionEventLog.event_type.in_(types))
        .order_by(DetectionEventLog.id)
    )
    return list(rows)
