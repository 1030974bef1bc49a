"""Helpers for tests of the daily roll-ups: what the coarser roll-ups must hold, computed here in
Python from the hourly rows, and what they hold."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from framewatch.models import (
    DetectionSeriesHourly,
    DetectionStatsDaily,
    DetectionStatsHourly,
    ProviderStatsDaily,
    ProviderStatsHourly,
)
from framewatch.models.stats import PROVIDER_FIGURES

COARSE = (DetectionStatsDaily, ProviderStatsDaily, DetectionSeriesHourly)

Tables = tuple[dict[Any, Any], dict[Any, Any], dict[Any, Any]]


async def empty_coarse_roll_ups(factory: async_sessionmaker[AsyncSession]) -> None:
    """Delete the daily and series rows. The PostgreSQL test database is emptied between tests
    by `tests/conftest.py` (`TABLES`); until it lists these tables too, tests that roll up
    empty them before and after themselves."""
    async with factory() as session:
        for model in COARSE:
            await session.execute(delete(model))
        await session.commit()


def day_of(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


async def expected_coarse(session: AsyncSession) -> Tables:
    """The daily and series rows as sums, in Python, of every hourly row."""
    daily: dict[Any, list[Any]] = defaultdict(lambda: [0, 0.0])
    series: dict[Any, int] = defaultdict(int)
    for r in await session.scalars(select(DetectionStatsHourly)):
        row = daily[day_of(r.bucket_start), r.camera_id, r.type, r.label]
        row[0] += r.detections
        row[1] += r.confidence_sum
        series[r.bucket_start, r.type] += r.detections
    providers: dict[Any, list[Any]] = defaultdict(lambda: [0] * len(PROVIDER_FIGURES))
    for p in await session.scalars(select(ProviderStatsHourly)):
        key = (day_of(p.bucket_start), p.camera_id, p.provider)
        providers[key] = [a + getattr(p, c) for a, c in zip(providers[key], PROVIDER_FIGURES,
                                                           strict=True)]
    return ({k: (n, round(total, 9)) for k, (n, total) in daily.items()},
            {k: [round(v, 9) for v in values] for k, values in providers.items()},
            dict(series))


async def stored_coarse(session: AsyncSession) -> Tables:
    daily = {(r.day, r.camera_id, r.type, r.label): (r.detections, round(r.confidence_sum, 9))
             for r in await session.scalars(select(DetectionStatsDaily))}
    providers = {(p.day, p.camera_id, p.provider):
                 [round(getattr(p, c), 9) for c in PROVIDER_FIGURES]
                 for p in await session.scalars(select(ProviderStatsDaily))}
    series = {(s.bucket_start, s.type): s.detections
              for s in await session.scalars(select(DetectionSeriesHourly))}
    return daily, providers, series
