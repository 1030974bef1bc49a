"""The `aggregate_detection_stats` job: the roll-ups that statistics read instead of raw rows.

Each run finds the hours touched since its previous run — detections inserted, frames processed,
provider failures recorded — and recomputes those hours from scratch. Recomputing (instead of
adding increments) makes a run idempotent and immune to transactions that commit out of order:
the cursor steps back `LAG` to re-read anything committed late, and re-reading is harmless.

Then, in the same transaction, each UTC day holding a recomputed hour is recomputed from its
hourly rows, in SQL: its daily rows and its 24 hours of the all-cameras series
(`framewatch.models.stats` describes the three grains). So the coarser rows are always the sums of
the hourly rows as committed, whatever happened to the raw rows meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, case, delete, func, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.core.database import UTCDateTime, utcnow
from framewatch.events.service import EventType
from framewatch.models import (
    Detection,
    DetectionEventLog,
    DetectionSeriesHourly,
    DetectionStatsDaily,
    DetectionStatsHourly,
    Frame,
    JobRun,
    ProviderStatsDaily,
    ProviderStatsHourly,
)
from framewatch.models.stats import LATENCY_BUCKETS_MS, PROVIDER_FIGURES
from framewatch.runtime import Runtime

JOB_NAME = "aggregate_detection_stats"
LAG = timedelta(minutes=5)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# Events that count as a failed provider call.
ERROR_EVENTS = (EventType.PROVIDER_ERROR.value, EventType.QUEUE_RETRY.value,
                EventType.QUEUE_DEAD_LETTER.value)


def hour_of(column: Any, dialect: str) -> ColumnElement[Any]:
    """The start of the (UTC) hour of a timestamp column, in SQL."""
    if dialect == "postgresql":
        # Truncated in UTC, not in the session's time zone (which may be, say, +05:30).
        return func.date_trunc("hour", func.timezone("UTC", column))
    return func.strftime("%Y-%m-%d %H:00:00", column)


def as_hour(value: datetime | str) -> datetime:
    if isinstance(value, str):  # SQLite's strftime
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def day_of(moment: datetime) -> datetime:
    """00:00 UTC of the day of `moment`."""
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


async def aggregate_stats(runtime: Runtime) -> dict[str, Any]:
    started = utcnow()
    async with runtime.session_factory() as session:
        run = await session.get(JobRun, JOB_NAME)
        since = run.cursor - LAG if run is not None and run.cursor is not None else None
        hours = await dirty_hours(session, since)
        for hour in sorted(hours):
            await recompute_hour(session, hour)
        days = sorted({day_of(hour) for hour in hours})
        for day in days:
            await recompute_day(session, day)
        if run is None:
            run = JobRun(name=JOB_NAME, last_result={})
            session.add(run)
        run.cursor = started
        await session.commit()
    return {"hours_recomputed": len(hours), "days_recomputed": len(days),
            "since": since.isoformat() if since else None}


async def dirty_hours(session: AsyncSession, since: datetime | None) -> set[datetime]:
    """Hours (by when things happened) with rows added since `since`; all hours when None."""
    dialect = session.get_bind().dialect.name
    queries: list[Select[Any]] = []
    detection_hour = hour_of(Detection.detected_at, dialect)
    frame_hour = hour_of(Frame.processed_at, dialect)
    event_hour = hour_of(DetectionEventLog.created_at, dialect)
    detections = select(detection_hour).group_by(detection_hour)
    frames = select(frame_hour).where(Frame.processed_at.is_not(None)).group_by(frame_hour)
    events = (select(event_hour).where(DetectionEventLog.event_type.in_(ERROR_EVENTS))
              .group_by(event_hour))
    if since is not None:
        detections = detections.where(Detection.created_at >= since)
        frames = frames.where(Frame.processed_at >= since)
        events = events.where(DetectionEventLog.created_at >= since)
    queries = [detections, frames, events]
    hours: set[datetime] = set()
    for query in queries:
        hours.update(as_hour(value) for value in await session.scalars(query) if value)
    return hours


async def recompute_hour(session: AsyncSession, hour: datetime) -> None:
    end = hour + HOUR
    await session.execute(delete(DetectionStatsHourly).where(
        DetectionStatsHourly.bucket_start == hour))
    await session.execute(delete(ProviderStatsHourly).where(
        ProviderStatsHourly.bucket_start == hour))
    detection_rows = await session.execute(
        select(Detection.camera_id, Detection.type, Detection.label, func.count(),
               func.sum(Detection.confidence))
        .where(Detection.detected_at >= hour, Detection.detected_at < end)
        .group_by(Detection.camera_id, Detection.type, Detection.label)
    )
    session.add_all(
        DetectionStatsHourly(bucket_start=hour, camera_id=camera, type=kind, label=label,
                             detections=count, confidence_sum=float(total or 0.0))
        for camera, kind, label, count, total in detection_rows
    )
    providers: dict[tuple[str, str], ProviderStatsHourly] = {}
    for row in await session.execute(_frames_per_provider(hour, end)):
        camera, provider, frames, latency_sum, *histogram = row
        providers[camera, provider] = ProviderStatsHourly(
            bucket_start=hour, camera_id=camera, provider=provider, frames=frames,
            errors=0, dead_letters=0, latency_ms_sum=float(latency_sum or 0.0),
            latency_histogram=[int(count or 0) for count in histogram],
        )
    for camera, provider, event_type, count in await session.execute(
        select(DetectionEventLog.camera_id, DetectionEventLog.provider,
               DetectionEventLog.event_type, func.count())
        .where(DetectionEventLog.event_type.in_(ERROR_EVENTS),
               DetectionEventLog.created_at >= hour, DetectionEventLog.created_at < end,
               DetectionEventLog.provider.is_not(None), DetectionEventLog.camera_id.is_not(None))
        .group_by(DetectionEventLog.camera_id, DetectionEventLog.provider,
                  DetectionEventLog.event_type)
    ):
        key = (str(camera), str(provider))
        stats = providers.get(key)
        if stats is None:
            stats = providers[key] = ProviderStatsHourly(
                bucket_start=hour, camera_id=camera, provider=provider, frames=0, errors=0,
                dead_letters=0, latency_ms_sum=0.0,
                latency_histogram=[0] * (len(LATENCY_BUCKETS_MS) + 1),
            )
        stats.errors += count
        if event_type == EventType.QUEUE_DEAD_LETTER.value:
            stats.dead_letters += count
    session.add_all(providers.values())
    await session.flush()


async def recompute_day(session: AsyncSession, day: datetime) -> None:
    """Rewrite the daily rows of `day` (00:00 UTC) and its hours of the all-cameras series from
    the hourly rows (those of this transaction included)."""
    end = day + DAY
    h, p = DetectionStatsHourly, ProviderStatsHourly
    in_day = (h.bucket_start >= day) & (h.bucket_start < end)
    await session.execute(delete(DetectionStatsDaily).where(DetectionStatsDaily.day == day))
    await session.execute(delete(ProviderStatsDaily).where(ProviderStatsDaily.day == day))
    await session.execute(delete(DetectionSeriesHourly).where(
        DetectionSeriesHourly.bucket_start >= day, DetectionSeriesHourly.bucket_start < end))
    the_day = literal(day, UTCDateTime())
    await session.execute(insert(DetectionStatsDaily).from_select(
        ["day", "camera_id", "type", "label", "detections", "confidence_sum"],
        select(the_day, h.camera_id, h.type, h.label, func.sum(h.detections),
               func.sum(h.confidence_sum))
        .where(in_day).group_by(h.camera_id, h.type, h.label),
    ))
    await session.execute(insert(ProviderStatsDaily).from_select(
        ["day", "camera_id", "provider", *PROVIDER_FIGURES],
        select(the_day, p.camera_id, p.provider,
               *(func.sum(getattr(p, column)) for column in PROVIDER_FIGURES))
        .where(p.bucket_start >= day, p.bucket_start < end).group_by(p.camera_id, p.provider),
    ))
    await session.execute(insert(DetectionSeriesHourly).from_select(
        ["bucket_start", "type", "detections"],
        select(h.bucket_start, h.type, func.sum(h.detections))
        .where(in_day).group_by(h.bucket_start, h.type),
    ))


def _frames_per_provider(hour: datetime, end: datetime) -> Select[Any]:
    return (
        select(Frame.camera_id, Frame.provider_name, func.count(), func.sum(Frame.latency_ms),
               *_histogram(Frame.latency_ms, LATENCY_BUCKETS_MS))
        .where(Frame.processed_at >= hour, Frame.processed_at < end,
               Frame.provider_name.is_not(None), Frame.latency_ms.is_not(None))
        .group_by(Frame.camera_id, Frame.provider_name)
    )


def _histogram(column: Any, bounds: Iterable[float]) -> list[ColumnElement[Any]]:
    columns: list[ColumnElement[Any]] = []
    lower: float | None = None
    for upper in bounds:
        inside = column <= upper if lower is None else (column > lower) & (column <= upper)
        columns.append(func.sum(case((inside, 1), else_=0)))
        lower = upper
    columns.append(func.sum(case((column > lower, 1), else_=0)))
    return columns
