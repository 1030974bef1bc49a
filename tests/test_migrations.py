"""Migrations run up and down on both databases, and match the models exactly; 0008 fills the
daily roll-ups from the hourly rows already stored."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from framewatch.core import migrate
from framewatch.core.database import create_engine, create_session_factory, utcnow
from framewatch.models import Base, DetectionStatsHourly, ProviderStatsHourly
from framewatch.stats.queries import statistics
from framewatch.stats.rollup import recompute_day
from tests.stats.roll_ups import empty_coarse_roll_ups, expected_coarse, stored_coarse

EXPECTED_TABLES = {
    "alembic_version", "api_keys", "cameras", "detection_event_logs",
    "detection_processing_queue", "detection_provider_configs", "detections", "frames",
    "detection_stats_hourly", "job_runs", "provider_health", "provider_stats_hourly",
    "detection_stats_daily", "provider_stats_daily", "detection_series_hourly",
    "queue_workers", "persons", "person_faces", "person_subjects", "gallery_version",
    "webhook_subscriptions", "webhook_deliveries",
}


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))


async def test_head_matches_the_models(engine: AsyncEngine) -> None:
    assert await migrate.current_revision(engine) == migrate.head_revision()
    async with engine.connect() as connection:
        differences = await connection.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
        )
    assert differences == []


async def test_down_to_base_and_up_again(engine: AsyncEngine) -> None:
    assert await table_names(engine) == EXPECTED_TABLES
    await migrate.downgrade(engine, "base")
    assert await table_names(engine) == {"alembic_version"}
    assert await migrate.current_revision(engine) is None
    await migrate.upgrade(engine)
    assert await table_names(engine) == EXPECTED_TABLES
    assert await migrate.current_revision(engine) == migrate.head_revision()


async def test_0008_fills_the_daily_roll_ups_from_the_hourly_rows(any_database_url: str) -> None:
    """Hourly rows stored at 0007 are summed by UTC day at the upgrade, in a PostgreSQL session
    whose time zone (India, +05:30) puts 23:00 UTC on the next day."""
    extra: dict[str, Any] = {}
    if any_database_url.startswith("postgresql"):
        extra["connect_args"] = {"server_settings": {"timezone": "Asia/Kolkata"}}
    engine = create_engine(any_database_url, **extra)
    factory = create_session_factory(engine)
    hour, day = timedelta(hours=1), timedelta(days=1)
    d = (utcnow() - 5 * day).replace(hour=0, minute=0, second=0, microsecond=0)
    try:
        await migrate.downgrade(engine, "0007")
        async with factory() as session:
            for at, camera, kind, label, count, confidence in [
                (d, "gate", "person", "person", 2, 1.5),
                (d + 18 * hour, "gate", "person", "person", 3, 2.25),
                (d + 23 * hour, "gate", "vehicle", "car", 1, 0.5),
                (d + 23 * hour, "yard", "vehicle", "car", 4, 3.0),
                (d + day, "gate", "person", "person", 5, 4.5),
                (d + day + 5 * hour, "yard", "face", "face", 1, 0.75),
            ]:
                session.add(DetectionStatsHourly(bucket_start=at, camera_id=camera, type=kind,
                                                 label=label, detections=count,
                                                 confidence_sum=confidence))
            for at, camera, latencies, errors in [
                (d + 18 * hour, "gate", [1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0], 1),
                (d + 23 * hour, "gate", [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1], 0),
                (d + day, "gate", [4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 2),
            ]:
                session.add(ProviderStatsHourly(
                    bucket_start=at, camera_id=camera, provider="flaky", frames=sum(latencies),
                    errors=errors, dead_letters=1, latency_ms_sum=100.0 * sum(latencies),
                    latency_histogram=latencies))
            await session.commit()

        await migrate.upgrade(engine)

        async with factory() as session:
            daily, providers, series = await stored_coarse(session)
            assert (daily, providers, series) == await expected_coarse(session)
            assert daily == {
                (d, "gate", "person", "person"): (5, 3.75),
                (d, "gate", "vehicle", "car"): (1, 0.5),
                (d, "yard", "vehicle", "car"): (4, 3.0),
                (d + day, "gate", "person", "person"): (5, 4.5),
                (d + day, "yard", "face", "face"): (1, 0.75),
            }
            assert providers == {
                (d, "gate", "flaky"): [5, 1, 2, 500.0, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                (d + day, "gate", "flaky"): [4, 2, 1, 400.0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            }
            assert series == {(d, "person"): 2, (d + 18 * hour, "person"): 3,
                              (d + 23 * hour, "vehicle"): 5, (d + day, "person"): 5,
                              (d + day + 5 * hour, "face"): 1}
            if any_database_url.startswith("sqlite"):
                # Written as SQLAlchemy writes timestamps, so that text comparisons hold.
                days = set((await session.execute(
                    text("SELECT day FROM detection_stats_daily UNION "
                         "SELECT day FROM provider_stats_daily"))).scalars())
                assert days == {f"{d:%Y-%m-%d} 00:00:00.000000",
                                f"{d + day:%Y-%m-%d} 00:00:00.000000"}
            # The job, recomputing those days, writes the same rows over them (no duplicates).
            for moment in (d, d + day):
                await recompute_day(session, moment)
            await session.commit()
            assert await stored_coarse(session) == (daily, providers, series)
            answer = await statistics(session, since=d, until=d + 2 * day, camera_id=None,
                                      bucket="day", cache={})
            assert answer.detections == 16
            assert [(t.type, t.detections) for t in answer.by_type] == [
                ("person", 10), ("vehicle", 5), ("face", 1)]
            assert [(p.bucket_start, p.detections) for p in answer.series] == [
                (d, 10), (d + day, 6)]
            assert [(p.frames, p.errors, p.dead_letters) for p in answer.providers] == [
                (9, 3, 3)]
    finally:
        await migrate.upgrade(engine)
        await empty_coarse_roll_ups(factory)
        async with engine.begin() as connection:
            for table in ("detection_stats_hourly", "provider_stats_hourly"):
                await connection.execute(text(f"DELETE FROM {table}"))
        await engine.dispose()


async def test_0008_down_drops_the_daily_roll_ups(engine: AsyncEngine) -> None:
    await migrate.downgrade(engine, "0007")
    try:
        tables = await table_names(engine)
        assert tables == EXPECTED_TABLES - {"detection_stats_daily", "provider_stats_daily",
                                            "detection_series_hourly"}
    finally:
        await migrate.upgrade(engine)
    assert await table_names(engine) == EXPECTED_TABLES
