"""Migrations run up and down on both databases, and match the models exactly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from framewatch.core import migrate
from framewatch.models import Base

EXPECTED_TABLES = {
    "alembic_version", "api_keys", "cameras", "detection_event_logs",
    "detection_processing_queue", "detection_provider_configs", "detections", "frames",
    "detection_stats_hourly", "job_runs", "provider_health", "provider_stats_hourly",
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
