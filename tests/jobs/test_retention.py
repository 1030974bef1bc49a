"""The retention job (`cleanup_old_data`) on SQLite and PostgreSQL: what it deletes, what it keeps,
in batches of `cleanup_batch_size`, and the image files it removes from disk."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select

from framewatch.core.database import utcnow
from framewatch.models import Camera, Detection, DetectionEventLog, Frame, QueueItem
from framewatch.models.frame import FRAME_FAILED, FRAME_PROCESSED, FRAME_QUEUED
from framewatch.models.queue_item import QUEUE_DEAD, QUEUE_DONE, QUEUE_PENDING
from framewatch.retention.service import MAX_BATCHES, cleanup_old_data
from tests.api.helpers import assert_error
from tests.api_fixtures import Api, make_settings, start_api
from tests.queue.scenario import small_frame

QUIET = {"provider_check_seconds": 3600, "stats_interval_seconds": 3600,
         "cleanup_interval_seconds": 3600}
DAY = timedelta(days=1)
ZERO = {"detections": 0, "face_encodings": 0, "frame_images": 0, "frames": 0, "events": 0}


@asynccontextmanager
async def running_api(tmp_path: Path, url: str, **overrides: Any) -> AsyncIterator[Api]:
    """The app (whose own periodic jobs stay asleep) with a camera `gate`."""
    apps = start_api(make_settings(tmp_path, url, **{**QUIET, **overrides}))
    api = await anext(apps)
    try:
        async with api.runtime.session_factory() as session:
            session.add(Camera(id="gate", name="Gate"))
            await session.commit()
        yield api
    finally:
        await anext(apps, None)  # the app's shutdown


class Data:
    """Inserts rows with chosen timestamps, and files through the frame store."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.runtime = api.runtime

    async def frame(self, index: int, received_at: datetime, status: str = FRAME_PROCESSED,
                    queue_status: str | None = None) -> Frame:
        data = small_frame(index)
        sha = hashlib.sha256(data).hexdigest()
        path = await self.runtime.frame_store.save(data, sha, "image/jpeg")
        async with self.runtime.session_factory() as session:
            frame = Frame(camera_id="gate", sha256=sha, content_type="image/jpeg",
                          size_bytes=len(data), width=64, height=48, storage_path=path,
                          received_at=received_at, status=status, requested_types=["person"],
                          processed_at=received_at if status == FRAME_PROCESSED else None)
            session.add(frame)
            await session.flush()
            if queue_status is not None:
                # Not due for a day: the app's in-process worker must leave a pending one alone.
                session.add(QueueItem(frame_id=frame.id, camera_id="gate", status=queue_status,
                                      detection_types=["person"],
                                      next_attempt_at=utcnow() + DAY))
            await session.commit()
        return frame

    async def detections(self, frame: Frame, *times: datetime) -> list[int]:
        async with self.runtime.session_factory() as session:
            rows = [
                Detection(frame_id=frame.id, camera_id="gate", provider_name="fake", model="m",
                          latency_ms=5.0, type="person", label="person", confidence=0.8,
                          x_min=1, y_min=1, x_max=9, y_max=9, x_min_norm=0.01, y_min_norm=0.02,
                          x_max_norm=0.14, y_max_norm=0.19, detected_at=at, created_at=at)
                for at in times
            ]
            session.add_all(rows)
            await session.commit()
            return [row.id for row in rows]

    async def events(self, *times: datetime) -> list[int]:
        async with self.runtime.session_factory() as session:
            rows = [DetectionEventLog(event_type="frame.processed", severity="info",
                                      camera_id="gate", message="old news", created_at=at)
                    for at in times]
            session.add_all(rows)
            await session.commit()
            return [row.id for row in rows]

    async def ids(self, model: Any, *where: Any) -> set[int]:
        async with self.runtime.session_factory() as session:
            return set(await session.scalars(select(model.id).where(*where)))

    async def frames(self) -> dict[int, Frame]:
        async with self.runtime.session_factory() as session:
            return {f.id: f for f in await session.scalars(select(Frame))}

    def on_disk(self, frame: Frame) -> bool:
        return (self.runtime.frame_store.root / frame.storage_path).is_file()

    async def cleanup_events(self) -> list[DetectionEventLog]:
        async with self.runtime.session_factory() as session:
            return list(await session.scalars(
                select(DetectionEventLog).where(DetectionEventLog.event_type == "retention.cleanup")
                .order_by(DetectionEventLog.id)))


@contextmanager
def deletes_seen(api: Api) -> Iterator[dict[str, list[int]]]:
    """Rows deleted by each DELETE statement the job sends, per table."""
    seen: dict[str, list[int]] = {}

    def record(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        match = re.match(r"\s*DELETE FROM (\w+)", statement)
        if match:
            seen.setdefault(match.group(1), []).append(cursor.rowcount)

    engine = api.runtime.engine.sync_engine
    event.listen(engine, "after_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "after_cursor_execute", record)


async def test_old_detections_and_events_go_in_batches_recent_ones_stay(
    tmp_path: Path, any_database_url: str
) -> None:
    async with running_api(tmp_path, any_database_url, cleanup_batch_size=3) as api:
        data, now = Data(api), utcnow()
        frame = await data.frame(1, now - 2 * DAY)
        old = await data.detections(frame, *(now - (31 + i) * DAY for i in range(6)),
                                    now - 30 * DAY - timedelta(seconds=1))
        kept = await data.detections(frame, now - 30 * DAY, now - 29 * DAY, now - DAY)
        old_events = await data.events(*(now - (91 + i) * DAY for i in range(5)))
        kept_events = await data.events(now - 90 * DAY, now - 89 * DAY, now)

        with deletes_seen(api) as seen:
            report = await cleanup_old_data(api.runtime, now=now)

        assert report == {**ZERO, "detections": 7, "events": 5}
        assert await data.ids(Detection) == set(kept)
        assert await data.ids(DetectionEventLog, DetectionEventLog.id.in_(old_events + kept_events)
                              ) == set(kept_events)
        # At most 3 rows a statement, as many statements as needed.
        assert seen["detections"] == [3, 3, 1]
        assert seen["detection_event_logs"] == [3, 2]
        assert len(old) == 7
        # The frame is recent: its row and image stay.
        (stored,) = (await data.frames()).values()
        assert stored.image_purged_at is None and data.on_disk(stored)


async def test_a_run_stops_after_max_batches_and_the_next_run_carries_on(
    tmp_path: Path, any_database_url: str
) -> None:
    async with running_api(tmp_path, any_database_url, cleanup_batch_size=1) as api:
        data, now = Data(api), utcnow()
        old = await data.events(*(now - 100 * DAY - i * timedelta(minutes=1)
                                  for i in range(MAX_BATCHES + 2)))
        first = await cleanup_old_data(api.runtime, now=now)
        assert first == {**ZERO, "events": MAX_BATCHES}
        assert len(await data.ids(DetectionEventLog, DetectionEventLog.id.in_(old))) == 2
        second = await cleanup_old_data(api.runtime, now=now)
        assert second == {**ZERO, "events": 2}
        assert await data.ids(DetectionEventLog, DetectionEventLog.id.in_(old)) == set()
        assert await cleanup_old_data(api.runtime, now=now) == ZERO


async def test_images_are_purged_and_shared_files_kept_while_a_frame_keeps_its_image(
    tmp_path: Path, any_database_url: str
) -> None:
    async with running_api(tmp_path, any_database_url, cleanup_batch_size=3) as api:
        data, now = Data(api), utcnow()
        alone = await data.frame(1, now - 10 * DAY)
        shared_old = await data.frame(2, now - 10 * DAY)
        shared_new = await data.frame(2, now - DAY)  # same bytes: the same file
        pair = [await data.frame(3, now - 9 * DAY), await data.frame(3, now - 8 * DAY)]
        recent = await data.frame(4, now - 2 * DAY)
        waiting = await data.frame(5, now - 10 * DAY, FRAME_QUEUED, QUEUE_PENDING)
        purged = [alone, shared_old, *pair]
        for frame in [*purged, shared_new, recent]:
            await data.detections(frame, frame.received_at)
        assert shared_old.storage_path == shared_new.storage_path

        report = await cleanup_old_data(api.runtime, now=now)

        assert report == {**ZERO, "frame_images": 4}
        frames = await data.frames()
        assert len(frames) == 7  # rows with detections stay
        assert {i for i, f in frames.items() if f.image_purged_at is not None} == {
            f.id for f in purged}
        assert all(frames[f.id].image_purged_at == now for f in purged)
        assert not data.on_disk(alone) and not data.on_disk(pair[0])
        assert data.on_disk(shared_new) and data.on_disk(recent)
        # A frame still waiting in the queue keeps its image: the worker has to read it.
        assert frames[waiting.id].image_purged_at is None and data.on_disk(waiting)

        response = await api.client.get(f"/api/v1/frames/{alone.id}/image",
                                        headers=api.auth("viewer"))
        assert_error(response, 404, "not_found")
        response = await api.client.get(f"/api/v1/frames/{shared_new.id}/image",
                                        headers=api.auth("viewer"))
        assert response.status_code == 200 and response.content == small_frame(2)

        # Eight days later the newer sharer is past the window too: now the file goes.
        later = await cleanup_old_data(api.runtime, now=now + 8 * DAY)
        assert later == {**ZERO, "frame_images": 2}
        assert not data.on_disk(shared_new) and not data.on_disk(recent)
        assert (await data.frames())[shared_new.id].image_purged_at == now + 8 * DAY


async def test_bare_old_frames_go_with_their_queue_items_queued_frames_never(
    tmp_path: Path, any_database_url: str
) -> None:
    async with running_api(tmp_path, any_database_url, cleanup_batch_size=3) as api:
        data, now = Data(api), utcnow()
        done = await data.frame(1, now - 40 * DAY, queue_status=QUEUE_DONE)
        emptied = await data.frame(2, now - 40 * DAY)
        await data.detections(emptied, now - 40 * DAY, now - 40 * DAY)
        dead = await data.frame(3, now - 40 * DAY, FRAME_FAILED, QUEUE_DEAD)
        queued = await data.frame(4, now - 40 * DAY, FRAME_QUEUED, QUEUE_PENDING)
        # Older than the frames window but not the detections window: the row stays.
        younger = await data.frame(5, now - 20 * DAY)

        report = await cleanup_old_data(api.runtime, now=now)

        assert report == {**ZERO, "detections": 2, "frame_images": 4, "frames": 3}
        frames = await data.frames()
        assert set(frames) == {queued.id, younger.id}
        assert frames[younger.id].image_purged_at == now and not data.on_disk(younger)
        assert frames[queued.id].image_purged_at is None and data.on_disk(queued)
        assert not any(data.on_disk(f) for f in (done, emptied, dead))
        async with api.runtime.session_factory() as session:
            items = dict((await session.execute(select(QueueItem.frame_id, QueueItem.status)))
                         .all())
        assert items == {queued.id: QUEUE_PENDING}


async def test_zero_days_keeps_everything(tmp_path: Path, any_database_url: str) -> None:
    async with running_api(tmp_path, any_database_url, retention_detections_days=0,
                           retention_frames_days=0, retention_events_days=0) as api:
        data, now = Data(api), utcnow()
        ancient = await data.frame(1, now - 4000 * DAY)
        bare = await data.frame(2, now - 4000 * DAY)
        detections = await data.detections(ancient, now - 4000 * DAY)
        events = await data.events(now - 4000 * DAY)

        assert await cleanup_old_data(api.runtime, now=now) == ZERO

        assert await data.ids(Detection) == set(detections)
        assert set(events) <= await data.ids(DetectionEventLog)
        frames = await data.frames()
        assert set(frames) == {ancient.id, bare.id}
        assert all(f.image_purged_at is None and data.on_disk(f) for f in frames.values())
        assert await data.cleanup_events() == []


async def test_zero_frame_days_keeps_images_and_frame_rows(
    tmp_path: Path, any_database_url: str
) -> None:
    async with running_api(tmp_path, any_database_url, retention_frames_days=0) as api:
        data, now = Data(api), utcnow()
        old = await data.frame(1, now - 400 * DAY)
        await data.detections(old, now - 400 * DAY)

        report = await cleanup_old_data(api.runtime, now=now)

        assert report == {**ZERO, "detections": 1}
        frames = await data.frames()
        assert set(frames) == {old.id}  # bare now, but frames are kept forever
        assert frames[old.id].image_purged_at is None and data.on_disk(old)


async def test_the_cleanup_event_counts_what_went_and_a_second_run_deletes_nothing(
    tmp_path: Path, any_database_url: str
) -> None:
    async with running_api(tmp_path, any_database_url, cleanup_batch_size=3) as api:
        data, now = Data(api), utcnow()
        old = await data.frame(1, now - 40 * DAY)
        await data.detections(old, *[now - 40 * DAY] * 4)
        kept = await data.frame(2, now - 10 * DAY)
        kept_detections = await data.detections(kept, now - 10 * DAY)
        await data.events(*[now - 100 * DAY] * 2)

        report = await cleanup_old_data(api.runtime, now=now)

        assert report == {**ZERO, "detections": 4, "frame_images": 2, "frames": 1, "events": 2}
        (cleanup,) = await data.cleanup_events()
        assert cleanup.payload == report
        assert cleanup.actor == "retention" and cleanup.severity == "info"
        assert cleanup.message == ("retention removed 4 detections, 2 frame_images, 1 frames, "
                                   "2 events")
        async with api.runtime.session_factory() as session:
            before = {model.__name__: await session.scalar(select(func.count()).select_from(model))
                      for model in (Detection, Frame, DetectionEventLog, QueueItem)}

        assert await cleanup_old_data(api.runtime, now=now) == ZERO

        assert len(await data.cleanup_events()) == 1
        async with api.runtime.session_factory() as session:
            after = {model.__name__: await session.scalar(select(func.count()).select_from(model))
                     for model in (Detection, Frame, DetectionEventLog, QueueItem)}
        assert after == before
        assert await data.ids(Detection) == set(kept_detections)
        assert set(await data.frames()) == {kept.id}
