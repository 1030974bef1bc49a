"""Statistics read from the roll-ups, never from `detections` (`framewatch.models.stats`
describes the roll-ups).

A range covers every hour that starts in it. `split_range` splits those hours into whole UTC
days, read from the daily roll-ups, and the hours of the partial first and last days, read from
the hourly ones; each statement sums both parts (`UNION ALL`). For 30 days over 100 cameras and 5
labels that is about 15,000 daily rows and at most 46 hours of hourly rows (~500 rows an hour);
reading hours only, it was 360,000 rows. The series over every camera comes from
`detection_series_hourly` (one row per hour and type; by day, whole days from the daily rows);
with a camera filter or scope, from the chosen cameras' rows (indexes on camera and time).

Three statements read the roll-ups: detections per camera, type and label; the series; provider
figures per camera and provider. The totals by type, label, camera and provider are summed from
those rows in Python (cameras × labels: a few hundred rows).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.models import (
    DetectionSeriesHourly,
    DetectionStatsDaily,
    DetectionStatsHourly,
    JobRun,
    ProviderStatsDaily,
    ProviderStatsHourly,
)
from framewatch.models.stats import LATENCY_BUCKETS_MS, PROVIDER_FIGURES
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
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def floor_day(moment: datetime) -> datetime:
    return floor_hour(moment).replace(hour=0)


@dataclass(frozen=True, slots=True)
class RangeSplit:
    """The hours of a range: whole UTC days [`days[0]`, `days[1]`) and the hour ranges at the
    edges (`bucket_start >= a and bucket_start < b` for each (a, b) in `hours`)."""

    days: tuple[datetime, datetime] | None
    hours: tuple[tuple[datetime, datetime], ...]


def split_range(start: datetime, end: datetime) -> RangeSplit:
    """Split the hours starting in [`start`, `end`) (`start` on the hour) into whole days and
    the hours before and after them."""
    hours_end = floor_hour(end) + (HOUR if end > floor_hour(end) else timedelta(0))
    first_day = floor_day(start) + (DAY if start > floor_day(start) else timedelta(0))
    last_day = floor_day(hours_end)
    if first_day >= last_day:
        return RangeSplit(None, ((start, end),))
    edges = [(a, b) for a, b in ((start, first_day), (last_day, end)) if a < b]
    return RangeSplit((first_day, last_day), tuple(edges))


async def statistics(
    session: AsyncSession, *, since: datetime, until: datetime, camera_id: str | None,
    bucket: str, cache: dict[str, dict[str, int]], camera_scope: frozenset[str] | None = None,
) -> Statistics:
    # Every hour that starts in [start, end): `since` is floored to its hour, and the hour
    # `until` falls in is read whole.
    start, end = floor_hour(since), until
    cameras = [camera_id] if camera_id else sorted(camera_scope) if camera_scope else None
    if camera_scope is not None and not camera_scope:
        cameras = []
    split = split_range(start, end)
    counts = await _detections(session, split, cameras)
    types: dict[str, list[Any]] = defaultdict(lambda: [0, 0.0])
    labels: dict[str, int] = defaultdict(int)
    detections_by_camera: dict[str, int] = defaultdict(int)
    for camera, kind, label, count, confidence in counts:
        types[kind][0] += count
        types[kind][1] += confidence
        labels[label] += count
        detections_by_camera[camera] += count
    # Most frequent first; equal counts by name, so that the answer is stable.
    by_type = [
        TypeTotal(type=kind, detections=count, avg_confidence=_ratio(total, count))
        for kind, (count, total) in sorted(types.items(), key=lambda t: (-t[1][0], t[0]))
    ]
    by_label = [
        LabelTotal(label=label, detections=count)
        for label, count in sorted(labels.items(), key=lambda t: (-t[1], t[0]))[:TOP_LABELS]
    ]
    series = _series(await session.execute(_series_query(start, end, split, cameras, bucket)),
                     bucket)
    providers, frames_by_camera = await _providers(session, split, cameras)
    by_camera = [
        CameraTotal(camera_id=camera, detections=detections_by_camera.get(camera, 0),
                    frames=frames_by_camera.get(camera, 0))
        for camera in sorted(set(detections_by_camera) | set(frames_by_camera))
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


def _parts(
    split: RangeSplit, cameras: list[str] | None, daily: Any, hourly: Any,
    daily_columns: list[Any], hourly_columns: list[Any],
) -> Any:
    """The rows of the whole days (`daily_columns` of `daily`) and of the edge hours
    (`hourly_columns` of `hourly`) of the chosen cameras, as one subquery."""

    def rows(table: Any, columns: list[Any], *where: Any) -> Select[Any]:
        query = select(*columns).where(*where)
        return query.where(table.camera_id.in_(cameras)) if cameras is not None else query

    parts = [rows(hourly, hourly_columns, hourly.bucket_start >= a, hourly.bucket_start < b)
             for a, b in split.hours]
    if split.days is not None:
        first, last = split.days
        parts.insert(0, rows(daily, daily_columns, daily.day >= first, daily.day < last))
    return (parts[0] if len(parts) == 1 else union_all(*parts)).subquery()


async def _detections(
    session: AsyncSession, split: RangeSplit, cameras: list[str] | None
) -> list[tuple[str, str, str, int, float]]:
    """Detections and the sum of their confidences per camera, type and label."""
    d, h = DetectionStatsDaily, DetectionStatsHourly
    rows = _parts(split, cameras, d, h,
                  [d.camera_id, d.type, d.label, d.detections, d.confidence_sum],
                  [h.camera_id, h.type, h.label, h.detections, h.confidence_sum])
    result = await session.execute(
        select(rows.c.camera_id, rows.c.type, rows.c.label, func.sum(rows.c.detections),
               func.sum(rows.c.confidence_sum))
        .group_by(rows.c.camera_id, rows.c.type, rows.c.label))
    return [(camera, kind, label, int(count), float(total or 0.0))
            for camera, kind, label, count, total in result]


def _series_query(
    start: datetime, end: datetime, split: RangeSplit, cameras: list[str] | None, bucket: str
) -> Select[datetime, str, int]:
    """(bucket start, type, detections) rows, folded into the answer's buckets by `_series`.

    By hour: the all-cameras series, or the chosen cameras' hourly rows (index on camera, hour).
    By day: whole days from the daily rows, summed in SQL, and the edges' hours from either."""
    s, d, h = DetectionSeriesHourly, DetectionStatsDaily, DetectionStatsHourly
    if bucket == "hour" and cameras is None:
        return select(s.bucket_start, s.type, s.detections).where(
            s.bucket_start >= start, s.bucket_start < end)
    if bucket == "hour" and cameras is not None:
        return (select(h.bucket_start, h.type, func.sum(h.detections))
                .where(h.bucket_start >= start, h.bucket_start < end, h.camera_id.in_(cameras))
                .group_by(h.bucket_start, h.type))
    hours = s if cameras is None else h
    rows = _parts(split, cameras, d, hours, [d.day.label("bucket_start"), d.type, d.detections],
                  [hours.bucket_start, hours.type, hours.detections])
    return (select(rows.c.bucket_start, rows.c.type, func.sum(rows.c.detections))
            .group_by(rows.c.bucket_start, rows.c.type))


def _series(rows: Any, bucket: str) -> list[SeriesPoint]:
    points: dict[datetime, dict[str, int]] = {}
    by_day = bucket == "day"
    # Roll-up rows start on the hour, read back in UTC: a day bucket only drops the hour. (One
    # row per hour and type: 2,900 for 30 days, so this loop stays lean.)
    for bucket_start, kind, count in rows:
        by_type = points.setdefault(bucket_start.replace(hour=0) if by_day else bucket_start, {})
        by_type[kind] = by_type.get(kind, 0) + int(count)
    return [SeriesPoint(bucket_start=moment, detections=sum(by_type.values()), by_type=by_type)
            for moment, by_type in sorted(points.items())]


async def _providers(
    session: AsyncSession, split: RangeSplit, cameras: list[str] | None
) -> tuple[list[ProviderFigures], dict[str, int]]:
    """The figures per provider, and the frames processed per camera."""
    d, h = ProviderStatsDaily, ProviderStatsHourly
    rows = _parts(split, cameras, d, h,
                  [d.camera_id, d.provider, *(getattr(d, c) for c in PROVIDER_FIGURES)],
                  [h.camera_id, h.provider, *(getattr(h, c) for c in PROVIDER_FIGURES)])
    sums: dict[str, list[float]] = {}
    frames_by_camera: dict[str, int] = defaultdict(int)
    for camera, provider, *figures in await session.execute(
        select(rows.c.camera_id, rows.c.provider,
               *(func.sum(rows.c[column]) for column in PROVIDER_FIGURES))
        .group_by(rows.c.camera_id, rows.c.provider)
        # Providers in the database's order of their names, as when it summed them by provider.
        .order_by(rows.c.provider)
    ):
        values = [float(value or 0) for value in figures]
        totals = sums.setdefault(provider, [0.0] * len(values))
        sums[provider] = [a + b for a, b in zip(totals, values, strict=True)]
        frames_by_camera[camera] += int(values[0])
    result = []
    for provider, (frames_sum, errors_sum, dead, latency_sum, *histogram) in sums.items():
        frames, errors = int(frames_sum), int(errors_sum)
        counts = [int(c) for c in histogram]
        result.append(ProviderFigures(
            provider=provider, frames=frames, errors=errors,
            error_rate=_ratio(errors, frames + errors), dead_letters=int(dead),
            latency_ms_avg=_ratio(latency_sum, frames),
            latency_ms_p50=percentile(counts, 0.5), latency_ms_p95=percentile(counts, 0.95),
        ))
    return result, frames_by_camera


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
