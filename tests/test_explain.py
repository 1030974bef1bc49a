"""Query plans on PostgreSQL for the read paths, on a modest data set (20k frames, detections
and events over 100 cameras and four weeks, 20k hourly roll-up rows of each kind and their daily
and series sums).

The SQL is the exact SQL the app issues: each endpoint (and the roll-up job) is called for real
while a `before_cursor_execute` listener records the statements and their parameters, which are
then run again under `EXPLAIN (FORMAT JSON)`. The plans must not scan `detections`,
`detection_event_logs` or `frames` sequentially, and keyset pages must come in index order
(no Sort node).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from framewatch.core.database import create_engine, utcnow
from framewatch.core.pagination import encode_cursor
from framewatch.stats.rollup import JOB_NAME, aggregate_stats
from tests.api_fixtures import Api, make_settings, start_api
from tests.conftest import TABLES, postgres_emptied

pytestmark = pytest.mark.postgres

# A ten-minute live window: the seeded recent frames stay in it for the whole module.
QUIET = {"provider_check_seconds": 3600, "stats_interval_seconds": 3600,
         "cleanup_interval_seconds": 3600, "live_window_seconds": 600}
RAW_TABLES = ("detections", "detection_event_logs", "frames")
HOURLY = ("detection_stats_hourly", "provider_stats_hourly")
DAILY = ("detection_stats_daily", "provider_stats_daily")
ROLL_UPS = (*HOURLY, *DAILY, "detection_series_hourly")
CAMERA = "cam007"

SEED = [
    """INSERT INTO cameras (id, name, enabled, created_at, updated_at)
       SELECT 'cam' || lpad(i::text, 3, '0'), 'Camera ' || i, true, now(), now()
       FROM generate_series(0, 99) AS i""",
    # 20k processed frames round the cameras, one every two minutes back from now (id 20000 is
    # the newest); the newest 20 arrived in the last 20 seconds.
    """INSERT INTO frames (camera_id, sha256, content_type, size_bytes, width, height,
                           storage_path, received_at, status, requested_types, provider_name,
                           model, latency_ms, processed_at)
       SELECT 'cam' || lpad((i % 100)::text, 3, '0'), md5(i::text) || md5(i::text),
              'image/jpeg', 1000, 64, 48, 'x/' || i || '.jpg', t, 'processed', '[]',
              'flaky', 'm', (i % 700)::float, t + interval '1 second'
       FROM generate_series(1, 20000) AS i,
            LATERAL (SELECT CASE WHEN i > 19980 THEN now() - (20000 - i) * interval '1 second'
                                 ELSE now() - (20000 - i) * interval '2 minutes' END AS t) AS s""",
    """INSERT INTO detections (frame_id, camera_id, provider_name, model, latency_ms, type,
                               label, confidence, x_min, y_min, x_max, y_max, x_min_norm,
                               y_min_norm, x_max_norm, y_max_norm, attributes, detected_at,
                               created_at)
       SELECT f.id, f.camera_id, 'flaky', 'm', 5.0,
              CASE WHEN f.id % 100 = 0 THEN 'animal'
                   ELSE (ARRAY['person', 'face', 'vehicle', 'person'])[f.id % 4 + 1] END,
              CASE WHEN f.id % 100 = 0 THEN 'dog'
                   ELSE (ARRAY['person', 'face', 'car', 'person'])[f.id % 4 + 1] END,
              0.5 + (f.id % 50) / 100.0, 1, 1, 9, 9, 0.01, 0.02, 0.14, 0.19, '{}',
              f.received_at, f.received_at
       FROM frames AS f""",
    """INSERT INTO detection_event_logs (event_type, severity, camera_id, provider, message,
                                         payload, created_at, detection_types)
       SELECT (ARRAY['frame.processed', 'frame.processed', 'frame.processed', 'queue.retry',
                     'provider.error', 'camera.updated', 'frame.queued',
                     'queue.dead_letter'])[i % 8 + 1],
              (ARRAY['info', 'info', 'info', 'warning', 'error', 'info', 'warning',
                     'error'])[i % 8 + 1],
              'cam' || lpad((i % 100)::text, 3, '0'), 'flaky', 'event ' || i, '{}',
              now() - (20000 - i) * interval '2 minutes',
              CASE WHEN i % 8 < 3 THEN ',person,' END
       FROM generate_series(1, 20000) AS i""",
    """INSERT INTO detection_stats_hourly (bucket_start, camera_id, type, label, detections,
                                           confidence_sum)
       SELECT date_trunc('hour', now()) - h * interval '1 hour',
              'cam' || lpad(c::text, 3, '0'), 'person', 'person', 3, 2.1
       FROM generate_series(0, 199) AS h, generate_series(0, 99) AS c""",
    """INSERT INTO provider_stats_hourly (bucket_start, camera_id, provider, frames, errors,
                                          dead_letters, latency_ms_sum, latency_bucket_0,
                                          latency_bucket_1, latency_bucket_2, latency_bucket_3,
                                          latency_bucket_4, latency_bucket_5, latency_bucket_6,
                                          latency_bucket_7, latency_bucket_8, latency_bucket_9,
                                          latency_bucket_10)
       SELECT date_trunc('hour', now()) - h * interval '1 hour',
              'cam' || lpad(c::text, 3, '0'), 'flaky', 3, 1, 0, 60.0,
              0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0
       FROM generate_series(0, 199) AS h, generate_series(0, 99) AS c""",
    # Their sums by UTC day and over cameras, as the roll-up job (and migration 0008) writes.
    """INSERT INTO detection_stats_daily
       SELECT date_trunc('day', bucket_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', camera_id,
              type, label, sum(detections), sum(confidence_sum)
       FROM detection_stats_hourly GROUP BY 1, camera_id, type, label""",
    """INSERT INTO provider_stats_daily
       SELECT date_trunc('day', bucket_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', camera_id,
              provider, sum(frames), sum(errors), sum(dead_letters), sum(latency_ms_sum),
              sum(latency_bucket_0), sum(latency_bucket_1), sum(latency_bucket_2),
              sum(latency_bucket_3), sum(latency_bucket_4), sum(latency_bucket_5),
              sum(latency_bucket_6), sum(latency_bucket_7), sum(latency_bucket_8),
              sum(latency_bucket_9), sum(latency_bucket_10)
       FROM provider_stats_hourly GROUP BY 1, camera_id, provider""",
    """INSERT INTO detection_series_hourly
       SELECT bucket_start, type, sum(detections) FROM detection_stats_hourly
       GROUP BY bucket_start, type""",
    # The roll-up ran a minute ago: its next run reads only what is newer.
    f"""INSERT INTO job_runs (name, cursor, last_result)
        VALUES ('{JOB_NAME}', now() - interval '1 minute', '{{}}')""",
]


@dataclass
class Statement:
    sql: str
    parameters: Any


class Recorder:
    """The statements the app's engine sends while `recording` is on."""

    def __init__(self) -> None:
        self.statements: list[Statement] = []
        self.recording = False

    def __call__(self, _conn: Any, _cursor: Any, statement: str, parameters: Any,
                 _context: Any, _many: bool) -> None:
        if self.recording:
            self.statements.append(Statement(statement, parameters))


@pytest.fixture(scope="module")
def seeded_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The test database, emptied, seeded and analysed once for this module."""
    url = postgres_emptied(request)
    # Not (yet) emptied by `postgres_emptied`: emptied here, before and after.
    coarse = [t for t in ROLL_UPS if t not in TABLES]

    async def seed() -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as connection:
                for table in coarse:
                    await connection.execute(text(f"DELETE FROM {table}"))
                for statement in SEED:
                    await connection.execute(text(statement))
            async with engine.connect() as connection:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                await connection.execute(text(f"ANALYZE {', '.join([*TABLES, *coarse])}"))
        finally:
            await engine.dispose()

    async def empty() -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as connection:
                for table in coarse:
                    await connection.execute(text(f"DELETE FROM {table}"))
        finally:
            await engine.dispose()

    asyncio.run(seed())
    yield url
    asyncio.run(empty())


@pytest.fixture
async def seeded(tmp_path: Path, seeded_url: str) -> AsyncIterator[tuple[Api, Recorder]]:
    engine = create_engine(seeded_url)
    try:
        async with engine.begin() as connection:  # each app start creates its test keys
            await connection.execute(text("DELETE FROM api_keys"))
    finally:
        await engine.dispose()
    async for api in start_api(make_settings(tmp_path, seeded_url, **QUIET)):
        recorder = Recorder()
        event.listen(api.runtime.engine.sync_engine, "before_cursor_execute", recorder)
        try:
            yield api, recorder
        finally:
            event.remove(api.runtime.engine.sync_engine, "before_cursor_execute", recorder)


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


Plans = list[tuple[str, dict[str, Any]]]


async def plans_of(api: Api, recorder: Recorder, action: Callable[[], Awaitable[Any]],
                   *, inserts: bool = False) -> Plans:
    """Run `action`, then EXPLAIN each SELECT it sent that reads a raw or roll-up table (and,
    with `inserts`, each INSERT … SELECT)."""
    recorder.statements.clear()
    recorder.recording = True
    try:
        await action()
    finally:
        recorder.recording = False
    plans = []
    async with api.runtime.engine.connect() as connection:
        for statement in recorder.statements:
            sql = statement.sql.lstrip()
            kinds = ("SELECT", "INSERT") if inserts else ("SELECT",)
            if not sql.upper().startswith(kinds) or not tables_of(sql):
                continue
            result = await connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}",
                                                      statement.parameters)
            document = result.scalar_one()
            if isinstance(document, str):
                document = json.loads(document)
            plans.append((sql, document[0]["Plan"]))
    assert plans, "nothing recorded"
    return plans


def tables_of(sql: str) -> set[str]:
    return {t for t in RAW_TABLES + ROLL_UPS if f"FROM {t}" in sql or f"JOIN {t}" in sql}


def show(plans: Plans) -> str:
    """The plans, readably, for assertion messages."""
    lines = []
    for sql, plan in plans:
        lines.append(" ".join(sql.split())[:160])
        lines += [f"  {n['Node Type']} {n.get('Relation Name', '')} {n.get('Index Name', '')} "
                  f"{n.get('Index Cond', '')}" for n in nodes(plan)]
    return "\n".join(lines)


def seq_scans(plans: Plans, tables: tuple[str, ...] = RAW_TABLES) -> list[str]:
    return [node["Relation Name"] for _, plan in plans for node in nodes(plan)
            if node["Node Type"] == "Seq Scan" and node["Relation Name"] in tables]


def sorts(plan: dict[str, Any]) -> list[str]:
    return [node["Node Type"] for node in nodes(plan) if "Sort" in node["Node Type"]]


def scans(plan: dict[str, Any], table: str) -> list[dict[str, Any]]:
    return [node for node in nodes(plan) if node.get("Relation Name") == table]


def viewer_get(api: Api, path: str, **params: Any) -> Callable[[], Awaitable[None]]:
    async def get() -> None:
        response = await api.client.get(path, params=params, headers=api.auth("viewer"))
        assert response.status_code == 200, response.text
    return get


# Deep pages with more than a page left behind them (fewer, and a bitmap scan plus a sort of
# the few remaining rows is cheaper, rightly): 5,600 rows overall, ~130 of one camera.
DEEP = encode_cursor(utcnow() - timedelta(days=20), 10**9)
DEEP_CAMERA = encode_cursor(utcnow() - timedelta(days=10), 10**9)
# Keyset pages: (label, path, params, the index that must give the order).
PAGES = [
    ("detections", "/api/v1/detections", {}, "ix_detections_time"),
    ("detections by camera", "/api/v1/detections", {"camera_id": CAMERA},
     "ix_detections_camera_time"),
    ("detections by a common type", "/api/v1/detections", {"types": "face"}, None),
    ("detections by a rare type", "/api/v1/detections", {"types": "animal"},
     "ix_detections_type_time"),
    ("detections, deep page", "/api/v1/detections", {"cursor": DEEP}, "ix_detections_time"),
    ("detections by camera, deep page", "/api/v1/detections",
     {"camera_id": CAMERA, "cursor": DEEP_CAMERA}, "ix_detections_camera_time"),
    ("events", "/api/v1/detections/events", {}, "ix_events_time"),
    ("events by camera", "/api/v1/detections/events", {"camera_id": CAMERA},
     "ix_events_camera_time"),
    ("events by type", "/api/v1/detections/events", {"event_type": "queue.retry"},
     "ix_events_type_time"),
    ("events, deep page", "/api/v1/detections/events", {"cursor": DEEP}, "ix_events_time"),
    ("events by camera, deep page", "/api/v1/detections/events",
     {"camera_id": CAMERA, "cursor": DEEP_CAMERA}, "ix_events_camera_time"),
]


async def test_keyset_pages_walk_an_index_without_sorting(
    seeded: tuple[Api, Recorder]
) -> None:
    api, recorder = seeded
    for label, path, params, index in PAGES:
        plans = await plans_of(api, recorder, viewer_get(api, path, **params))
        assert len(plans) == 1, show(plans)
        _, plan = plans[0]
        assert plan["Node Type"] == "Limit", show(plans)
        assert not seq_scans(plans), f"{label}\n{show(plans)}"
        assert not sorts(plan), f"{label}\n{show(plans)}"
        used = {n.get("Index Name") for n in nodes(plan)}
        assert index is None or index in used, f"{label}\n{show(plans)}"


async def test_live_view_and_camera_state_use_indexes(seeded: tuple[Api, Recorder]) -> None:
    api, recorder = seeded
    for label, path, params in [
        ("live", "/api/v1/detections/live", {}),
        ("live of a camera", "/api/v1/detections/live", {"camera_id": "cam099"}),
        ("live of one type", "/api/v1/detections/live", {"types": "person"}),
        ("camera state", f"/api/v1/cameras/{CAMERA}/state", {}),
    ]:
        plans = await plans_of(api, recorder, viewer_get(api, path, **params))
        assert {t for sql, _ in plans for t in tables_of(sql)} == {"frames", "detections"}
        assert not seq_scans(plans), f"{label}\n{show(plans)}"
    # The camera's last detection comes straight from (camera, time, id), newest first.
    [_, (_, last_detection)] = plans
    assert not sorts(last_detection), show(plans)
    assert [n["Index Name"] for n in scans(last_detection, "detections")] == [
        "ix_detections_camera_time"]


async def test_the_last_frame_of_a_camera_needs_no_sort(seeded: tuple[Api, Recorder]) -> None:
    api, recorder = seeded
    plans = await plans_of(api, recorder, viewer_get(api, f"/api/v1/cameras/{CAMERA}/state"))
    [(_, last_frame), _] = plans
    assert not seq_scans(plans)
    assert not sorts(last_frame), show(plans)


async def test_the_live_view_finds_recent_frames_by_index(seeded: tuple[Api, Recorder]) -> None:
    api, recorder = seeded
    plans = await plans_of(api, recorder, viewer_get(api, "/api/v1/detections/live"))
    assert not seq_scans(plans)
    frames = [n for _, plan in plans for n in scans(plan, "frames")
              if n.get("Index Name") != "pk_frames"]
    assert frames, show(plans)
    async with api.runtime.engine.connect() as connection:
        leading = dict((await connection.exec_driver_sql(
            "SELECT c.relname, a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]")).all())
    for node in frames:  # the index's leading column is constrained: a range, not everything
        assert leading[node["Index Name"]] in node.get("Index Cond", ""), show(plans)


async def test_statistics_read_only_roll_ups_by_index(seeded: tuple[Api, Recorder]) -> None:
    api, recorder = seeded
    since = (utcnow() - timedelta(hours=24)).isoformat()
    for params in ({"since": since}, {"since": since, "camera_id": CAMERA},
                   {"since": since, "bucket": "day"}):
        plans = await plans_of(api, recorder,
                               viewer_get(api, "/api/v1/detections/statistics", **params))
        assert {t for sql, _ in plans for t in tables_of(sql)} <= set(ROLL_UPS), show(plans)
        # Detections by camera, type and label; the series; providers by camera.
        assert len(plans) == 3, show(plans)
        # The series over every camera (a row per hour and type: 200 here) may be read whole.
        assert not seq_scans(plans, HOURLY + DAILY), f"{params}\n{show(plans)}"
        if "camera_id" in params:
            used = {n.get("Index Name") for _, plan in plans for n in nodes(plan)}
            assert {"ix_detection_stats_camera_bucket",
                    "ix_provider_stats_camera_bucket"} <= used, show(plans)


async def test_long_ranges_read_whole_days_from_the_daily_roll_ups(
    seeded: tuple[Api, Recorder]
) -> None:
    """30 days: the hourly rows are read by index for the edges only, the series over every
    camera from `detection_series_hourly`; with a camera, every table by its camera index. (The
    daily rows of all cameras, all in range here, are rightly read whole.)"""
    api, recorder = seeded
    since = (utcnow() - timedelta(days=30)).isoformat()
    for params in ({"since": since}, {"since": since, "bucket": "day"},
                   {"since": since, "camera_id": CAMERA},
                   {"since": since, "camera_id": CAMERA, "bucket": "day"}):
        plans = await plans_of(api, recorder,
                               viewer_get(api, "/api/v1/detections/statistics", **params))
        read = {t for sql, _ in plans for t in tables_of(sql)}
        assert set(DAILY) <= read <= set(ROLL_UPS), f"{params}\n{show(plans)}"
        assert len(plans) == 3, show(plans)
        assert not seq_scans(plans, HOURLY), f"{params}\n{show(plans)}"
        used = {n.get("Index Name") for _, plan in plans for n in nodes(plan)}
        if "camera_id" in params:
            assert not seq_scans(plans, HOURLY + DAILY), f"{params}\n{show(plans)}"
            assert {"ix_detection_stats_daily_camera_day", "ix_provider_stats_daily_camera_day",
                    "ix_detection_stats_camera_bucket",
                    "ix_provider_stats_camera_bucket"} <= used, show(plans)
        else:
            assert "detection_series_hourly" in read, show(plans)
            assert {"pk_detection_stats_hourly", "pk_provider_stats_hourly"} <= used, show(plans)


async def test_the_roll_up_job_reads_only_what_changed_by_index(
    seeded: tuple[Api, Recorder]
) -> None:
    api, recorder = seeded
    async with api.runtime.engine.begin() as connection:
        # Twenty detections over twenty hours are reported late: created now.
        await connection.execute(text(
            "UPDATE detections SET created_at = now() WHERE id % 1000 = 0"))
    report: dict[str, Any] = {}

    async def rollup() -> None:
        report.update(await aggregate_stats(api.runtime))

    plans = await plans_of(api, recorder, rollup, inserts=True)
    assert report["hours_recomputed"] >= 20 and report["days_recomputed"] >= 1
    assert not seq_scans(plans, RAW_TABLES + HOURLY), show(plans)
    # Three queries find the touched hours, then three per hour recompute it, then three
    # INSERT … SELECT per day sum its hourly rows.
    assert len(plans) == 3 + 3 * report["hours_recomputed"] + 3 * report["days_recomputed"]
    for _, plan in plans:
        assert any("Index" in n["Node Type"] for n in nodes(plan)), show(plans)
