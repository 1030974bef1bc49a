"""The models on SQLite and PostgreSQL alike: timestamps, constraints and cascades."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from framewatch.core.database import create_session_factory
from framewatch.models import (
    Camera,
    Detection,
    DetectionEventLog,
    DetectionProviderConfig,
    Frame,
    QueueItem,
)


def make_frame(camera_id: str, sha: str = "a" * 64, **values: object) -> Frame:
    return Frame(camera_id=camera_id, sha256=sha, content_type="image/jpeg", size_bytes=10,
                 width=640, height=480, storage_path=f"aa/aa/{sha}.jpg", **values)


def make_detection(frame: Frame, **values: object) -> Detection:
    defaults: dict[str, object] = dict(
        frame_id=frame.id, camera_id=frame.camera_id, provider_name="builtin", model="m",
        latency_ms=1.0, type="person", label="person", confidence=0.9, x_min=1, y_min=2,
        x_max=30, y_max=40, x_min_norm=0.0, y_min_norm=0.0, x_max_norm=0.1, y_max_norm=0.1,
        detected_at=datetime.now(UTC),
    )
    defaults.update(values)
    return Detection(**defaults)


@pytest.fixture
async def session(engine: AsyncEngine) -> AsyncSession:
    async with create_session_factory(engine)() as session:
        yield session  # type: ignore[misc]


async def test_timestamps_come_back_aware_utc(session: AsyncSession) -> None:
    taken = datetime(2026, 3, 1, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    session.add(Camera(id="gate", name="Gate"))
    await session.flush()
    frame = make_frame("gate", captured_at=taken)
    session.add(frame)
    await session.commit()
    frame_id = frame.id
    session.expire_all()
    stored = await session.get(Frame, frame_id)
    assert stored is not None and stored.captured_at is not None
    assert stored.captured_at.tzinfo is not None
    assert stored.captured_at == taken
    assert stored.captured_at.utcoffset() == timedelta(0)


async def test_naive_timestamps_are_refused(session: AsyncSession) -> None:
    session.add(Camera(id="gate", name="Gate", created_at=datetime(2026, 1, 1)))
    with pytest.raises(Exception, match="naive datetime"):
        await session.flush()


async def test_only_one_default_provider(session: AsyncSession) -> None:
    session.add(DetectionProviderConfig(name="a", kind="builtin", is_default=True,
                                        detection_types=["person"], options={}))
    session.add(DetectionProviderConfig(name="b", kind="builtin", is_default=False,
                                        detection_types=["person"], options={}))
    await session.commit()
    session.add(DetectionProviderConfig(name="c", kind="builtin", is_default=True,
                                        detection_types=["person"], options={}))
    with pytest.raises(IntegrityError):
        await session.commit()


async def test_one_queue_item_per_frame(session: AsyncSession) -> None:
    session.add(Camera(id="gate", name="Gate"))
    await session.flush()
    frame = make_frame("gate")
    session.add(frame)
    await session.flush()
    session.add(QueueItem(frame_id=frame.id, camera_id="gate", detection_types=["person"]))
    await session.commit()
    session.add(QueueItem(frame_id=frame.id, camera_id="gate", detection_types=["person"]))
    with pytest.raises(IntegrityError):
        await session.commit()


async def test_deleting_a_camera_cascades_but_keeps_events(session: AsyncSession) -> None:
    session.add_all([Camera(id="gate", name="Gate"), Camera(id="yard", name="Yard")])
    await session.flush()
    frames = [make_frame("gate"), make_frame("yard", sha="b" * 64)]
    session.add_all(frames)
    await session.flush()
    session.add_all([make_detection(frames[0]), make_detection(frames[1])])
    session.add(QueueItem(frame_id=frames[0].id, camera_id="gate", detection_types=[]))
    session.add(DetectionEventLog(event_type="frame.processed", severity="info",
                                  camera_id="gate", message="m", payload={}))
    await session.commit()

    await session.delete(await session.get(Camera, "gate"))
    await session.commit()

    async def count(model: type, **where: object) -> int:
        query = select(func.count()).select_from(model)
        for column, value in where.items():
            query = query.where(getattr(model, column) == value)
        return int(await session.scalar(query) or 0)

    assert await count(Frame) == 1
    assert await count(Detection) == 1
    assert await count(Detection, camera_id="yard") == 1
    assert await count(QueueItem) == 0
    assert await count(DetectionEventLog, camera_id="gate") == 1


async def test_deleting_a_provider_unlinks_cameras(session: AsyncSession) -> None:
    provider = DetectionProviderConfig(name="ds", kind="deepstack", base_url="http://x",
                                       detection_types=["person"], options={})
    session.add(provider)
    await session.flush()
    session.add(Camera(id="gate", name="Gate", provider_id=provider.id))
    await session.commit()
    await session.delete(provider)
    await session.commit()
    session.expire_all()
    camera = await session.get(Camera, "gate")
    assert camera is not None and camera.provider_id is None


async def test_json_columns_round_trip(session: AsyncSession) -> None:
    options = {"results_path": "data.objects", "nested": {"scale": 100, "keys": ["a", "b"]}}
    session.add(DetectionProviderConfig(name="h", kind="http", base_url="http://x",
                                        detection_types=["person", "dog"], options=options))
    await session.commit()
    session.expire_all()
    stored = await session.scalar(select(DetectionProviderConfig).where(
        DetectionProviderConfig.name == "h"))
    assert stored is not None
    assert stored.options == options
    assert stored.detection_types == ["person", "dog"]
