"""The statistics roll-up (`aggregate_stats`) on SQLite and PostgreSQL: its hourly rows equal the
same counts computed here from the raw rows, its daily and series rows the sums of the hourly
rows, and later runs recompute only the hours touched and their days."""

from __future__ import annotations

import bisect
import dataclasses
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from framewatch.core.database import create_engine, create_session_factory, utcnow
from framewatch.models import (
    Detection,
    DetectionEventLog,
    DetectionStatsHourly,
    Frame,
    JobRun,
    ProviderStatsHourly,
)
from framewatch.models.stats import LATENCY_BUCKETS_MS
from framewatch.queue.jobs import job_named, run_job
from framewatch.stats.rollup import JOB_NAME, aggregate_stats
from tests.api.helpers import add_camera, post_frame
from tests.api_fixtures import Api, make_settings, start_api
from tests.queue.scenario import flaky_provider_body, small_frame
from tests.stats.roll_ups import empty_coarse_roll_ups, expected_coarse, stored_coarse
from tests.support.flaky_provider import FlakyProvider
from tests.support.servers import serve_app

QUIET = {"provider_check_seconds": 3600, "stats_interval_seconds": 3600,
         "cleanup_interval_seconds": 3600,
         # A frame the provider failed on waits an hour: no worker retries during a test.
         "queue_retry_base_seconds": 3600, "queue_retry_max_seconds": 3600}
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
ERRORS = ("provider.error", "queue.retry", "queue.dead_letter")


def floor_hour(value: datetime) -> datetime:
    return value.replace(minute=0, second=0, microsecond=0)


def days_of(*hours: datetime) -> int:
    return len({hour.date() for hour in hours})


@pytest.fixture
def flaky() -> Iterator[tuple[FlakyProvider, str]]:
    provider = FlakyProvider(seed=3)
    with serve_app(provider.app()) as url:
        yield provider, url


@asynccontextmanager
async def running_api(tmp_path: Path, url: str, provider_url: str) -> AsyncIterator[Api]:
    """The app with the flaky provider as default and cameras `gate` and `yard`."""
    apps = start_api(make_settings(tmp_path, url, **QUIET))
    api = await anext(apps)
    await empty_coarse_roll_ups(api.runtime.session_factory)
    try:
        response = await api.client.post("/api/v1/providers", headers=api.auth("admin"),
                                          json=flaky_provider_body(provider_url))
        assert response.status_code == 201, response.text
        await add_camera(api, "gate")
        await add_camera(api, "yard")
        yield api
    finally:
        await empty_coarse_roll_ups(api.runtime.session_factory)
        await anext(apps, None)


async def send(api: Api, index: int, camera: str, captured_at: datetime) -> int:
    response = await post_frame(api, small_frame(index), camera_id=camera,
                                captured_at=captured_at.isoformat())
    assert response.status_code == 200, response.text
    assert len(response.json()["detections"]) == 1  # the flaky provider finds one person
    frame_id: int = response.json()["frame_id"]
    return frame_id


def detection(frame_id: int, camera: str, kind: str, label: str, confidence: float,
              at: datetime, created_at: datetime | None = None) -> Detection:
    return Detection(frame_id=frame_id, camera_id=camera, provider_name="flaky", model="m",
                     latency_ms=1.0, type=kind, label=label, confidence=confidence,
                     x_min=1, y_min=1, x_max=9, y_max=9, x_min_norm=0.01, y_min_norm=0.02,
                     x_max_norm=0.14, y_max_norm=0.19, detected_at=at,
                     created_at=created_at or at)


def error_event(kind: str, camera: str | None, provider: str | None,
                at: datetime) -> DetectionEventLog:
    return DetectionEventLog(event_type=kind, severity="error", camera_id=camera,
                             provider=provider, message=kind, created_at=at)


async def expected_tables(api: Api) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """The roll-ups computed in Python from every raw row."""
    async with api.runtime.session_factory() as session:
        detections = list(await session.scalars(select(Detection)))
        frames = list(await session.scalars(select(Frame)))
        events = list(await session.scalars(select(DetectionEventLog)))
    counts: dict[Any, list[Any]] = defaultdict(lambda: [0, 0.0])
    for d in detections:
        count = counts[floor_hour(d.detected_at), d.camera_id, d.type, d.label]
        count[0] += 1
        count[1] += d.confidence
    providers: dict[Any, dict[str, Any]] = defaultdict(lambda: {
        "frames": 0, "errors": 0, "dead_letters": 0, "latency_ms_sum": 0.0,
        "latency_histogram": [0] * (len(LATENCY_BUCKETS_MS) + 1)})
    for f in frames:
        if f.processed_at and f.provider_name and f.latency_ms is not None:
            row = providers[floor_hour(f.processed_at), f.camera_id, f.provider_name]
            row["frames"] += 1
            row["latency_ms_sum"] += f.latency_ms
            row["latency_histogram"][bisect.bisect_left(LATENCY_BUCKETS_MS, f.latency_ms)] += 1
    for e in events:
        if e.event_type in ERRORS and e.camera_id and e.provider:
            row = providers[floor_hour(e.created_at), e.camera_id, e.provider]
            row["errors"] += 1
            row["dead_letters"] += e.event_type == "queue.dead_letter"
    return ({k: (n, pytest.approx(total)) for k, (n, total) in counts.items()},
            {k: {**v, "latency_ms_sum": pytest.approx(v["latency_ms_sum"])}
             for k, v in providers.items()})


async def stored_tables(api: Api) -> tuple[dict[Any, Any], dict[Any, Any]]:
    async with api.runtime.session_factory() as session:
        counts = {(r.bucket_start, r.camera_id, r.type, r.label): (r.detections, r.confidence_sum)
                  for r in await session.scalars(select(DetectionStatsHourly))}
        providers = {(r.bucket_start, r.camera_id, r.provider): {
            "frames": r.frames, "errors": r.errors, "dead_letters": r.dead_letters,
            "latency_ms_sum": r.latency_ms_sum, "latency_histogram": r.latency_histogram}
            for r in await session.scalars(select(ProviderStatsHourly))}
    return counts, providers


async def coarse_tables(api: Api) -> Any:
    async with api.runtime.session_factory() as session:
        return await stored_coarse(session)


async def assert_coarse_rows_sum_the_hourly_rows(api: Api) -> None:
    async with api.runtime.session_factory() as session:
        assert await stored_coarse(session) == await expected_coarse(session)


async def build_history(api: Api, flaky: FlakyProvider, h0: datetime) -> list[int]:
    """Frames and detections over three hours (h0, h0+1h, h0+5h) on two cameras, with provider
    errors; everything dated more than the roll-up's 5-minute lag ago."""
    frames = [
        await send(api, 1, "gate", h0),  # exactly on the hour
        await send(api, 2, "gate", h0 + HOUR - timedelta(microseconds=1)),
        await send(api, 3, "gate", h0 + HOUR + timedelta(minutes=10)),
        await send(api, 4, "yard", h0 + HOUR + timedelta(minutes=20)),
        await send(api, 5, "yard", h0 + 5 * HOUR + timedelta(minutes=30)),
    ]
    flaky.down = True
    failed = await post_frame(api, small_frame(6), camera_id="yard")
    assert failed.status_code == 503, failed.text
    flaky.down = False
    # When each frame was processed and how long the provider took: bucket edges included.
    processed = [(h0 + timedelta(minutes=1), 10.0), (h0 + HOUR, 10.5),
                 (h0 + HOUR + timedelta(minutes=30), 250.0),
                 (h0 + HOUR + timedelta(minutes=40), 20000.0),
                 (h0 + 6 * HOUR - timedelta(seconds=1), 10000.0)]
    async with api.runtime.session_factory() as session:
        for frame_id, (at, latency) in zip(frames, processed, strict=True):
            await session.execute(update(Frame).where(Frame.id == frame_id)
                                  .values(processed_at=at, latency_ms=latency))
        await session.execute(update(Detection).values(created_at=Detection.detected_at))
        await session.execute(update(DetectionEventLog)
                              .where(DetectionEventLog.event_type == "provider.error")
                              .values(created_at=h0 + HOUR + timedelta(minutes=5)))
        session.add_all([
            detection(frames[0], "gate", "vehicle", "car", 0.75, h0 + timedelta(minutes=30)),
            detection(frames[0], "gate", "vehicle", "car", 0.5, h0 + timedelta(minutes=31)),
            detection(frames[2], "gate", "person", "person", 0.6, h0 + 2 * HOUR - timedelta(
                seconds=1)),
            detection(frames[4], "yard", "dog", "dog", 0.45, h0 + 5 * HOUR),
            detection(frames[3], "yard", "vehicle", "truck", 0.8, h0 + HOUR),
            error_event("queue.retry", "gate", "flaky", h0 + HOUR + timedelta(minutes=1)),
            error_event("queue.dead_letter", "yard", "flaky", h0 + 5 * HOUR),
            # No frame of the yard was processed in h0: a row with errors only.
            error_event("queue.dead_letter", "yard", "flaky", h0 + timedelta(minutes=59)),
            error_event("queue.retry", "gate", None, h0 + HOUR),  # no provider: not counted
            error_event("frame.processed", "gate", "flaky", h0 + HOUR),  # not an error
        ])
        await session.commit()
    return frames


async def test_hourly_rows_equal_the_raw_rows_grouped_by_hour(
    tmp_path: Path, any_database_url: str, flaky: tuple[FlakyProvider, str]
) -> None:
    h0 = floor_hour(utcnow() - timedelta(days=3))
    async with running_api(tmp_path, any_database_url, flaky[1]) as api:
        await build_history(api, flaky[0], h0)

        report = await aggregate_stats(api.runtime)

        assert report == {"hours_recomputed": 3, "since": None,
                          "days_recomputed": days_of(h0, h0 + HOUR, h0 + 5 * HOUR)}
        await assert_coarse_rows_sum_the_hourly_rows(api)
        expected = await expected_tables(api)
        stored = await stored_tables(api)
        assert stored == expected
        counts, providers = stored
        # Spot checks against values chosen above, not only against the Python GROUP BY.
        assert counts[h0, "gate", "person", "person"] == (2, pytest.approx(1.8))
        assert counts[h0, "gate", "vehicle", "car"] == (2, pytest.approx(1.25))
        assert counts[h0 + HOUR, "yard", "vehicle", "truck"][0] == 1
        assert counts[h0 + 5 * HOUR, "yard", "dog", "dog"][0] == 1
        assert providers[h0 + HOUR, "gate", "flaky"] == {
            "frames": 2, "errors": 1, "dead_letters": 0,
            "latency_ms_sum": pytest.approx(260.5),
            "latency_histogram": [0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]}
        assert providers[h0 + HOUR, "yard", "flaky"]["latency_histogram"][-1] == 1
        assert providers[h0 + HOUR, "yard", "flaky"]["errors"] == 1  # the 503 above
        assert providers[h0, "yard", "flaky"] == {
            "frames": 0, "errors": 1, "dead_letters": 1, "latency_ms_sum": 0.0,
            "latency_histogram": [0] * (len(LATENCY_BUCKETS_MS) + 1)}
        for row in providers.values():
            assert sum(row["latency_histogram"]) == row["frames"]
        assert sum(row["frames"] for row in providers.values()) == 5
        assert sum(row["errors"] for row in providers.values()) == 4
        assert sum(row["dead_letters"] for row in providers.values()) == 2


async def test_later_runs_recompute_only_the_hours_touched(
    tmp_path: Path, any_database_url: str, flaky: tuple[FlakyProvider, str]
) -> None:
    h0 = floor_hour(utcnow() - timedelta(days=3))
    async with running_api(tmp_path, any_database_url, flaky[1]) as api:
        frames = await build_history(api, flaky[0], h0)
        assert (await aggregate_stats(api.runtime))["hours_recomputed"] == 3
        first = await stored_tables(api)

        second = await aggregate_stats(api.runtime)
        assert second["hours_recomputed"] == 0 and second["since"] is not None
        assert await stored_tables(api) == first

        # A detection reported late into an old hour: created now, seen in h0 + 1h.
        async with api.runtime.session_factory() as session:
            session.add(detection(frames[2], "gate", "person", "person", 0.5,
                                  h0 + HOUR + timedelta(minutes=45), created_at=utcnow()))
            await session.commit()
        assert (await aggregate_stats(api.runtime))["hours_recomputed"] == 1
        counts, providers = await stored_tables(api)
        key = (h0 + HOUR, "gate", "person", "person")
        assert counts[key] == (3, pytest.approx(first[0][key][1] + 0.5))
        assert {k: v for k, v in counts.items() if k != key} == {
            k: v for k, v in first[0].items() if k != key}
        assert providers == first[1]
        assert await stored_tables(api) == await expected_tables(api)
        await assert_coarse_rows_sum_the_hourly_rows(api)


async def test_deleted_detections_are_corrected_by_recomputing(
    tmp_path: Path, any_database_url: str, flaky: tuple[FlakyProvider, str]
) -> None:
    h0 = floor_hour(utcnow() - timedelta(days=3))
    async with running_api(tmp_path, any_database_url, flaky[1]) as api:
        frames = await build_history(api, flaky[0], h0)
        await aggregate_stats(api.runtime)
        async with api.runtime.session_factory() as session:
            await session.execute(delete(Detection).where(Detection.label == "car"))
            # Touch h0 with a new detection: the hour is recomputed, not incremented.
            session.add(detection(frames[1], "gate", "person", "person", 0.7,
                                  h0 + timedelta(minutes=5), created_at=utcnow()))
            await session.commit()
        assert (await aggregate_stats(api.runtime))["hours_recomputed"] == 1
        counts, _ = await stored_tables(api)
        assert (h0, "gate", "vehicle", "car") not in counts
        assert counts[h0, "gate", "person", "person"] == (3, pytest.approx(2.5))
        assert await stored_tables(api) == await expected_tables(api)
        await assert_coarse_rows_sum_the_hourly_rows(api)

        # Deletions alone touch no hour; without its cursor the job recomputes every hour.
        async with api.runtime.session_factory() as session:
            await session.execute(delete(Detection).where(Detection.label == "truck"))
            await session.execute(delete(JobRun).where(JobRun.name == JOB_NAME))
            await session.commit()
        assert (await aggregate_stats(api.runtime))["hours_recomputed"] == 3
        counts, _ = await stored_tables(api)
        assert (h0 + HOUR, "yard", "vehicle", "truck") not in counts
        assert await stored_tables(api) == await expected_tables(api)
        await assert_coarse_rows_sum_the_hourly_rows(api)
        # And once more: the same tables (idempotent).
        before = await stored_tables(api)
        async with api.runtime.session_factory() as session:
            await session.execute(delete(JobRun).where(JobRun.name == JOB_NAME))
            await session.commit()
        coarse_before = await coarse_tables(api)
        await aggregate_stats(api.runtime)
        assert await stored_tables(api) == before
        assert await coarse_tables(api) == coarse_before


async def test_hours_are_utc_whatever_the_database_session_time_zone(
    tmp_path: Path, any_database_url: str, flaky: tuple[FlakyProvider, str]
) -> None:
    """A PostgreSQL server set to a half-hour time zone (India) still buckets by UTC hour."""
    h0 = floor_hour(utcnow() - timedelta(days=2))
    async with running_api(tmp_path, any_database_url, flaky[1]) as api:
        await send(api, 1, "gate", h0 + timedelta(minutes=10))
        async with api.runtime.session_factory() as session:
            await session.execute(update(Frame).values(processed_at=h0 + timedelta(minutes=40),
                                                       latency_ms=30.0))
            await session.execute(update(Detection).values(created_at=Detection.detected_at))
            await session.commit()
        extra: dict[str, Any] = {}
        if any_database_url.startswith("postgresql"):
            extra["connect_args"] = {"server_settings": {"timezone": "Asia/Kolkata"}}
        engine = create_engine(any_database_url, **extra)
        try:
            runtime = dataclasses.replace(api.runtime, engine=engine,
                                          session_factory=create_session_factory(engine))
            assert (await aggregate_stats(runtime))["hours_recomputed"] == 1
        finally:
            await engine.dispose()
        counts, providers = await stored_tables(api)
        assert counts == {(h0, "gate", "person", "person"): (1, pytest.approx(0.9))}
        assert providers[h0, "gate", "flaky"]["frames"] == 1


async def test_run_job_keeps_the_report_and_the_cursor(
    tmp_path: Path, any_database_url: str, flaky: tuple[FlakyProvider, str]
) -> None:
    h0 = floor_hour(utcnow() - timedelta(days=3))
    async with running_api(tmp_path, any_database_url, flaky[1]) as api:
        await build_history(api, flaky[0], h0)
        before = utcnow()
        report = await run_job(api.runtime, job_named(JOB_NAME))
        after = utcnow()
        async with api.runtime.session_factory() as session:
            run = await session.get(JobRun, JOB_NAME)
        assert run is not None and report == {
            "hours_recomputed": 3, "since": None,
            "days_recomputed": days_of(h0, h0 + HOUR, h0 + 5 * HOUR)}
        assert run.last_result == report
        assert run.last_started_at and run.last_finished_at and run.cursor
        assert before <= run.last_started_at <= run.cursor <= run.last_finished_at <= after


async def test_a_run_recomputes_the_days_of_the_hours_it_recomputes_and_no_other(
    tmp_path: Path, any_database_url: str, flaky: tuple[FlakyProvider, str]
) -> None:
    """History from 22:00 to 03:00 the next day (UTC): two days; then a detection reported late
    into the second day rewrites that day's rows only."""
    x = (utcnow() - timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
    h0 = x + 22 * HOUR
    async with running_api(tmp_path, any_database_url, flaky[1]) as api:
        frames = await build_history(api, flaky[0], h0)
        report = await aggregate_stats(api.runtime)
        assert (report["hours_recomputed"], report["days_recomputed"]) == (3, 2)
        await assert_coarse_rows_sum_the_hourly_rows(api)
        daily, providers, series = first = await coarse_tables(api)
        # 22:00 and 23:00 are day x; 03:00 (h0 + 5 h) is day x + 1.
        assert daily[x, "gate", "person", "person"] == (4, pytest.approx(3.3))
        assert daily[x, "gate", "vehicle", "car"] == (2, pytest.approx(1.25))
        assert daily[x + DAY, "yard", "dog", "dog"] == (1, pytest.approx(0.45))
        assert daily[x + DAY, "yard", "person", "person"] == (1, pytest.approx(0.9))
        assert providers[x, "gate", "flaky"][:4] == [3, 1, 0, pytest.approx(270.5)]
        assert providers[x + DAY, "yard", "flaky"][:3] == [1, 1, 1]
        assert series[h0, "person"] == 2 and series[h0, "vehicle"] == 2
        assert series[h0 + HOUR, "person"] == 3 and series[h0 + HOUR, "vehicle"] == 1

        async with api.runtime.session_factory() as session:
            session.add(detection(frames[4], "yard", "dog", "dog", 0.25,
                                  h0 + 5 * HOUR + timedelta(minutes=50), created_at=utcnow()))
            await session.commit()
        report = await aggregate_stats(api.runtime)
        assert (report["hours_recomputed"], report["days_recomputed"]) == (1, 1)
        await assert_coarse_rows_sum_the_hourly_rows(api)
        daily, providers, series = await coarse_tables(api)
        assert daily[x + DAY, "yard", "dog", "dog"] == (2, pytest.approx(0.7))
        assert series[h0 + 5 * HOUR, "dog"] == 2
        assert {k: v for k, v in daily.items() if k[0] == x} == {
            k: v for k, v in first[0].items() if k[0] == x}
        assert providers == first[1]
