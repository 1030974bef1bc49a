"""Live cache hit rate: GET /api/v1/detections/live polled by 64 clients while 10 cameras send
2 frames a second each.

One `framewatch serve` process (PostgreSQL, a database of its own, created and dropped,
FRAMEWATCH_BENCH_LIVE_DATABASE_URL; or SQLite with `--database sqlite`); frames go through
send-frame (sync) to the test suite's fake DeepStack provider, at a fixed rate (open loop);
every processed frame bumps its camera's generation and the all-cameras one, which makes the
cached views stale. Meanwhile `wrk` (or httpx clients) keeps 64 connections polling, as fast as
answers come: all of them the all-cameras view (`--view all`, a wall of cameras), or each one
camera's view (`--view camera`). The hit rate of the `live` cache kind is read from the API
process's own counters (GET /api/v1/detections/statistics `cache.live`, asked with a `since`
of its own so that it is never a cached answer) before and after.

    .venv/bin/python bench/live_cache_hit_rate.py                 # ~1-2 minutes
    .venv/bin/python bench/live_cache_hit_rate.py --duration 60 --backends memory redis

Target: hit rate ≥ 95%.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import (
    POSTGRES,
    REDIS,
    cache_counts,
    flush_redis,
    fresh_serve,
    machine,
    recreate_database,
    send_frame,
    set_up_api,
    start_provider,
    verdict,
)
from bench.live_endpoint import WRK_REPORT, Run, httpx_load, wrk

TARGET = 0.95


def wrk_script(paths: list[str]) -> str:
    """WRK_REPORT, plus (for several paths) each request to the next path in turn."""
    if len(paths) == 1:
        return WRK_REPORT
    return (f"local paths = {{{', '.join(json.dumps(p) for p in paths)}}}\n"
            "local n = 0\nrequest = function()\n  n = n + 1\n"
            "  return wrk.format(nil, paths[n % #paths + 1])\nend\n" + WRK_REPORT)


async def publish(url: str, cameras: list[str], rate: float, duration: float) -> int:
    """Frames at `rate` per second (open loop) for `duration` seconds; how many were stored."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        started = time.monotonic()
        tasks = []
        for index in range(int(rate * duration)):
            await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
            tasks.append(asyncio.create_task(
                send_frame(client, cameras[index % len(cameras)], 5000 + index)))
        return len(await asyncio.gather(*tasks))


async def load_and_publish(args: argparse.Namespace, url: str, key: str, cameras: list[str],
                           script: Path) -> tuple[Run, int, float]:
    rate = args.fps * len(cameras)
    began = time.monotonic()
    if args.tool == "wrk":
        options = SimpleNamespace(threads=2, connections=args.pollers)
        polling = asyncio.to_thread(wrk, url, key, options, args.duration, script)
    else:
        polling = httpx_load(url, key, args.pollers, args.duration)
    run, frames = await asyncio.gather(polling, publish(url, cameras, rate, args.duration))
    return run, frames, time.monotonic() - began


def backend_run(args: argparse.Namespace, backend: str, view: str, work: Path,
                provider_url: str) -> None:
    redis_url = args.redis_url if backend == "redis" else None
    data = work / f"{backend}-{view}"
    serve, url, database = fresh_serve(
        data, None if args.database == "sqlite" else args.database_url, redis_url,
        work / "logs", f"serve-{backend}-{view}")
    try:
        cameras = [f"cam-{index:02d}" for index in range(args.cameras)]

        async def setup() -> str:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                key = await set_up_api(client, provider_url, cameras)
                for index, camera in enumerate(cameras):  # every camera in the view at once
                    await send_frame(client, camera, index)
                return key

        key = asyncio.run(setup())
        paths = (["/api/v1/detections/live"] if view == "all" else
                 [f"/api/v1/detections/live?camera_id={camera}" for camera in cameras])
        script = work / f"poll-{view}.lua"
        script.write_text(wrk_script(paths))
        if view != "all" and args.tool != "wrk":
            raise RuntimeError("--view camera needs wrk")
        hits, misses, coalesced = cache_counts(url, "live")
        run, frames, elapsed = asyncio.run(load_and_publish(args, url, key, cameras, script))
        after_hits, after_misses, after_coalesced = cache_counts(url, "live")
        serve.check()
    except Exception:
        print(f"--- end of the server's log ---\n{serve.tail()}", file=sys.stderr)
        raise
    finally:
        serve.stop()
        if redis_url:
            flush_redis(redis_url)
        if args.database == "postgresql":
            asyncio.run(recreate_database(database, drop_only=True))
    hits, misses = after_hits - hits, after_misses - misses
    coalesced = after_coalesced - coalesced
    rate = hits / max(hits + misses, 1)
    stored_rate = (hits - coalesced) / max(hits + misses, 1)
    print(f"[{backend}, {view} view] {run.requests / elapsed:.0f} polls/s (p50 "
          f"{run.p50_ms:.1f} ms, p99 {run.p99_ms:.1f} ms), "
          f"{frames / elapsed:.1f} frames/s stored ({frames} frames)"
          + (f"; {run.errors} polls past wrk's timeout or failed" if run.errors else ""))
    per_frame = misses / max(frames, 1)
    print(f"  live cache: {hits:,} hits ({coalesced:,} of them waited for a rebuild in flight), "
          f"{misses:,} misses = rebuilds ({per_frame:.1f} per frame stored): "
          f"hit rate {rate:.1%} (target ≥ {TARGET:.0%}): {verdict(rate >= TARGET)}; "
          f"served from a stored entry {stored_rate:.1%}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20, help="seconds of load")
    parser.add_argument("--cameras", type=int, default=10)
    parser.add_argument("--fps", type=float, default=2, help="frames per second per camera")
    parser.add_argument("--pollers", type=int, default=64)
    parser.add_argument("--view", nargs="+", choices=["all", "camera"], default=["all"],
                        help="what the pollers ask for: the all-cameras view or one camera's")
    parser.add_argument("--backends", nargs="+", choices=["memory", "redis"],
                        default=["memory"])
    parser.add_argument("--tool", choices=["wrk", "httpx"],
                        default="wrk" if shutil.which("wrk") else "httpx")
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--database-url", default=os.environ.get(
        "FRAMEWATCH_BENCH_LIVE_DATABASE_URL", f"{POSTGRES}/framewatch_bench_live"))
    parser.add_argument("--redis-url",
                        default=os.environ.get("FRAMEWATCH_BENCH_REDIS_URL", REDIS))
    args = parser.parse_args()
    print(f"live cache hit rate: {args.cameras} cameras × {args.fps:g} frames/s, "
          f"{args.pollers} pollers ({args.tool}), {args.duration:g} s, {args.database}; "
          f"{machine()}", flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="framewatch-bench-hits-") as tmp:
            work = Path(tmp)
            provider, provider_url = start_provider(work / "logs")
            try:
                for backend in args.backends:
                    for view in args.view:
                        backend_run(args, backend, view, work, provider_url)
            finally:
                provider.stop()
    except Exception as exc:
        print(f"live cache hit rate FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
