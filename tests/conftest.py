"""Fixtures: real databases (SQLite always; PostgreSQL and Redis when configured), real apps.

PostgreSQL and Redis tests run when FRAMEWATCH_TEST_DATABASE_URL / FRAMEWATCH_TEST_REDIS_URL are
set, and then fail if the service is unreachable; unset, they skip saying how to enable them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from framewatch.core import migrate
from framewatch.core.database import create_engine

DATA = Path(__file__).parent / "data"
PG_ENV = "FRAMEWATCH_TEST_DATABASE_URL"
REDIS_ENV = "FRAMEWATCH_TEST_REDIS_URL"
AMQP_ENV = "FRAMEWATCH_TEST_AMQP_URL"
TABLES = ("detections", "detection_processing_queue", "frames", "cameras",
          "detection_provider_configs", "detection_event_logs", "api_keys", "provider_health",
          "queue_workers", "detection_stats_hourly", "provider_stats_hourly",
          "detection_stats_daily", "provider_stats_daily", "detection_series_hourly", "job_runs",
          "persons", "person_faces", "person_subjects", "gallery_version",
          "webhook_subscriptions", "webhook_deliveries")


def pytest_report_header() -> list[str]:
    return [f"{PG_ENV}={'set' if os.environ.get(PG_ENV) else 'unset (PostgreSQL tests skip)'}",
            f"{REDIS_ENV}={'set' if os.environ.get(REDIS_ENV) else 'unset (Redis tests skip)'}"]


def postgres_url_or_skip() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"PostgreSQL tests need {PG_ENV}=postgresql+asyncpg://user@host/db "
                    "(`.ci/run` sets it)")
    return url


def redis_url_or_skip() -> str:
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"Redis tests need {REDIS_ENV}=redis://127.0.0.1:6379/15 (`.ci/run` sets it)")
    return url


def amqp_url_or_skip() -> str:
    url = os.environ.get(AMQP_ENV)
    if not url:
        pytest.skip(f"RabbitMQ tests need {AMQP_ENV}=amqp://guest:guest@127.0.0.1:5672// "
                    "(`.ci/run` sets it)")
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating each time would be slow)."""
    path = tmp_path_factory.mktemp("template") / "framewatch.db"

    async def build() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        await migrate.upgrade(engine)
        await engine.dispose()

    asyncio.run(build())
    return path


@pytest.fixture(scope="session")
def postgres_migrated() -> str:
    """The test PostgreSQL database, emptied and migrated once per session."""
    url = postgres_url_or_skip()

    async def build() -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as connection:
                await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                await connection.execute(text("CREATE SCHEMA public"))
            await migrate.upgrade(engine)
        except OSError as exc:
            raise RuntimeError(f"{PG_ENV} is set but PostgreSQL is unreachable: {exc}") from exc
        finally:
            await engine.dispose()

    asyncio.run(build())
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        yield sqlite_copy(request, tmp_path)
    else:
        yield postgres_emptied(request)


@pytest.fixture
def sqlite_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return sqlite_copy(request, tmp_path)


def sqlite_copy(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    template: Path = request.getfixturevalue("sqlite_template")
    target = tmp_path / "framewatch.db"
    shutil.copy(template, target)
    return f"sqlite+aiosqlite:///{target}"


def postgres_emptied(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("postgres_migrated")

    async def empty() -> None:
        engine = create_engine(url)
        async with engine.begin() as connection:
            await connection.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        await engine.dispose()

    asyncio.run(empty())
    return url


@pytest.fixture
async def engine(any_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(any_database_url)
    yield engine
    await engine.dispose()


def frame_bytes(name: str) -> bytes:
    return (DATA / name).read_bytes()
