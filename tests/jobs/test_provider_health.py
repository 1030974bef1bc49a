"""The provider health check (`check_providers`) on SQLite and PostgreSQL, against a real
DeepStack-format server that can be switched off: it opens and closes the circuit breakers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from framewatch.core.database import utcnow
from framewatch.models import DetectionEventLog, DetectionProviderConfig, JobRun, ProviderHealth
from framewatch.providers.health import check_providers
from framewatch.queue.jobs import job_named, run_job
from tests.api_fixtures import Api, make_settings, start_api
from tests.queue.scenario import event_types, flaky_provider_body
from tests.support.flaky_provider import FlakyProvider
from tests.support.servers import serve_app

QUIET = {"provider_check_seconds": 3600, "stats_interval_seconds": 3600,
         "cleanup_interval_seconds": 3600}
BREAKER_EVENTS = ("provider.down", "provider.recovered")


@pytest.fixture
def flaky() -> Iterator[tuple[FlakyProvider, str]]:
    provider = FlakyProvider(seed=5)
    with serve_app(provider.app()) as url:
        yield provider, url


@asynccontextmanager
async def running_api(tmp_path: Path, url: str, provider_url: str) -> AsyncIterator[Api]:
    """The app with the flaky server as its default provider `flaky`, the only one enabled."""
    apps = start_api(make_settings(tmp_path, url, **QUIET))
    api = await anext(apps)
    try:
        response = await api.client.post("/api/v1/providers", headers=api.auth("admin"),
                                          json=flaky_provider_body(provider_url))
        assert response.status_code == 201, response.text
        async with api.runtime.session_factory() as session:
            # The seeded built-in provider would be checked too (loading its model).
            await session.execute(update(DetectionProviderConfig)
                                  .where(DetectionProviderConfig.name == "builtin")
                                  .values(enabled=False))
            await session.commit()
        yield api
    finally:
        await anext(apps, None)


async def breaker_events(api: Api) -> list[tuple[str, str | None]]:
    async with api.runtime.session_factory() as session:
        rows = await session.execute(
            select(DetectionEventLog.event_type, DetectionEventLog.provider)
            .where(DetectionEventLog.event_type.in_(BREAKER_EVENTS))
            .order_by(DetectionEventLog.id))
        return [(kind, provider) for kind, provider in rows]


async def health(api: Api) -> dict[str, ProviderHealth]:
    async with api.runtime.session_factory() as session:
        return {row.provider: row for row in await session.scalars(select(ProviderHealth))}


async def shown_breakers(api: Api) -> dict[str, dict[str, Any]]:
    response = await api.client.get("/api/v1/detections/queue-stats", headers=api.auth("viewer"))
    assert response.status_code == 200, response.text
    return {b["provider"]: b for b in response.json()["breakers"]}


async def test_a_healthy_provider_is_checked_and_no_event_is_written(
    tmp_path: Path, any_database_url: str, flaky: tuple[FlakyProvider, str]
) -> None:
    server, url = flaky
    async with running_api(tmp_path, any_database_url, url) as api:
        before = utcnow()
        report = await check_providers(api.runtime)

        assert report["checked"] == 1 and set(report["providers"]) == {"flaky"}
        assert report["providers"]["flaky"]["ok"] is True
        assert report["providers"]["flaky"]["latency_ms"] >= 0
        assert server.calls == 1 and server.successes == 1  # a real detection call
        assert await breaker_events(api) == []
        row = (await health(api))["flaky"]
        assert row.state == "closed" and row.consecutive_failures == 0
        assert row.last_checked_at is not None and row.last_checked_at >= before
        assert (await shown_breakers(api))["flaky"]["state"] == "closed"


async def test_a_failing_check_opens_the_breaker_at_once_and_a_passing_one_closes_it(
    tmp_path: Path, any_database_url: str, flaky: tuple[FlakyProvider, str]
) -> None:
    server, url = flaky
    async with running_api(tmp_path, any_database_url, url) as api:
        server.down = True
        report = await check_providers(api.runtime)

        assert report["providers"]["flaky"]["ok"] is False
        assert await breaker_events(api) == [("provider.down", "flaky")]
        row = (await health(api))["flaky"]
        assert row.state == "open" and row.consecutive_failures == 1
        assert row.opened_at is not None and row.open_until is not None
        assert row.last_error is not None and row.last_error.startswith("health check failed")
        shown = (await shown_breakers(api))["flaky"]
        assert shown["state"] == "open" and shown["consecutive_failures"] == 1
        async with api.runtime.session_factory() as session:
            (down,) = await session.scalars(select(DetectionEventLog).where(
                DetectionEventLog.event_type == "provider.down"))
        assert down.severity == "error" and down.payload["consecutive_failures"] == 1

        # Still down: the breaker stays open, with no second event.
        assert (await check_providers(api.runtime))["providers"]["flaky"]["ok"] is False
        assert await breaker_events(api) == [("provider.down", "flaky")]
        assert (await health(api))["flaky"].consecutive_failures == 2

        server.down = False
        report = await check_providers(api.runtime)

        assert report["providers"]["flaky"]["ok"] is True
        assert await breaker_events(api) == [("provider.down", "flaky"),
                                             ("provider.recovered", "flaky")]
        row = (await health(api))["flaky"]
        assert row.state == "closed" and row.consecutive_failures == 0
        assert row.open_until is None and row.last_success_at is not None
        assert (await shown_breakers(api))["flaky"]["state"] == "closed"

        # Healthy again and again: nothing more written.
        await check_providers(api.runtime)
        assert len(await breaker_events(api)) == 2
        assert server.calls == 4


async def test_a_disabled_provider_is_not_checked(
    tmp_path: Path, any_database_url: str, flaky: tuple[FlakyProvider, str]
) -> None:
    server, url = flaky
    async with running_api(tmp_path, any_database_url, url) as api:
        body = flaky_provider_body(url, name="spare", is_default=False, enabled=False)
        response = await api.client.post("/api/v1/providers", json=body,
                                          headers=api.auth("admin"))
        assert response.status_code == 201, response.text
        server.down = True

        report = await check_providers(api.runtime)

        assert report["checked"] == 1 and set(report["providers"]) == {"flaky"}
        assert server.calls == 1
        assert set(await health(api)) == {"flaky"}
        assert await breaker_events(api) == [("provider.down", "flaky")]


async def test_a_configuration_that_cannot_be_used_is_reported_failing_without_raising(
    tmp_path: Path, any_database_url: str, flaky: tuple[FlakyProvider, str]
) -> None:
    server, url = flaky
    async with running_api(tmp_path, any_database_url, url) as api:
        async with api.runtime.session_factory() as session:
            session.add_all([
                # Stored by an older version, or edited in the database by hand.
                DetectionProviderConfig(name="no-url", kind="deepstack", base_url=None,
                                        detection_types=["person"], options={}),
                DetectionProviderConfig(name="retired-kind", kind="doesnotexist",
                                        base_url=url, detection_types=["person"], options={}),
                DetectionProviderConfig(name="bad-option", kind="deepstack", base_url=url,
                                        detection_types=["person"],
                                        options={"retry_backoff_seconds": "soon"}),
                # Its key was encrypted with another FRAMEWATCH_SECRET_KEY.
                DetectionProviderConfig(name="old-key", kind="deepstack", base_url=url,
                                        detection_types=["person"], options={},
                                        api_key_encrypted=b"gAAAAAnot-a-valid-token"),
            ])
            await session.commit()

        report = await check_providers(api.runtime)

        assert report["checked"] == 5
        assert {name: r["ok"] for name, r in report["providers"].items()} == {
            "flaky": True, "no-url": False, "retired-kind": False, "bad-option": False,
            "old-key": False}
        assert server.calls == 1  # only `flaky` reached the server
        rows = await health(api)
        assert rows["flaky"].state == "closed"
        for name in ("no-url", "retired-kind", "bad-option", "old-key"):
            assert rows[name].state == "open" and rows[name].last_error
        assert "base_url is required" in (rows["no-url"].last_error or "")
        assert "unknown provider kind" in (rows["retired-kind"].last_error or "")
        assert sorted(await breaker_events(api)) == sorted(
            ("provider.down", name)
            for name in ("no-url", "retired-kind", "bad-option", "old-key"))


async def test_run_job_records_when_the_check_ran_and_what_it_found(
    tmp_path: Path, any_database_url: str, flaky: tuple[FlakyProvider, str]
) -> None:
    server, url = flaky
    async with running_api(tmp_path, any_database_url, url) as api:
        job = job_named("test_detection_provider")
        before = utcnow()
        report = await run_job(api.runtime, job)
        after = utcnow()

        async with api.runtime.session_factory() as session:
            run = await session.get(JobRun, "test_detection_provider")
        assert run is not None
        assert run.last_started_at is not None and run.last_finished_at is not None
        assert before <= run.last_started_at <= run.last_finished_at <= after
        assert run.last_result == report
        assert run.last_result["checked"] == 1
        assert run.last_result["providers"]["flaky"]["ok"] is True

        server.down = True
        second = await run_job(api.runtime, job)
        async with api.runtime.session_factory() as session:
            again = await session.get(JobRun, "test_detection_provider")
        assert again is not None and again.last_result == second
        assert second["providers"]["flaky"]["ok"] is False
        assert again.last_started_at is not None and again.last_started_at >= after
        assert await event_types_of(api) == ["provider.down"]


async def event_types_of(api: Api) -> list[str]:
    async with api.runtime.session_factory() as session:
        return await event_types(session, *BREAKER_EVENTS)


async def test_the_builtin_detector_is_checked_only_while_something_uses_it(
    tmp_path: Path, sqlite_url: str, flaky: tuple[FlakyProvider, str]
) -> None:
    apps = start_api(make_settings(tmp_path, sqlite_url, **QUIET))
    api = await anext(apps)
    try:
        # The seeded built-in detector stops being the default: nothing uses it.
        response = await api.client.post("/api/v1/providers", headers=api.auth("admin"),
                                          json=flaky_provider_body(flaky[1]))
        assert response.status_code == 201, response.text
        unused = await check_providers(api.runtime)
        assert unused["checked"] == 1 and set(unused["providers"]) == {"flaky"}

        async with api.runtime.session_factory() as session:
            builtin_id = await session.scalar(select(DetectionProviderConfig.id)
                                              .where(DetectionProviderConfig.name == "builtin"))
        response = await api.client.post("/api/v1/cameras", headers=api.auth("admin"),
                                         json={"id": "lobby", "name": "Lobby",
                                               "provider_id": builtin_id})
        assert response.status_code == 201, response.text
        used = await check_providers(api.runtime)
        assert set(used["providers"]) == {"builtin", "flaky"}
        assert used["providers"]["builtin"]["ok"] is True
    finally:
        await anext(apps, None)
