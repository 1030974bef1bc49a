"""Statistics read from the hourly roll-ups (never from `detections`): a 30-day range over 100
cameras is a few thousand roll-up rows, summed in SQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.models import DetectionStatsHourly, JobRun, ProviderStatsHourly
from framewatch.models.stats import LATENCY_BUCKETS_MS, LATENCY_COLUMNS
from framewatch.stats.rollup import JOB_NAME
from framewatch.stats.schemas import (
    CameraTotal,
    LabelTotal,
    ProviderFigures,
    QueueFigures,
    SeriesPoint,
    Statistics,
    TypeTotal,
)

TOP_LABELS = 50


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


async def statistics(
    session: AsyncSession, *, since: datetime, until: datetime, camera_id: str | None,
    bucket: str, cache: dict[str, dict[str, int]], camera_scope: frozenset[str] | None = None,
) -> Statistics:
    start, end = floor_hour(since), until
    d = DetectionStatsHourly
    cameras = [camera_id] if camera_id else sorted(camera_scope) if camera_scope else None
    if camera_scope is not None and not camera_scope:
        cameras = []

    def detections(*columns: Any) -> Select[Any]:
        query = select(*columns).where(d.bucket_start >= start, d.bucket_start < end)
        return query.where(d.camera_id.in_(cameras)) if cameras is not None else query

    by_type = [
        TypeTotal(type=kind, detections=int(count), avg_confidence=_ratio(total, count))
        for kind, count, total in await session.execute(
            detections(d.type, func.sum(d.detections), func.sum(d.confidence_sum))
            .group_by(d.type).order_by(func.sum(d.detections).desc())
        )
    ]
    by_label = [
        LabelTotal(label=label, detections=int(count))
        for label, count in await session.execute(
            detections(d.label, func.sum(d.detections)).group_by(d.label)
            .order_by(func.sum(d.detections).desc()).limit(TOP_LABELS)
        )
    ]
    series = await _series(session, detections(d.bucket_start, d.type, func.sum(d.detections))
                           .group_by(d.bucket_start, d.type), bucket)
    providers, frames_by_camera = await _providers(session, start, end, cameras)
    counts = dict((camera, int(n)) for camera, n in await session.execute(
        detections(d.camera_id, func.sum(d.detections)).group_by(d.camera_id)))
    by_camera = [
        CameraTotal(camera_id=camera, detections=counts.get(camera, 0),
                    frames=frames_by_camera.get(camera, 0))
        for camera in sorted(set(counts) | set(frames_by_camera))
    ]
    total = sum(t.detections for t in by_type)
    confidence_sum = sum((t.avg_confidence or 0.0) * t.detections for t in by_type)
    frames = sum(p.frames for p in providers)
    hours = max((end - start).total_seconds() / 3600, 1.0)
    rolled = await session.scalar(select(JobRun.cursor).where(JobRun.name == JOB_NAME))
    return Statistics(
        since=start, until=end, camera_id=camera_id, bucket=bucket, detections=total,
        avg_confidence=_ratio(confidence_sum, total), by_type=by_type, by_label=by_label,
        by_camera=by_camera, series=series, providers=providers,
        queue=QueueFigures(frames_processed=frames,
                           dead_letters=sum(p.dead_letters for p in providers),
                           frames_per_hour=round(frames / hours, 2)),
        cache={kind: {**figures, "hit_rate": _ratio(figures["hits"],
                                                    figures["hits"] + figures["misses"])}
               for kind, figures in cache.items()},
        rolled_up_to=rolled,
    )


async def _series(session: AsyncSession, query: Select[Any], bucket: str) -> list[SeriesPoint]:
    points: dict[datetime, dict[str, int]] = {}
    for bucket_start, kind, count in await session.execute(query):
        moment = floor_hour(bucket_start)
        if bucket == "day":
            moment = moment.replace(hour=0)
        by_type = points.setdefault(moment, {})
        by_type[kind] = by_type.get(kind, 0) + int(count)
    return [SeriesPoint(bucket_start=moment, detections=sum(by_type.values()), by_type=by_type)
            for moment, by_type in sorted(points.items())]


async def _providers(
    session: AsyncSession, start: datetime, end: datetime, cameras: list[str] | None
) -> tuple[list[ProviderFigures], dict[str, int]]:
    p = ProviderStatsHourly
    where = [p.bucket_start >= start, p.bucket_start < end]
    if cameras is not None:
        where.append(p.camera_id.in_(cameras))
    rows = await session.execute(
        select(p.provider, func.sum(p.frames), func.sum(p.errors), func.sum(p.dead_letters),
               func.sum(p.latency_ms_sum), *[func.sum(getattr(p, c)) for c in LATENCY_COLUMNS])
        .where(*where).group_by(p.provider).order_by(p.provider)
    )
    figures = []
    for provider, frames, errors, dead, latency_sum, *histogram in rows:
        frames, errors = int(frames or 0), int(errors or 0)
        counts = [int(c or 0) for c in histogram]
        figures.append(ProviderFigures(
            provider=provider, frames=frames, errors=errors,
            error_rate=_ratio(errors, frames + errors), dead_letters=int(dead or 0),
            latency_ms_avg=_ratio(latency_sum, frames),
            latency_ms_p50=percentile(counts, 0.5), latency_ms_p95=percentile(counts, 0.95),
        ))
    frames_by_camera = {
        camera: int(n) for camera, n in await session.execute(
            select(p.camera_id, func.sum(p.frames)).where(*where).group_by(p.camera_id))
    }
    return figures, frames_by_camera


def percentile(counts: list[int], q: float) -> float | None:
    """The q-quantile of a histogram over LATENCY_BUCKETS_MS, linear within its bucket; the
    open-ended last bucket reports its lower bound."""
    total = sum(counts)
    if total == 0:
        return None
    rank, seen = q * total, 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            lower = LATENCY_BUCKETS_MS[index - 1] if index else 0.0
            if index >= len(LATENCY_BUCKETS_MS):
                return float(lower)
            upper = LATENCY_BUCKETS_MS[index]
            return round(lower + (upper - lower) * (rank - seen) / count, 1)
        seen += count
    return float(LATENCY_BUCKETS_MS[-1])


def _ratio(numerator: Any, denominator: Any) -> float | None:
    return round(float(numerator) / float(denominator), 4) if denominator else None
