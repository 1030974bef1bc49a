"""Overload is a 503 the client can act on, never a 500: when every database connection of the
pool stays busy past FRAMEWATCH_DATABASE_POOL_TIMEOUT_SECONDS, requests are answered 503
`database_busy` with Retry-After, and the API recovers as soon as a connection is free."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.api_fixtures import make_settings, start_api


async def test_a_pool_that_stays_busy_gives_503_with_retry_after(
    tmp_path: Path, sqlite_url: str
) -> None:
    settings = make_settings(tmp_path, sqlite_url, database_pool_size=1,
                             database_pool_timeout_seconds=0.5, auth_cache_seconds=0)
    async for api in start_api(settings):
        assert (await api.client.get("/api/v1/cameras", headers=api.auth("viewer"))
                ).status_code == 200
        async with AsyncExitStack() as held:
            # Both connections the pool may open (1 kept, 1 for bursts), busy elsewhere.
            for _ in range(2):
                connection = await held.enter_async_context(api.runtime.engine.connect())
                await connection.execute(text("SELECT 1"))
            busy = await api.client.get("/api/v1/cameras", headers=api.auth("viewer"))
        assert busy.status_code == 503, busy.text
        assert busy.json()["error"] == "database_busy"
        assert busy.headers["retry-after"] == "1"

        again = await api.client.get("/api/v1/cameras", headers=api.auth("viewer"))
        assert again.status_code == 200 and again.json() == []


async def test_a_busy_pool_skips_the_detector_warm_up_and_does_not_break_shutdown(
    tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The warm-up reads the providers in a task of its own; when the pool is busy then (seen
    under load in CI) it is skipped with a warning — the weights load on first use — instead
    of failing the app's shutdown, which awaits it."""
    settings = make_settings(tmp_path, sqlite_url, database_pool_size=1,
                             database_pool_timeout_seconds=0.3)
    async for api in start_api(settings):
        async with AsyncExitStack() as held:
            for _ in range(2):
                connection = await held.enter_async_context(api.runtime.engine.connect())
                await connection.execute(text("SELECT 1"))
            with caplog.at_level(logging.WARNING, logger="framewatch.runtime"):
                await api.runtime.warm_up_detector_if_used()  # returns, does not raise
        assert any("detector warm-up skipped" in record.getMessage()
                   for record in caplog.records)
        assert (await api.client.get("/api/v1/cameras", headers=api.auth("viewer"))
                ).status_code == 200
