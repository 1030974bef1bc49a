"""Retention and the statistics roll-ups (SQLite and PostgreSQL): retention deletes raw rows and
no roll-up row of any grain (hourly, daily, series), so statistics of a range stay what they
were; an hour recomputed later counts the raw rows left, and its day follows its hours."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from framewatch.core.database import utcnow
from framewatch.models import (
    Camera,
    Detection,
    DetectionStatsHourly,
    Frame,
    ProviderStatsHourly,
)
from framewatch.models.frame import FRAME_PROCESSED
from framewatch.retention.service import cleanup_old_data
from framewatch.stats.queries import statistics
from framewatch.stats.rollup import aggregate_stats
from tests.api_fixtures import Api, make_settings, start_api
from tests.queue.scenario import small_frame
from tests.stats.roll_ups import empty_coarse_roll_ups, expected_coarse, stored_coarse

QUIET = {"provider_check_seconds": 3600, "stats_interval_seconds": 3600,
         "cleanup_interval_seconds": 3600, "retention_detections_days": 30,
         "retention_frames_days": 30}
HOUR, DAY = timedelta(hours=1), timedelta(days=1)


@asynccontextmanager
async def running_api(tmp_path: Path, url: str) -> AsyncIterator[Api]:
    apps = start_api(make_settings(tmp_path, url, **QUIET))
    api = await anext(apps)
    await empty_coarse_roll_ups(api.runtime.session_factory)
    try:
        async with api.runtime.session_factory() as session:
            session.add(Camera(id="gate", name="Gate"))
            await session.commit()
        yield api
    finally:
        await empty_coarse_roll_ups(api.runtime.session_factory)
        await anext(apps, None)


async def add_frame(api: Api, at: datetime, *detected: tuple[datetime, datetime]) -> int:
    """A processed frame of `gate` with a person per (detected_at, created_at)."""
    data = small_frame(int(at.timestamp()) % 1000)
    sha = hashlib.sha256(data).hexdigest()
    path = await api.runtime.frame_store.save(data, sha, "image/jpeg")
    async with api.runtime.session_factory() as session:
        frame = Frame(camera_id="gate", sha256=sha, content_type="image/jpeg",
                      size_bytes=len(data), width=64, height=48, storage_path=path,
                      received_at=at, status=FRAME_PROCESSED, requested_types=["person"],
                      provider_name="fake", latency_ms=40.0, processed_at=at)
        session.add(frame)
        await session.flush()
        session.add_all(
            Detection(frame_id=frame.id, camera_id="gate", provider_name="fake", model="m",
                      latency_ms=40.0, type="person", label="person", confidence=0.5,
                      x_min=1, y_min=1, x_max=9, y_max=9, x_min_norm=0.01, y_min_norm=0.02,
                      x_max_norm=0.14, y_max_norm=0.19, detected_at=seen, created_at=created)
            for seen, created in detected)
        await session.commit()
        return frame.id


async def snapshot(api: Api, ranges: list[tuple[datetime, datetime]]) -> dict[str, Any]:
    """Every roll-up row and the statistics of each range, in hour and day buckets."""
    async with api.runtime.session_factory() as session:
        hourly = sorted((r.bucket_start, r.camera_id, r.detections) for r in
                        await session.scalars(select(DetectionStatsHourly)))
        providers = sorted((r.bucket_start, r.camera_id, r.frames) for r in
                           await session.scalars(select(ProviderStatsHourly)))
        answers = [
            (await statistics(session, since=since, until=until, camera_id=camera, bucket=bucket,
                              cache={})).model_dump(exclude={"rolled_up_to"})
            for since, until in ranges for camera in (None, "gate") for bucket in ("hour", "day")
        ]
        return {"hourly": hourly, "providers": providers, "coarse": await stored_coarse(session),
                "answers": answers}


async def test_retention_keeps_every_roll_up_and_statistics_stay(
    tmp_path: Path, any_database_url: str
) -> None:
    x = (utcnow() - 40 * DAY).replace(hour=0, minute=0, second=0, microsecond=0)
    recent = utcnow() - 2 * HOUR
    async with running_api(tmp_path, any_database_url) as api:
        await add_frame(api, x + 5 * HOUR, *[(x + 5 * HOUR + timedelta(minutes=m),) * 2
                                              for m in (10, 20)])
        await add_frame(api, x + 9 * HOUR, (x + 9 * HOUR,) * 2)
        frame = await add_frame(api, recent, (recent,) * 2)
        await aggregate_stats(api.runtime)
        ranges = [(x, x + DAY), (x + 4 * HOUR, x + 10 * HOUR), (x - DAY, utcnow())]
        before = await snapshot(api, ranges)
        whole_day = before["answers"][0]
        assert (whole_day["detections"], whole_day["queue"]["frames_processed"]) == (3, 2)
        assert before["coarse"][0] == {(x, "gate", "person", "person"): (3, 1.5),
                                       (recent.replace(hour=0, minute=0, second=0,
                                                       microsecond=0),
                                        "gate", "person", "person"): (1, 0.5)}

        report = await cleanup_old_data(api.runtime)

        assert report["detections"] == 3
        async with api.runtime.session_factory() as session:
            assert await session.scalar(select(func.count()).select_from(Detection)) == 1
        assert await snapshot(api, ranges) == before
        # Deletions touch no hour: the next roll-up changes nothing either.
        assert (await aggregate_stats(api.runtime))["hours_recomputed"] == 0
        assert await snapshot(api, ranges) == before

        # A detection reported late into 05:00 of that day (on a frame retention left): the hour
        # is recomputed from the raw rows left (that one), its day from its hours (05:00 now 1,
        # 09:00 still 1).
        async with api.runtime.session_factory() as session:
            session.add(Detection(
                frame_id=frame, camera_id="gate", provider_name="fake", model="m",
                latency_ms=40.0, type="person", label="person", confidence=0.75,
                x_min=1, y_min=1, x_max=9, y_max=9, x_min_norm=0.01, y_min_norm=0.02,
                x_max_norm=0.14, y_max_norm=0.19, detected_at=x + 5 * HOUR + timedelta(minutes=30),
                created_at=utcnow()))
            await session.commit()
        report = await aggregate_stats(api.runtime)
        assert (report["hours_recomputed"], report["days_recomputed"]) == (1, 1)
        async with api.runtime.session_factory() as session:
            daily, providers, series = await stored_coarse(session)
            assert (daily, providers, series) == await expected_coarse(session)
        assert daily[x, "gate", "person", "person"] == (2, 1.25)
        assert series[x + 5 * HOUR, "person"] == 1 and series[x + 9 * HOUR, "person"] == 1
