"""Rows for the queue and breaker tests, built directly with the models."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from framewatch.core.database import create_engine, create_session_factory
from framewatch.models import Camera, DetectionEventLog, Frame, ProviderHealth, QueueItem
from framewatch.queue.service import claim_due_items, claim_item, enqueue_frame

LEASE = timedelta(seconds=60)


async def add_camera(session: AsyncSession, camera_id: str = "cam-a") -> Camera:
    camera = await session.get(Camera, camera_id)
    if camera is None:
        camera = Camera(id=camera_id, name=camera_id.title())
        session.add(camera)
        await session.flush()
    return camera


async def add_frames(session: AsyncSession, count: int, camera_id: str = "cam-a") -> list[Frame]:
    await add_camera(session, camera_id)
    frames = []
    for _ in range(count):
        sha = uuid.uuid4().hex * 2
        frames.append(Frame(camera_id=camera_id, sha256=sha, content_type="image/jpeg",
                            size_bytes=1234, width=640, height=480,
                            storage_path=f"{sha[:2]}/{sha[2:4]}/{sha}.jpg"))
    session.add_all(frames)
    await session.flush()
    return frames


async def enqueue(
    session: AsyncSession, count: int = 1, *, camera_id: str = "cam-a", max_attempts: int = 5,
    **options: Any,
) -> list[QueueItem]:
    """`count` new frames of `camera_id`, each queued (for "person"); committed."""
    items = [
        await enqueue_frame(session, frame, provider_id=None, detection_types=["person"],
                            max_attempts=max_attempts, **options)
        for frame in await add_frames(session, count, camera_id)
    ]
    await session.commit()
    return items


async def claimed(
    session: AsyncSession, item: QueueItem, worker: str, lease: timedelta = LEASE
) -> QueueItem:
    """`worker` claims `item` (which must be claimable); committed."""
    taken = await claim_item(session, item.id, worker, lease)
    assert taken is not None
    await session.commit()
    return taken


async def claim_ids(
    factory: async_sessionmaker[AsyncSession], worker: str, limit: int
) -> list[int]:
    """A worker's claim_due_items in a session of its own; committed."""
    async with factory() as session:
        items = await claim_due_items(session, worker, LEASE, limit)
        ids = [item.id for item in items]
        await session.commit()
        return ids


async def row_state(session: AsyncSession, item_id: int) -> dict[str, Any]:
    """Every stored column of the item, to show that something changed nothing."""
    item = await reload_item(session, item_id)
    return {column.key: getattr(item, column.key) for column in QueueItem.__table__.columns}


async def reload_item(session: AsyncSession, item_id: int) -> QueueItem:
    """The row as stored now (ignoring what the session's identity map holds)."""
    item = await session.scalar(
        select(QueueItem).where(QueueItem.id == item_id).execution_options(populate_existing=True)
    )
    assert item is not None
    return item


async def reload_frame(session: AsyncSession, frame_id: int) -> Frame:
    frame = await session.scalar(
        select(Frame).where(Frame.id == frame_id).execution_options(populate_existing=True)
    )
    assert frame is not None
    return frame


async def reload_health(session: AsyncSession, provider: str) -> ProviderHealth | None:
    return await session.scalar(
        select(ProviderHealth).where(ProviderHealth.provider == provider)
        .execution_options(populate_existing=True)
    )


async def events_of(
    session: AsyncSession, event_type: str, provider: str | None = None
) -> list[DetectionEventLog]:
    query = (select(DetectionEventLog).where(DetectionEventLog.event_type == event_type)
             .order_by(DetectionEventLog.id).execution_options(populate_existing=True))
    if provider is not None:
        query = query.where(DetectionEventLog.provider == provider)
    return list(await session.scalars(query))


@asynccontextmanager
async def separate_engines(
    url: str, count: int
) -> AsyncIterator[list[async_sessionmaker[AsyncSession]]]:
    """Session factories on `count` engines of their own: as many processes would have."""
    engines = [create_engine(url) for _ in range(count)]
    try:
        yield [create_session_factory(engine) for engine in engines]
    finally:
        for engine in engines:
            await engine.dispose()
