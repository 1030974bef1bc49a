"""Statistics read whole UTC days from the daily roll-ups and the partial days at a range's edges
from the hourly ones (SQLite and PostgreSQL). Whatever the range, bucket and cameras, the answer
is the one the hourly rows alone give: computed here in Python, as `statistics` answered before
the daily roll-ups, from four days of hourly rows on three cameras."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from framewatch.core.database import create_engine, create_session_factory, utcnow
from framewatch.models import (
    DetectionStatsDaily,
    DetectionStatsHourly,
    ProviderStatsHourly,
)
from framewatch.models.stats import LATENCY_COLUMNS
from framewatch.stats.queries import RangeSplit, percentile, split_range, statistics
from framewatch.stats.rollup import recompute_day
from tests.stats.roll_ups import empty_coarse_roll_ups, expected_coarse, stored_coarse

HOUR, DAY = timedelta(hours=1), timedelta(days=1)
# Midnight (UTC) ten days ago; the hourly rows cover B 00:00 to B + 4 days 06:00.
B = (utcnow() - 10 * DAY).replace(hour=0, minute=0, second=0, microsecond=0)
CAMERAS = ("door", "gate", "yard")
KINDS = (("person", "person"), ("vehicle", "car"), ("vehicle", "truck"), ("face", "face"))
PROVIDERS = ("alpha", "beta")
# (since, until) relative to B.
RANGES = {
    "mid-day to mid-day, several days": (5 * HOUR, 3 * DAY + 17.5 * HOUR),
    "whole days": (timedelta(0), 2 * DAY),
    "one whole day": (DAY, 2 * DAY),
    "part of one day": (DAY + 3 * HOUR, DAY + 9 * HOUR),
    "mid-day to midnight, since floored": (DAY + 3 * HOUR + timedelta(minutes=20), 3 * DAY),
    "midnight to just after midnight": (DAY, 3 * DAY + timedelta(seconds=1)),
    "until 23:30: its day is whole": (DAY + 23.5 * HOUR, 3 * DAY + 23.5 * HOUR),
    "inside one hour": (2 * DAY + 12 * HOUR, 2 * DAY + 12 * HOUR + timedelta(minutes=10)),
    "all and more": (-2 * DAY, 6 * DAY),
    "nothing there": (20 * DAY, 21 * DAY),
}
# (camera_id, camera_scope)
FILTERS: list[tuple[str | None, frozenset[str] | None]] = [
    (None, None), ("gate", None), ("nowhere", None), (None, frozenset({"door", "gate"})),
    (None, frozenset()),
]


@pytest.fixture
async def factory(any_database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(any_database_url)
    factory = create_session_factory(engine)
    await empty_coarse_roll_ups(factory)
    try:
        yield factory
    finally:
        await empty_coarse_roll_ups(factory)
        await engine.dispose()


async def seed(factory: async_sessionmaker[AsyncSession]) -> None:
    """Hourly rows with gaps (about one in four left out), sums that floats hold exactly, then
    each day rolled up by the job's own `recompute_day`."""
    rng = random.Random(8)
    async with factory() as session:
        for hour in range(4 * 24 + 7):
            moment = B + hour * HOUR
            for camera in CAMERAS:
                for kind, label in KINDS:
                    if rng.random() < 0.75:
                        count = rng.randint(1, 40)
                        session.add(DetectionStatsHourly(
                            bucket_start=moment, camera_id=camera, type=kind, label=label,
                            detections=count, confidence_sum=count * rng.choice((0.5, 0.75))))
                for provider in PROVIDERS:
                    if rng.random() < 0.75:
                        histogram = [rng.randint(0, 5) for _ in LATENCY_COLUMNS]
                        errors = rng.randint(0, 3)
                        session.add(ProviderStatsHourly(
                            bucket_start=moment, camera_id=camera, provider=provider,
                            frames=sum(histogram), errors=errors,
                            dead_letters=rng.randint(0, errors),
                            latency_ms_sum=float(rng.randint(0, 5000)),
                            latency_histogram=histogram))
        await session.flush()
        for day in range(5):
            await recompute_day(session, B + day * DAY)
        await session.commit()


def reference(rows: tuple[list[Any], list[Any]], since: datetime, until: datetime,
              camera_id: str | None, scope: frozenset[str] | None,
              bucket: str) -> dict[str, Any]:
    """The answer from the hourly rows alone: every hour starting in [floor(since), until)."""
    start, end = since.replace(minute=0, second=0, microsecond=0), until
    cameras = {camera_id} if camera_id else scope

    def chosen(row: Any) -> bool:
        return start <= row.bucket_start < end and (cameras is None or row.camera_id in cameras)

    detections, providers = ([r for r in rows[0] if chosen(r)], [r for r in rows[1] if chosen(r)])
    types: dict[str, list[Any]] = defaultdict(lambda: [0, 0.0])
    labels: dict[str, int] = defaultdict(int)
    by_camera: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    points: dict[datetime, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in detections:
        types[r.type][0] += r.detections
        types[r.type][1] += r.confidence_sum
        labels[r.label] += r.detections
        by_camera[r.camera_id][0] += r.detections
        moment = r.bucket_start.replace(hour=0) if bucket == "day" else r.bucket_start
        points[moment][r.type] += r.detections
    figures: dict[str, list[Any]] = {}
    for p in providers:
        sums = figures.setdefault(p.provider, [0, 0, 0, 0.0, [0] * len(LATENCY_COLUMNS)])
        sums[0] += p.frames
        sums[1] += p.errors
        sums[2] += p.dead_letters
        sums[3] += p.latency_ms_sum
        sums[4] = [a + b for a, b in zip(sums[4], p.latency_histogram, strict=True)]
        by_camera[p.camera_id][1] += p.frames

    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 4) if b else None

    by_type = [{"type": t, "detections": n, "avg_confidence": ratio(c, n)}
               for t, (n, c) in sorted(types.items(), key=lambda i: (-i[1][0], i[0]))]
    total = sum(t["detections"] for t in by_type)
    confidence = sum((t["avg_confidence"] or 0.0) * t["detections"] for t in by_type)
    frames = sum(f[0] for f in figures.values())
    return {
        "since": start, "until": end, "camera_id": camera_id, "bucket": bucket,
        "detections": total, "avg_confidence": ratio(confidence, total), "by_type": by_type,
        "by_label": [{"label": label, "detections": n} for label, n in
                     sorted(labels.items(), key=lambda i: (-i[1], i[0]))[:50]],
        "by_camera": [{"camera_id": c, "detections": d, "frames": f}
                      for c, (d, f) in sorted(by_camera.items())],
        "series": [{"bucket_start": m, "detections": sum(t.values()), "by_type": dict(t)}
                   for m, t in sorted(points.items())],
        "providers": [{
            "provider": name, "frames": f, "errors": e, "error_rate": ratio(e, f + e),
            "dead_letters": d, "latency_ms_avg": ratio(latency, f),
            "latency_ms_p50": percentile(h, 0.5), "latency_ms_p95": percentile(h, 0.95),
        } for name, (f, e, d, latency, h) in sorted(figures.items())],
        "queue": {"frames_processed": frames,
                  "dead_letters": sum(f[2] for f in figures.values()),
                  "frames_per_hour": round(frames / max((end - start).total_seconds() / 3600,
                                                        1.0), 2)},
    }


async def answer(session: AsyncSession, since: datetime, until: datetime, camera_id: str | None,
                 scope: frozenset[str] | None, bucket: str) -> dict[str, Any]:
    result = await statistics(session, since=since, until=until, camera_id=camera_id,
                              bucket=bucket, cache={}, camera_scope=scope)
    return result.model_dump(exclude={"cache", "rolled_up_to"})


async def hourly_rows(session: AsyncSession) -> tuple[list[Any], list[Any]]:
    return (list(await session.scalars(select(DetectionStatsHourly))),
            list(await session.scalars(select(ProviderStatsHourly))))


def test_split_range_into_whole_days_and_edge_hours() -> None:
    def split(since: timedelta, until: timedelta) -> RangeSplit:
        return split_range(B + since, B + until)

    assert split(5 * HOUR, 3 * DAY + 17.5 * HOUR) == RangeSplit(
        (B + DAY, B + 3 * DAY), ((B + 5 * HOUR, B + DAY), (B + 3 * DAY, B + 3 * DAY + 17.5 * HOUR)))
    assert split(timedelta(0), 2 * DAY) == RangeSplit((B, B + 2 * DAY), ())
    assert split(DAY + 3 * HOUR, DAY + 9 * HOUR) == RangeSplit(
        None, ((B + DAY + 3 * HOUR, B + DAY + 9 * HOUR),))
    # The hour `until` falls in counts whole: until 23:30 completes its day; 00:00:01 does not.
    assert split(DAY, 2 * DAY - 0.5 * HOUR) == RangeSplit((B + DAY, B + 2 * DAY), ())
    assert split(DAY, 2 * DAY + timedelta(seconds=1)) == RangeSplit(
        (B + DAY, B + 2 * DAY), ((B + 2 * DAY, B + 2 * DAY + timedelta(seconds=1)),))
    # From 01:00 to the next day's 23:00: no whole day.
    assert split(HOUR, 2 * DAY - HOUR) == RangeSplit(None, ((B + HOUR, B + 2 * DAY - HOUR),))


async def test_every_range_answers_as_the_hourly_rows_do(
    factory: async_sessionmaker[AsyncSession]
) -> None:
    await seed(factory)
    async with factory() as session:
        rows = await hourly_rows(session)
        assert len(rows[0]) > 800 and len(rows[1]) > 400
        for name, (since, until) in RANGES.items():
            for camera_id, scope in FILTERS:
                for bucket in ("hour", "day"):
                    got = await answer(session, B + since, B + until, camera_id, scope, bucket)
                    expected = reference(rows, B + since, B + until, camera_id, scope, bucket)
                    assert got == expected, (name, camera_id, scope, bucket)
        # Not only equal, but something to compare: the several-days range holds most rows.
        several = await answer(session, B + 5 * HOUR, B + 3 * DAY + 17.5 * HOUR, None, None,
                               "day")
        assert several["detections"] > 2000 and len(several["series"]) == 4
        assert [p["provider"] for p in several["providers"]] == ["alpha", "beta"]
        assert [c["camera_id"] for c in several["by_camera"]] == ["door", "gate", "yard"]


async def test_whole_days_are_read_from_the_daily_rows(
    factory: async_sessionmaker[AsyncSession]
) -> None:
    """A daily row changed behind the job's back shows in ranges holding its whole day, and
    only there."""
    await seed(factory)
    async with factory() as session:
        before = {name: await answer(session, B + a, B + b, None, None, "hour")
                  for name, (a, b) in RANGES.items()}
        await session.execute(update(DetectionStatsDaily).where(
            DetectionStatsDaily.day == B + DAY, DetectionStatsDaily.camera_id == "gate",
            DetectionStatsDaily.type == "person").values(
                detections=DetectionStatsDaily.detections + 1000))
        await session.commit()
        for name, (a, b) in RANGES.items():
            after = await answer(session, B + a, B + b, None, None, "hour")
            whole = split_range(B + a, B + b).days
            holds_day = whole is not None and whole[0] <= B + DAY < whole[1]
            assert after["detections"] - before[name]["detections"] == (
                1000 if holds_day else 0), name


async def test_recompute_day_sums_the_hourly_rows_and_is_idempotent(
    factory: async_sessionmaker[AsyncSession]
) -> None:
    await seed(factory)
    async with factory() as session:
        expected = await expected_coarse(session)
        assert await stored_coarse(session) == expected
        daily, providers, series = expected
        assert len(daily) == 5 * 3 * 4 and len(providers) == 5 * 3 * 2
        assert 300 < len(series) <= (4 * 24 + 7) * 3  # hours × types, a few missing
        for day in range(5):
            await recompute_day(session, B + day * DAY)
        await session.commit()
        assert await stored_coarse(session) == expected
        # A day with no hourly rows left has no daily or series rows either.
        for model in (DetectionStatsHourly, ProviderStatsHourly):
            await session.execute(model.__table__.delete().where(
                model.bucket_start >= B + 4 * DAY))
        await recompute_day(session, B + 4 * DAY)
        await session.commit()
        daily_after, providers_after, series_after = await stored_coarse(session)
        assert {k[0] for k in daily_after} == {k[0] for k in providers_after} == {
            B + day * DAY for day in range(4)}
        assert max(k[0] for k in series_after) == B + 4 * DAY - HOUR
        assert (daily_after, providers_after, series_after) == await expected_coarse(session)
