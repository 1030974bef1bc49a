"""History queries: p50/p99 of event and detection pages and of 30-day statistics, through the
real API, on a PostgreSQL database seeded by bench/seed_history.py.

One `framewatch serve` process against that database (its periodic jobs set far apart, so
that they do not run during the measurement); one client asks each request `--requests` times,
one at a time, after a few warm-up requests:
- a filtered first page, and a page 100 pages in (following `next_cursor`), of
  `/api/v1/detections/events` (one camera; and one event type) and of `/api/v1/detections`
  (one camera, type person), 50 items a page;
- `/api/v1/detections/statistics` for the last 30 days, by hour and by day, uncached: every
  request has a `since` one second earlier than the previous one, so none hits the cache.
Targets: p99 ≤ 50 ms for pages, ≤ 100 ms for statistics. Then (unless `--no-explain`) the very
statements behind each request — captured from the query functions the routers call — are run
under EXPLAIN (ANALYZE, BUFFERS): which index each one walks, and its time inside PostgreSQL.

    .venv/bin/python bench/history_queries.py        # seeds 200k rows if needed, ~2-3 minutes
    .venv/bin/python bench/seed_history.py --rows 10000000 --keep
    .venv/bin/python bench/history_queries.py --requests 500 --drop

Without a seeded database it seeds one (`--rows`, default 200,000) and drops it at the end;
a database that was already seeded is kept unless `--drop`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import (
    admin,
    framewatch_env,
    machine,
    migrate,
    percentile,
    recreate_database,
    start_serve,
    verdict,
)
from bench.seed_history import DEFAULT_DATABASE, asyncpg_dsn, camera_names, seed

PAGE_TARGET_MS = 50
STATS_TARGET_MS = 100
QUIET_JOBS = {"stats_interval_seconds": 86_400, "cleanup_interval_seconds": 86_400,
              "provider_check_seconds": 86_400, "worker_poll_seconds": 60,
              "worker_heartbeat_seconds": 60}


@dataclass
class Case:
    name: str
    path: str
    params: dict[str, Any]
    target_ms: float
    deep: int = 0  # pages to follow before measuring
    vary_since: bool = False
    cursor: str | None = None  # the deep page's cursor, once found


async def seeded_rows(url: str) -> int | None:
    """Detections in the database (planner estimate), None when it is missing or not seeded."""
    import asyncpg

    try:
        connection = await asyncpg.connect(asyncpg_dsn(url))
    except asyncpg.InvalidCatalogNameError:
        return None
    try:
        rows = await connection.fetchval(
            "SELECT reltuples::bigint FROM pg_class WHERE relname = 'detections'")
        stats = await connection.fetchval(
            "SELECT count(*) FROM pg_class WHERE relname = 'detection_stats_hourly'")
        if not rows or rows <= 0 or not stats:
            return None
        return int(rows)
    finally:
        await connection.close()


def cases(args: argparse.Namespace) -> list[Case]:
    camera = camera_names(100)[42 % args.cameras]
    limit = {"limit": 50}
    return [
        Case("events, camera, first page", "/api/v1/detections/events",
             {"camera_id": camera, **limit}, PAGE_TARGET_MS),
        Case(f"events, camera, page {args.deep_pages + 1}", "/api/v1/detections/events",
             {"camera_id": camera, **limit}, PAGE_TARGET_MS, deep=args.deep_pages),
        Case("events, type provider.error, first page", "/api/v1/detections/events",
             {"event_type": "provider.error", **limit}, PAGE_TARGET_MS),
        Case(f"events, type provider.error, page {args.deep_pages + 1}",
             "/api/v1/detections/events", {"event_type": "provider.error", **limit},
             PAGE_TARGET_MS, deep=args.deep_pages),
        Case("detections, camera + person, first page", "/api/v1/detections",
             {"camera_id": camera, "types": "person", **limit}, PAGE_TARGET_MS),
        Case(f"detections, camera + person, page {args.deep_pages + 1}", "/api/v1/detections",
             {"camera_id": camera, "types": "person", **limit}, PAGE_TARGET_MS,
             deep=args.deep_pages),
        Case("statistics, 30 days by hour, uncached", "/api/v1/detections/statistics",
             {"bucket": "hour"}, STATS_TARGET_MS, vary_since=True),
        Case("statistics, 30 days by day, uncached", "/api/v1/detections/statistics",
             {"bucket": "day"}, STATS_TARGET_MS, vary_since=True),
    ]


async def cursor_after(client: httpx.AsyncClient, case: Case) -> str:
    """The cursor of page `case.deep + 1`, or of the last page when there are fewer (a small
    database); the case is renamed after the page it reached."""
    cursor, pages = None, 0
    while pages < case.deep:
        params = {**case.params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(case.path, params=params)
        response.raise_for_status()
        following = response.json()["next_cursor"]
        if following is None:
            break
        cursor, pages = following, pages + 1
    if cursor is None:
        raise RuntimeError(f"{case.name}: a single page")
    if pages < case.deep:
        case.name = f"{case.name.rsplit(' page', 1)[0]} page {pages + 1} (last)"
    return str(cursor)


async def measure(client: httpx.AsyncClient, case: Case, requests: int,
                  warmup: int) -> list[float]:
    params = dict(case.params)
    if case.deep:
        params["cursor"] = case.cursor = await cursor_after(client, case)
    since = datetime.now(UTC) - timedelta(days=30)
    latencies = []
    for number in range(warmup + requests):
        if case.vary_since:
            params["since"] = (since - timedelta(seconds=number)).isoformat()
        started = time.perf_counter()
        response = await client.get(case.path, params=params)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"{case.name}: {response.status_code} {response.text[:300]}")
        body = response.json()
        if not body.get("items", body.get("by_camera")):
            raise RuntimeError(f"{case.name}: an empty answer: {response.text[:300]}")
        if number >= warmup:
            latencies.append(elapsed * 1000)
    return latencies


async def run_cases(url: str, args: argparse.Namespace) -> list[tuple[Case, list[float]]]:
    results = []
    async with httpx.AsyncClient(base_url=url, headers=admin(), timeout=60) as client:
        for case in cases(args):
            latencies = await measure(client, case, args.requests, args.warmup)
            results.append((case, latencies))
            print(f"  {case.name:<42} p50 {percentile(latencies, 50):7.1f} ms  "
                  f"p99 {percentile(latencies, 99):7.1f} ms  "
                  f"max {max(latencies):7.1f} ms", flush=True)
    return results


async def explain(url: str, results: list[tuple[Case, list[float]]]) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of the very statements the endpoints run: each case's query
    function (the one its router calls) is run here with a listener that captures the SQL and
    its parameters, which are then explained on the same connection. Shown: the plan's scan
    nodes (which index, or a sequential scan) and the execution time."""
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import AsyncSession

    from framewatch.core.database import create_engine
    from framewatch.detections.queries import DetectionFilter, list_detections
    from framewatch.events.queries import EventFilter, list_events
    from framewatch.stats.queries import statistics

    engine = create_engine(url)
    captured: list[tuple[str, Any]] = []

    def grab(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if not statement.startswith("EXPLAIN"):
            captured.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", grab)
    print("\nEXPLAIN (ANALYZE, BUFFERS) of the statements behind each request:")
    try:
        async with AsyncSession(engine) as session:
            for case, _ in results:
                captured.clear()
                params = case.params
                if case.path.endswith("/events"):
                    await list_events(session, EventFilter(
                        camera_id=params.get("camera_id"),
                        event_types=[params["event_type"]] if "event_type" in params else None),
                        limit=params["limit"], cursor=case.cursor)
                elif case.path.endswith("/statistics"):
                    until = datetime.now(UTC)
                    await statistics(session, since=until - timedelta(days=30), until=until,
                                     camera_id=None, bucket=params["bucket"], cache={})
                else:
                    await list_detections(session, DetectionFilter(
                        camera_id=params.get("camera_id"), types=[params["types"]]),
                        limit=params["limit"], cursor=case.cursor)
                statements = [(sql, args) for sql, args in captured if "FROM" in sql]
                total = 0.0
                lines = []
                for sql, args in statements:
                    plan = (await session.connection()).exec_driver_sql(
                        f"EXPLAIN (ANALYZE, BUFFERS) {sql}", args)
                    rows = [row[0] for row in (await plan).all()]
                    took = next((float(r.split(":")[1].split()[0]) for r in rows
                                 if r.startswith("Execution Time")), 0.0)
                    total += took
                    scans = sorted({r.strip().lstrip("-> ").split("  (")[0] for r in rows
                                    if " Scan " in r or r.strip().startswith("-> Seq Scan")
                                    or " Scan on " in r})
                    lines.append(f"    {took:7.2f} ms  {'; '.join(scans) or rows[0].strip()}")
                print(f"  {case.name}: {len(statements)} statement(s), {total:.1f} ms in "
                      "PostgreSQL")
                print("\n".join(lines))
    finally:
        await engine.dispose()


def report(results: list[tuple[Case, list[float]]]) -> None:
    print(f"\n{'request':<42} {'p50 ms':>8} {'p99 ms':>8} {'target':>8}")
    for case, latencies in results:
        p99 = percentile(latencies, 99)
        print(f"{case.name:<42} {percentile(latencies, 50):8.1f} {p99:8.1f} "
              f"{f'≤ {case.target_ms:g}':>8}  {verdict(p99 <= case.target_ms)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50, help="measured requests per case")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured requests per case")
    parser.add_argument("--deep-pages", type=int, default=100, help="pages before a deep page")
    parser.add_argument("--rows", type=int, default=200_000,
                        help="rows to seed when the database is not seeded yet")
    parser.add_argument("--cameras", type=int, default=100)
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    parser.add_argument("--no-explain", action="store_true",
                        help="skip EXPLAIN (ANALYZE) of the statements behind each request")
    parser.add_argument("--database-url", default=os.environ.get(
        "FRAMEWATCH_BENCH_HISTORY_DATABASE_URL", DEFAULT_DATABASE))
    args = parser.parse_args()
    print(f"history queries: {machine()}; database {args.database_url}", flush=True)
    drop = args.drop
    try:
        rows = asyncio.run(seeded_rows(args.database_url))
        if rows is None:
            print(f"not seeded: seeding {args.rows:,} detections and events", flush=True)
            asyncio.run(seed(args.database_url, args.rows, args.cameras))
            rows, drop = args.rows, True
        print(f"about {rows:,} detections (and as many events); {args.requests} requests "
              "per case", flush=True)
        with tempfile.TemporaryDirectory(prefix="framewatch-bench-history-") as tmp:
            env = framewatch_env(Path(tmp) / "data", args.database_url, **QUIET_JOBS)
            migrate(env)  # a database seeded by an older version: brought up to date
            serve, url = start_serve(env, Path(tmp) / "logs")
            try:
                results = asyncio.run(run_cases(url, args))
                serve.check()
                if not args.no_explain:
                    asyncio.run(explain(args.database_url, results))
            except Exception:
                print(serve.tail(), file=sys.stderr)
                raise
            finally:
                serve.stop()
        report(results)
    except Exception as exc:
        print(f"history queries FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if drop:
            asyncio.run(recreate_database(args.database_url, drop_only=True))
            print("database dropped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
