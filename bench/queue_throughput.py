"""Queue throughput: queue items per second through the processing queue.

Configurations: 1 and 2 Celery worker processes (`framewatch worker`, Redis broker, PostgreSQL),
and the in-process worker of `framewatch serve` on SQLite. The provider is the FlakyProvider of
the test suite with `fail_rate 0` and no latency, in its own process, so the figures measure
framewatch's queue (claim, provider call, storing detections), not a model.

Frames are enqueued directly with the queue service (`enqueue_frame`, in transactions of
`--batch` frames, then dispatched as the API does: one Celery message per item, or a nudge to
the in-process worker); the API's HTTP handling is not measured. The clock runs from the first
enqueue to the `finished_at` of the last item done. Every run is checked: all items done, one
detection and one `frame.processed` event per frame; anything else exits non-zero.

    .venv/bin/python bench/queue_throughput.py                 # ~2-3 minutes
    .venv/bin/python bench/queue_throughput.py --frames 2000 --concurrency 2

It creates (and drops at the end) its own PostgreSQL database, by default
postgresql+asyncpg://postgres@127.0.0.1:5432/framewatch_bench (FRAMEWATCH_BENCH_DATABASE_URL),
and flushes the Redis database it uses as the broker, by default redis://127.0.0.1:6379/12
(FRAMEWATCH_BENCH_REDIS_URL).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `make bench` runs this file directly; it reuses tests.support

import redis  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from framewatch.core import migrate  # noqa: E402
from framewatch.core.database import create_engine, utcnow  # noqa: E402
from framewatch.models import Frame, QueueItem, QueueWorker  # noqa: E402
from framewatch.queue.service import enqueue_frame, mark_dispatched  # noqa: E402
from framewatch.runtime import Runtime  # noqa: E402
from tests.api.helpers import add_camera  # noqa: E402
from tests.api_fixtures import Api, make_settings, start_api  # noqa: E402
from tests.queue.scenario import (  # noqa: E402
    assert_each_frame_stored_once,
    flaky_provider_body,
    small_frame,
)
from tests.support.processes import ProcessGroup, framewatch_env  # noqa: E402
from tests.support.servers import free_port  # noqa: E402

DEFAULT_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:5432/framewatch_bench"
DEFAULT_REDIS = "redis://127.0.0.1:6379/12"
CAMERA = "bench"
QUIET: dict[str, object] = {
    "log_level": "WARNING",
    "worker_heartbeat_seconds": 1,
    # Only the queue is measured: the periodic jobs stay out of the way.
    "provider_check_seconds": 3600,
    "stats_interval_seconds": 3600,
    "cleanup_interval_seconds": 3600,
}


@dataclass
class Result:
    name: str
    database: str
    workers: str
    frames: int
    rounds: list[Round]

    @property
    def rate(self) -> float:
        """The median round's items/s."""
        return statistics.median(r.rate for r in self.rounds)


@dataclass
class Round:
    frames: int
    enqueue_seconds: float
    seconds: float
    cpu_seconds: float  # used by the processes that ran the items (workers, or this process)

    @property
    def rate(self) -> float:
        return self.frames / self.seconds


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time the processes `pids` used so far."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


@contextmanager
def provider_process() -> Iterator[str]:
    """The flaky provider (fail_rate 0, no latency) in a process of its own."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.flaky_provider", "--port", str(port)], cwd=ROOT,
    )
    try:
        import httpx

        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.post(f"http://127.0.0.1:{port}/v1/vision/detection", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the flaky provider did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


async def recreate_database(url: str, *, drop_only: bool = False) -> None:
    """Drop the database of `url` and (unless `drop_only`) create and migrate it again."""
    target = make_url(url)
    name = target.database
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"refusing to drop database {name!r}")
    admin = create_engine(target.set(database="postgres").render_as_string(False))
    try:
        async with admin.connect() as connection:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            if not drop_only:
                await connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    if not drop_only:
        engine = create_engine(url)
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()


@asynccontextmanager
async def running_api(data: Path, database_url: str, provider_url: str,
                      **overrides: object) -> AsyncIterator[Api]:
    settings = make_settings(data, database_url, **{**QUIET, **overrides})
    apis = cast(AsyncGenerator[Api, None], start_api(settings))
    try:
        api = await anext(apis)
        response = await api.client.post("/api/v1/providers",
                                          json=flaky_provider_body(provider_url),
                                          headers=api.auth("admin"))
        response.raise_for_status()
        await add_camera(api, CAMERA)
        yield api
    finally:
        await apis.aclose()


async def enqueue(runtime: Runtime, images: list[bytes], batch: int) -> list[int]:
    """Store and queue every frame, `batch` per transaction, dispatching each batch."""
    frame_ids = []
    for start in range(0, len(images), batch):
        async with runtime.session_factory() as session:
            item_ids = []
            for data in images[start:start + batch]:
                sha256 = hashlib.sha256(data).hexdigest()
                path = await runtime.frame_store.save(data, sha256, "image/jpeg")
                frame = Frame(camera_id=CAMERA, sha256=sha256, content_type="image/jpeg",
                              size_bytes=len(data), width=64, height=48, storage_path=path,
                              received_at=utcnow(), status="queued", requested_types=["person"])
                session.add(frame)
                await session.flush()
                item = await enqueue_frame(
                    session, frame, provider_id=None, detection_types=["person"],
                    max_attempts=runtime.queue_policy.retry.max_attempts,
                )
                frame_ids.append(frame.id)
                item_ids.append(item.id)
            await mark_dispatched(session, item_ids)
            await session.commit()
        await runtime.dispatcher.dispatch(item_ids)
    return frame_ids


async def measure(api: Api, images: list[bytes], batch: int, within: float,
                  pids: Callable[[], set[int]], processes: ProcessGroup | None = None) -> Round:
    """One round: enqueue `images`, wait until all are done, check each was stored once."""
    runtime = api.runtime
    async with runtime.session_factory() as session:
        before = await session.scalar(select(func.coalesce(func.max(QueueItem.id), 0)))
    running = pids()
    cpu = cpu_seconds(running)
    started = utcnow()
    frame_ids = await enqueue(runtime, images, batch)
    enqueued = utcnow()
    deadline = time.monotonic() + within
    ours = QueueItem.id > before
    while True:
        async with runtime.session_factory() as session:
            counts = dict((await session.execute(
                select(QueueItem.status, func.count()).where(ours).group_by(QueueItem.status)
            )).all())
        if counts.get("dead"):
            raise RuntimeError(f"{counts['dead']} items were dead-lettered: {counts}")
        if counts.get("done", 0) == len(images):
            break
        if processes is not None:
            processes.check_running()
        if time.monotonic() > deadline:
            raise RuntimeError(f"the queue did not drain in {within} s: {counts}")
        await asyncio.sleep(0.05)
    cpu = cpu_seconds(running) - cpu
    async with runtime.session_factory() as session:
        last = await session.scalar(select(func.max(QueueItem.finished_at)).where(ours))
        await assert_each_frame_stored_once(session, frame_ids)
    assert last is not None
    return Round(len(images), (enqueued - started).total_seconds(),
                 (last - started).total_seconds(), cpu)


async def rounds(args: argparse.Namespace, api: Api, pids: Callable[[], set[int]],
                 processes: ProcessGroup | None = None) -> list[Round]:
    """`args.rounds` rounds of `args.frames` new frames each (distinct images every round)."""
    done = []
    for number in range(args.rounds):
        images = [small_frame(number * args.frames + index) for index in range(args.frames)]
        done.append(await measure(api, images, args.batch, args.timeout, pids, processes))
    return done


async def wait_for_heartbeats(api: Api, processes: ProcessGroup, count: int) -> None:
    deadline = time.monotonic() + 90
    while True:
        processes.check_running()
        async with api.runtime.session_factory() as session:
            seen = await session.scalar(select(func.count()).select_from(QueueWorker)
                                        .where(QueueWorker.kind == "celery"))
        if seen == count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} workers did not start in 90 s")
        await asyncio.sleep(0.2)


async def celery_run(args: argparse.Namespace, workers: int, work: Path,
                     provider_url: str) -> Result:
    await recreate_database(args.database_url)
    with redis.Redis.from_url(args.redis_url) as broker:
        broker.flushdb()
        data = work / f"celery-{workers}"
        async with running_api(data, args.database_url, provider_url,
                               broker_url=args.redis_url) as api:
            processes = ProcessGroup(data / "processes", framewatch_env(api.settings))
            try:
                for _ in range(workers):
                    processes.worker(concurrency=args.concurrency)
                await wait_for_heartbeats(api, processes, workers)

                def pids() -> set[int]:
                    return {pid for p in processes.processes for pid in p.group_pids()}

                measured = await rounds(args, api, pids, processes)
            finally:
                if args.verbose:
                    processes.stop_all()  # prints the end of each worker's log
                else:
                    for process in processes.processes:
                        process.stop()
        broker.flushdb()
    return Result(f"Celery, {workers} worker process{'es' if workers > 1 else ''}",
                  "PostgreSQL", f"{workers} × {args.concurrency}", args.frames, measured)


async def inprocess_run(args: argparse.Namespace, work: Path, provider_url: str) -> Result:
    data = work / "inprocess"
    data.mkdir(parents=True)
    url = f"sqlite+aiosqlite:///{data / 'framewatch.db'}"
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    async with running_api(data, url, provider_url,
                           worker_concurrency=args.inprocess_concurrency) as api:
        measured = await rounds(args, api, lambda: {os.getpid()})
    return Result("in-process worker (serve)", "SQLite", f"1 × {args.inprocess_concurrency}",
                  args.frames, measured)


def report(results: list[Result]) -> None:
    print(f"\n{'configuration':<28} {'database':<10} {'procs×conc':<10} {'frames':>6} "
          f"{'enqueue s':>9} {'total s':>8} {'items/s (median, rounds)':<30} {'CPU ms/item':>11}")
    for r in results:
        median = min(r.rounds, key=lambda one: abs(one.rate - r.rate))
        each = ", ".join(f"{one.rate:.1f}" for one in r.rounds)
        cpu = statistics.median(one.cpu_seconds / one.frames * 1000 for one in r.rounds)
        print(f"{r.name:<28} {r.database:<10} {r.workers:<10} {r.frames:>6} "
              f"{median.enqueue_seconds:>9.2f} {median.seconds:>8.2f} "
              f"{f'{r.rate:.1f}  ({each})':<30} {cpu:>11.1f}")
    rates = {r.name: r.rate for r in results}
    one, two = rates.get("Celery, 1 worker process"), rates.get("Celery, 2 worker processes")
    local = rates.get("in-process worker (serve)")
    if one and two:
        print(f"2 Celery workers / 1: {two / one:.2f}×")
    if local and one:
        print(f"in-process SQLite / 1 Celery worker (PostgreSQL): {local / one:.2f}×")
    if local and two:
        print(f"in-process SQLite / 2 Celery workers (PostgreSQL): {local / two:.2f}×")


async def run(args: argparse.Namespace) -> list[Result]:
    results = []
    with tempfile.TemporaryDirectory(prefix="framewatch-bench-") as tmp, \
            provider_process() as provider_url:
        work = Path(tmp)
        try:
            if not args.skip_celery:
                for workers in args.workers:
                    results.append(await celery_run(args, workers, work, provider_url))
                    print(f"done: {results[-1].name}: {results[-1].rate:.1f} items/s",
                          flush=True)
        finally:
            if not args.skip_celery:
                await recreate_database(args.database_url, drop_only=True)
        if not args.skip_inprocess:
            results.append(await inprocess_run(args, work, provider_url))
            print(f"done: {results[-1].name}: {results[-1].rate:.1f} items/s", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=400, help="frames per round")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds per configuration; the median is reported (default 3)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="Celery worker process counts to run (default: 1 2)")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="pool processes per Celery worker (default 1)")
    parser.add_argument("--inprocess-concurrency", type=int, default=2,
                        help="items the in-process worker runs at once (default 2, as serve)")
    parser.add_argument("--batch", type=int, default=50, help="frames per enqueue transaction")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per configuration")
    parser.add_argument("--skip-celery", action="store_true")
    parser.add_argument("--skip-inprocess", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="print worker logs at the end")
    parser.add_argument("--database-url",
                        default=os.environ.get("FRAMEWATCH_BENCH_DATABASE_URL", DEFAULT_DATABASE))
    parser.add_argument("--redis-url",
                        default=os.environ.get("FRAMEWATCH_BENCH_REDIS_URL", DEFAULT_REDIS))
    args = parser.parse_args()
    print(f"queue throughput: {args.rounds} rounds of {args.frames} frames per configuration, "
          "provider without latency"
          f" or failures; PostgreSQL {make_url(args.database_url).render_as_string()}, "
          f"Redis broker {args.redis_url}", flush=True)
    try:
        results = asyncio.run(run(args))
    except Exception as exc:
        print(f"queue throughput FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
