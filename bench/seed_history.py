"""Seed a PostgreSQL database with a history: N detections and N events over 100 cameras and
30 days, for bench/history_queries.py.

The database (default framewatch_bench_history, FRAMEWATCH_BENCH_HISTORY_DATABASE_URL) is
created empty and migrated with `framewatch migrate`; then, with the secondary indexes and
foreign keys of `frames`, `detections` and `detection_event_logs` set aside (their definitions
are read from the catalog and re-created afterwards, exactly as the migrations made them):
COPY (asyncpg `copy_records_to_table`) of the frames the detections belong to (2 detections per
frame), the detections and the events, in time order; indexes and foreign keys re-created;
the roll-up tables filled by running the real roll-up job (`aggregate_stats`) once; VACUUM
ANALYZE. Every phase is timed.

    .venv/bin/python bench/seed_history.py                    # 200k rows, then dropped
    .venv/bin/python bench/seed_history.py --rows 10000000 --keep
    .venv/bin/python bench/history_queries.py --drop          # measure, then drop it
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import POSTGRES, framewatch_env, migrate, recreate_database

DEFAULT_DATABASE = f"{POSTGRES}/framewatch_bench_history"
TABLES = ("frames", "detections", "detection_event_logs")
ROLL_UPS = ("detection_stats_hourly", "provider_stats_hourly", "detection_stats_daily",
            "provider_stats_daily", "detection_series_hourly")
PROVIDER = "deepstack-main"
MODEL = "yolov5s"
# (type, label, share): what cameras at gates and car parks see.
KINDS = [("person", "person", 0.55), ("vehicle", "car", 0.2), ("vehicle", "truck", 0.05),
         ("vehicle", "bicycle", 0.05), ("face", "face", 0.15)]
# (event type, severity, share, about a frame): the audit trail of a busy installation.
EVENTS = [("frame.processed", "info", 0.9, True), ("frame.queued", "warning", 0.04, True),
          ("provider.error", "error", 0.03, True), ("queue.retry", "warning", 0.02, True),
          ("auth.failed", "warning", 0.005, False), ("camera.updated", "info", 0.005, False)]


def camera_names(count: int) -> list[str]:
    return [f"cam-{index:03d}" for index in range(count)]


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


class History:
    """The rows, generated in time order: frame i at start + i × step, its detections 2i, 2i+1
    (1-based ids), and the events spread over the same span."""

    def __init__(self, rows: int, cameras: int, days: int, per_frame: int, seed: int) -> None:
        self.rows, self.per_frame = rows, per_frame
        self.frames = -(-rows // per_frame)
        self.cameras = camera_names(cameras)
        self.end = datetime.now(UTC) - timedelta(minutes=5)
        self.start = self.end - timedelta(days=days)
        self.random = random.Random(seed)
        span = (self.end - self.start).total_seconds()
        self.frame_step = span / self.frames
        self.event_step = span / rows

    def frame_camera(self, frame_id: int) -> str:
        return self.cameras[(frame_id * 7919) % len(self.cameras)]

    def frame_time(self, frame_id: int) -> datetime:
        return self.start + timedelta(seconds=(frame_id - 1) * self.frame_step)

    def frame_records(self, low: int, high: int) -> list[tuple[Any, ...]]:
        rnd = self.random.random
        records = []
        for frame_id in range(low, high):
            camera, seen = self.frame_camera(frame_id), self.frame_time(frame_id)
            latency = 8 + rnd() * 60
            records.append((
                frame_id, camera, f"{frame_id:064x}", "image/jpeg", 180_000, 1280, 720,
                f"{camera}/{frame_id:012d}.jpg", None, seen, "processed", '["person","face"]',
                None, PROVIDER, MODEL, latency, None,
                seen + timedelta(milliseconds=latency), None,
            ))
        return records

    def detection_records(self, low: int, high: int) -> list[tuple[Any, ...]]:
        rnd = self.random.random
        kinds = [(kind, label) for kind, label, _ in KINDS]
        weights = [share for _, _, share in KINDS]
        picks = self.random.choices(kinds, weights, k=high - low)
        records = []
        for offset, detection_id in enumerate(range(low, high)):
            frame_id = (detection_id - 1) // self.per_frame + 1
            seen = self.frame_time(frame_id)
            kind, label = picks[offset]
            x, y = int(rnd() * 1100), int(rnd() * 560)
            w, h = 40 + int(rnd() * 140), 60 + int(rnd() * 100)
            records.append((
                detection_id, frame_id, self.frame_camera(frame_id), None, PROVIDER, MODEL,
                20.0, kind, label, 0.4 + rnd() * 0.6, x, y, x + w, y + h, x / 1280, y / 720,
                (x + w) / 1280, (y + h) / 720, None, None, None, None, "{}", seen,
                seen + timedelta(milliseconds=30),
            ))
        return records

    def event_records(self, low: int, high: int) -> list[tuple[Any, ...]]:
        weights = [share for _, _, share, _ in EVENTS]
        picks = self.random.choices(EVENTS, weights, k=high - low)
        records = []
        for offset, event_id in enumerate(range(low, high)):
            kind, severity, _, about_frame = picks[offset]
            at = self.start + timedelta(seconds=(event_id - 1) * self.event_step)
            frame_id = min(self.frames, int((at - self.start).total_seconds()
                                            / self.frame_step) + 1)
            camera = self.frame_camera(frame_id) if about_frame else None
            if kind == "frame.processed":
                message = f"{self.per_frame} detections on camera {camera!r} by {PROVIDER}"
                payload = json.dumps({"counts": {"person": 1, "face": 1}, "attempts": 1,
                                      "latency_ms": 21.5, "model": MODEL})
                types = ",face,person,"
            elif about_frame:
                message = f"{kind} for frame {frame_id}: provider {PROVIDER!r} timed out"
                payload = json.dumps({"attempts": 2, "status_code": 504, "retryable": True})
                types = None
            else:
                message = f"{kind} from 10.0.{event_id % 250}.{event_id % 199}"
                payload = json.dumps({"outcome": "refused", "reason": "unknown"})
                types = None
            records.append((
                event_id, kind, severity, camera, frame_id if about_frame else None, None,
                PROVIDER if about_frame else None, message, payload, None, at, types,
                "10.0.0.12" if about_frame else "10.0.3.7", None,
            ))
        return records


COLUMNS = {
    "frames": ("id", "camera_id", "sha256", "content_type", "size_bytes", "width", "height",
               "storage_path", "captured_at", "received_at", "status", "requested_types",
               "provider_id", "provider_name", "model", "latency_ms", "provider_response",
               "processed_at", "image_purged_at"),
    "detections": ("id", "frame_id", "camera_id", "provider_id", "provider_name", "model",
                   "latency_ms", "type", "label", "confidence", "x_min", "y_min", "x_max",
                   "y_max", "x_min_norm", "y_min_norm", "x_max_norm", "y_max_norm",
                   "face_encoding", "encoding_model", "subject", "person_id", "attributes",
                   "detected_at", "created_at"),
    "detection_event_logs": ("id", "event_type", "severity", "camera_id", "frame_id",
                             "detection_id", "provider", "message", "payload", "actor",
                             "created_at", "detection_types", "address", "request_id"),
}


async def set_aside(connection: Any) -> list[str]:
    """Drop the secondary indexes and foreign keys of TABLES; the statements re-creating them."""
    tables = list(TABLES)
    constraints = await connection.fetch(
        "SELECT conrelid::regclass::text AS tbl, conname, pg_get_constraintdef(oid) AS def "
        "FROM pg_constraint WHERE contype = 'f' AND conrelid::regclass::text = ANY($1)", tables)
    indexes = await connection.fetch(
        "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def "
        "FROM pg_index i WHERE NOT i.indisprimary AND i.indrelid::regclass::text = ANY($1)",
        tables)
    for row in constraints:
        await connection.execute(f'ALTER TABLE {row["tbl"]} DROP CONSTRAINT "{row["conname"]}"')
    for row in indexes:
        await connection.execute(f'DROP INDEX "{row["name"]}"')
    return ([row["def"] for row in indexes]
            + [f'ALTER TABLE {row["tbl"]} ADD CONSTRAINT "{row["conname"]}" {row["def"]}'
               for row in constraints])


async def copy_table(connection: Any, table: str, total: int, batch: int,
                     make: Callable[[int, int], list[tuple[Any, ...]]]) -> None:
    async def records() -> AsyncIterator[tuple[Any, ...]]:
        for low in range(1, total + 1, batch):
            for record in make(low, min(low + batch, total + 1)):
                yield record
            await asyncio.sleep(0)

    await connection.copy_records_to_table(table, records=records(), columns=COLUMNS[table])
    await connection.execute(
        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {max(total, 1)})")


async def roll_up(url: str) -> dict[str, Any]:
    """The real roll-up job, once, over everything (it has no cursor yet)."""
    from framewatch.core.database import create_engine, create_session_factory
    from framewatch.stats.rollup import aggregate_stats

    engine = create_engine(url)
    try:
        runtime: Any = SimpleNamespace(session_factory=create_session_factory(engine))
        return await aggregate_stats(runtime)
    finally:
        await engine.dispose()


async def seed(url: str, rows: int, cameras: int = 100, days: int = 30, per_frame: int = 2,
               batch: int = 20_000, seed_value: int = 7) -> dict[str, float]:
    """Create, migrate and fill the database of `url`; seconds per phase."""
    import asyncpg

    timings: dict[str, float] = {}
    began = clock = time.monotonic()

    def phase(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        timings[name] = now - clock
        clock = now
        print(f"  {name}: {timings[name]:.1f} s", flush=True)

    await recreate_database(url)
    with tempfile.TemporaryDirectory(prefix="framewatch-bench-seed-") as tmp:
        migrate(framewatch_env(Path(tmp), url))
    phase("create + framewatch migrate")
    history = History(rows, cameras, days, per_frame, seed_value)
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await connection.executemany(
            "INSERT INTO cameras (id, name, enabled, created_at, updated_at) "
            "VALUES ($1, $1, true, $2, $2)", [(c, history.start) for c in history.cameras])
        recreate = await set_aside(connection)
        phase("cameras; indexes and foreign keys set aside")
        await copy_table(connection, "frames", history.frames, batch, history.frame_records)
        phase(f"COPY {history.frames:,} frames")
        await copy_table(connection, "detections", rows, batch, history.detection_records)
        phase(f"COPY {rows:,} detections")
        await copy_table(connection, "detection_event_logs", rows, batch, history.event_records)
        phase(f"COPY {rows:,} events")
        await connection.execute("SET maintenance_work_mem = '1GB'")
        for statement in recreate:
            await connection.execute(statement)
        phase(f"{len(recreate)} indexes and foreign keys re-created")
    finally:
        await connection.close()
    result = await roll_up(url)
    phase(f"roll-up job (aggregate_stats, {result['hours_recomputed']} hours)")
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        for table in (*TABLES, *ROLL_UPS):
            await connection.execute(f"VACUUM ANALYZE {table}")
        phase("VACUUM ANALYZE")
        sizes = await connection.fetch(
            "SELECT relname, pg_total_relation_size(oid) AS bytes, reltuples::bigint AS n "
            "FROM pg_class WHERE relname = ANY($1) ORDER BY relname",
            [*TABLES, *ROLL_UPS])
    finally:
        await connection.close()
    timings["total"] = time.monotonic() - began
    print(f"  seeded in {timings['total']:.1f} s; tables (with indexes): " + ", ".join(
        f"{row['relname']} {row['n']:,} rows {row['bytes'] / 2**20:,.0f} MiB" for row in sizes))
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000,
                        help="detections, and as many events (default 200,000)")
    parser.add_argument("--cameras", type=int, default=100)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--keep", action="store_true",
                        help="keep the database for bench/history_queries.py (default: drop it)")
    parser.add_argument("--database-url", default=os.environ.get(
        "FRAMEWATCH_BENCH_HISTORY_DATABASE_URL", DEFAULT_DATABASE))
    args = parser.parse_args()
    print(f"seed history: {args.rows:,} detections and {args.rows:,} events, {args.cameras} "
          f"cameras, {args.days} days, into {args.database_url}", flush=True)
    try:
        asyncio.run(seed(args.database_url, args.rows, args.cameras, args.days))
    except Exception as exc:
        print(f"seed history FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        asyncio.run(recreate_database(args.database_url, drop_only=True))
        return 1
    if not args.keep:
        asyncio.run(recreate_database(args.database_url, drop_only=True))
        print("  database dropped (--keep keeps it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
