"""Live endpoint: requests/s and latency of GET /api/v1/detections/live under 64 pollers.

One `framewatch serve` process (SQLite; its cache in memory, or in Redis with `--backends redis`)
with 10 cameras whose latest frames have detections (sent through send-frame, sync, to the test
suite's fake DeepStack provider); `wrk` (or, without it, httpx clients) keeps 64 connections
busy for a fixed duration. Beside it, in the same run, a bare FastAPI app in its own uvicorn
process returns the very same bytes: the ceiling on this machine. Rounds alternate the two.

    .venv/bin/python bench/live_endpoint.py                        # ~1-2 minutes
    .venv/bin/python bench/live_endpoint.py --duration 30 --rounds 3
    .venv/bin/python bench/live_endpoint.py --profile /tmp/prof     # py-spy, where time goes

(`--profile` needs py-spy in the venv or on PATH; wrk, when installed, is the load generator:
`apt-get install wrk`; without it httpx clients in this process, which limit what is measured.)

Targets: framewatch ≥ 70% of the ceiling's requests/s, and its p99 ≤ 2× the ceiling's. The live
window is raised to an hour so that the 10 cameras stay in the view for the whole run (the view
itself is still rebuilt from the database at every cache expiry, FRAMEWATCH_LIVE_TTL_SECONDS).
Redis (with `--backends redis`): FRAMEWATCH_BENCH_REDIS_URL, default redis://127.0.0.1:6379/8,
flushed before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import (
    BIN,
    REDIS,
    cache_counts,
    cpu_seconds,
    flush_redis,
    framewatch_env,
    machine,
    migrate,
    percentile,
    profile_shares,
    send_frame,
    set_up_api,
    start_ceiling,
    start_provider,
    start_serve,
    verdict,
)

PATH = "/api/v1/detections/live"
WRK_REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"errors": %d, "non_2xx": %d}\\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


@dataclass
class Run:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_request: float
    misses: int | None = None  # live cache misses during the run (framewatch)
    errors: int = 0  # requests wrk gave up on (socket errors, past its 10 s timeout)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def wrk(url: str, key: str, args: argparse.Namespace, duration: float, script: Path) -> Run:
    command = ["wrk", "-t", str(args.threads), "-c", str(args.connections),
               "-d", f"{duration:g}s", "--timeout", "10s", "-s", str(script),
               "-H", f"Authorization: Bearer {key}", url + PATH]
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60,
                          check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")
    out = json.loads(lines[-1])
    if out["non_2xx"]:
        raise RuntimeError(f"{out['non_2xx']} non-2xx answers from {url}")
    # Socket errors and timeouts are counted, not fatal: on an overloaded machine a few
    # requests past wrk's timeout are a result to show, not a broken run.
    return Run(out["requests"], out["duration_us"] / 1e6, out["p50_us"] / 1000,
               out["p99_us"] / 1000, 0.0, errors=out["errors"])


async def httpx_load(url: str, key: str, connections: int, duration: float) -> Run:
    """The fallback without wrk: `connections` httpx clients in this process (the client's own
    CPU then limits what can be measured)."""
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    stop = time.monotonic() + duration

    async def poll() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=10,
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            while time.monotonic() < stop:
                started = time.perf_counter()
                try:
                    response = await client.get(PATH)
                except httpx.HTTPError as exc:
                    failures[type(exc).__name__] += 1
                    continue
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    failures[str(response.status_code)] += 1

    began = time.monotonic()
    await asyncio.gather(*(poll() for _ in range(connections)))
    if failures:
        raise RuntimeError(f"failed requests to {url}: {dict(failures)}")
    return Run(len(latencies), time.monotonic() - began, percentile(latencies, 50) * 1000,
               percentile(latencies, 99) * 1000, 0.0)


def measure(url: str, key: str, pid: int, args: argparse.Namespace, duration: float,
            script: Path, framewatch: bool = False) -> Run:
    before = cache_counts(url, "live") if framewatch else (0, 0, 0)
    cpu = cpu_seconds([pid])
    if args.tool == "wrk":
        run = wrk(url, key, args, duration, script)
    else:
        run = asyncio.run(httpx_load(url, key, args.connections, duration))
    run.cpu_ms_per_request = (cpu_seconds([pid]) - cpu) * 1000 / max(run.requests, 1)
    if framewatch:
        run.misses = cache_counts(url, "live")[1] - before[1]
    return run


# Where a request's time goes: the first of these found in a sampled stack (`;func@pkg/file.py`).
CATEGORIES = [
    ("auth: key looked up in the database (key cache expired)", (";check_key@",)),
    ("live view rebuilt from the database (cache miss)", (";live_view@",)),
    ("auth (bearer, key hash, key cache, context)",
     ("require.<locals>.dependency", "_authorize@", "HTTPBearer", "granted_by_cache@")),
    ("rate limiter", ("RateLimiter.check@",)),
    ("live cache lookups (generation + entry)", ("cached_live_view@",)),
    ("database session per request (open/close)", ("get_session@", "session_scope@")),
    ("sync dependency run in a worker thread", ("run_in_threadpool@", "WorkerThread.run@")),
    ("FastAPI dependency solving, parameter validation", ("solve_dependencies@",)),
    # Before the middleware that wrap `send`: uvicorn's own writing is not theirs.
    ("response sending", ("RequestResponseCycle.send@",)),
    ("security headers", ("send_with_headers@", "security_headers@")),
    ("routing", ("matches@",)),
    ("fast path: reading the poll (headers, query)", ("common_poll@",)),
    ("HTTP parsing (uvicorn)", ("data_received@",)),
    ("background jobs of serve", ("InProcessWorker", "run_job@")),
    # Code run in tasks of its own (redis-py's timeouts wrap each call in one) has no request
    # frames above it: counted by library.
    ("Redis client (redis-py), in tasks of its own", ("@redis/",)),
    ("SQLAlchemy / aiosqlite, in tasks or threads of their own", ("@sqlalchemy/", "@aiosqlite/")),
    ("middleware and ASGI plumbing", ("__call__@",)),
]


def profile(url: str, key: str, pid: int, args: argparse.Namespace, script: Path,
            name: str) -> None:
    """py-spy (samples while the GIL is held) on the server during one more measurement;
    prints where its time goes per request."""
    out = Path(args.profile) / f"live-{name}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    rate = 250
    spy_command = shutil.which("py-spy", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if spy_command is None:
        raise RuntimeError("--profile needs py-spy (pip install py-spy)")
    spy = subprocess.Popen([spy_command, "record", "--pid", str(pid), "--format", "raw",
                            "--rate", str(rate), "--gil", "--nonblocking", "--duration",
                            f"{args.duration:g}", "-o", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run = measure(url, key, pid, args, args.duration, script, framewatch=True)
    finally:
        spy.wait(args.duration + 60)
    print(f"  profiled run: {run.rate:.0f} req/s, CPU {run.cpu_ms_per_request:.3f} ms/req "
          f"(py-spy costs some); collapsed stacks: {out}")
    summarize_profile(out, rate, run.requests)


def summarize_profile(path: Path, rate: float, requests: int) -> None:
    total, by_category, self_time = profile_shares(path, CATEGORIES)
    per_request = 1000 / rate / max(requests, 1)
    print(f"  {total} samples with the GIL held = {total * per_request:.3f} ms per request:")
    for category, samples in by_category.most_common():
        print(f"    {samples / total:6.1%}  {samples * per_request:6.3f} ms/req  {category}")
    print("  self time, top 12:")
    for frame, samples in self_time.most_common(12):
        print(f"    {samples / total:6.1%}  {frame}")


async def prepare(url: str, provider_url: str, cameras: int) -> tuple[str, bytes]:
    """Provider, cameras, one processed frame (one person) per camera; the viewer key and
    the live view's bytes as framewatch serves them."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        names = [f"cam-{index:02d}" for index in range(cameras)]
        key = await set_up_api(client, provider_url, names)
        for index, camera in enumerate(names):
            answer = await send_frame(client, camera, index)
            if not answer.get("detections"):
                raise RuntimeError(f"no detection stored for {camera}: {answer}")
        response = await client.get(PATH, headers={"Authorization": f"Bearer {key}"})
        response.raise_for_status()
        view = response.json()
        if len(view["cameras"]) != cameras:
            raise RuntimeError(f"the live view shows {len(view['cameras'])} cameras")
        return key, response.content


def backend_run(args: argparse.Namespace, backend: str, work: Path, provider_url: str,
                script: Path) -> None:
    redis_url = args.redis_url if backend == "redis" else None
    data = work / backend
    env = framewatch_env(data, f"sqlite+aiosqlite:///{data / 'framewatch.db'}", redis_url,
                         live_window_seconds=3600)
    if redis_url:
        flush_redis(redis_url)
    migrate(env)
    serve, url = start_serve(env, work / "logs", f"serve-{backend}")
    ceiling = None
    try:
        key, body = asyncio.run(prepare(url, provider_url, args.cameras))
        (work / "body.json").write_bytes(body)
        ceiling, ceiling_url = start_ceiling(work / "body.json", work / "logs")
        print(f"[{backend}] live view: {len(body)} bytes, {args.cameras} cameras", flush=True)
        targets = {"framewatch": (url, serve.pid), "ceiling": (ceiling_url, ceiling.pid)}
        for target, pid in targets.values():  # warm-up
            measure(target, key, pid, args, 2, script)
        runs: dict[str, list[Run]] = {"ceiling": [], "framewatch": []}
        for number in range(args.rounds):
            for name, (target, pid) in targets.items():
                run = measure(target, key, pid, args, args.duration, script,
                              framewatch=name == "framewatch")
                runs[name].append(run)
                misses = f"  live cache misses {run.misses}" if run.misses is not None else ""
                misses += f"  socket errors/timeouts {run.errors}" if run.errors else ""
                print(f"  round {number + 1} {name:<10} {run.rate:8.0f} req/s  "
                      f"p50 {run.p50_ms:6.1f} ms  p99 {run.p99_ms:6.1f} ms  "
                      f"CPU {run.cpu_ms_per_request:.3f} ms/req{misses}", flush=True)
            serve.check()
            ceiling.check()
        report(backend, runs)
        if args.profile:
            profile(url, key, serve.pid, args, script, backend)
    except Exception:
        print(f"--- end of the server's log ---\n{serve.tail()}", file=sys.stderr)
        raise
    finally:
        if ceiling is not None:
            ceiling.stop()
        serve.stop()
        if redis_url:
            flush_redis(redis_url)


def report(backend: str, runs: dict[str, list[Run]]) -> None:
    def median(name: str, field: str) -> float:
        return statistics.median(getattr(run, field) for run in runs[name])

    fw_rate = statistics.median(run.rate for run in runs["framewatch"])
    top_rate = statistics.median(run.rate for run in runs["ceiling"])
    ratio = fw_rate / top_rate
    p99_ratio = median("framewatch", "p99_ms") / median("ceiling", "p99_ms")
    print(f"[{backend}] median of {len(runs['ceiling'])} round(s):")
    for name in ("ceiling", "framewatch"):
        rate = statistics.median(run.rate for run in runs[name])
        print(f"  {name:<10} {rate:8.0f} req/s  p50 {median(name, 'p50_ms'):6.1f} ms  "
              f"p99 {median(name, 'p99_ms'):6.1f} ms  "
              f"CPU {median(name, 'cpu_ms_per_request'):.3f} ms/req")
    print(f"  throughput framewatch/ceiling {ratio:.0%} (target ≥ 70%): {verdict(ratio >= 0.7)}")
    print(f"  p99 framewatch/ceiling {p99_ratio:.2f}× (target ≤ 2×): {verdict(p99_ratio <= 2)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measurements of each server (alternating); the median is shown")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--cameras", type=int, default=10)
    parser.add_argument("--backends", nargs="+", choices=["memory", "redis"],
                        default=["memory", "redis"],
                        help="framewatch's cache and rate limiter: in memory, or in Redis")
    parser.add_argument("--tool", choices=["wrk", "httpx"],
                        default="wrk" if shutil.which("wrk") else "httpx")
    parser.add_argument("--profile", metavar="DIR",
                        help="also run py-spy on framewatch during one more measurement")
    parser.add_argument("--redis-url",
                        default=os.environ.get("FRAMEWATCH_BENCH_REDIS_URL", REDIS))
    args = parser.parse_args()
    print(f"live endpoint: {args.connections} connections ({args.tool}), {args.duration:g} s × "
          f"{args.rounds} round(s) per server; {machine()}", flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="framewatch-bench-live-") as tmp:
            work = Path(tmp)
            script = work / "report.lua"
            script.write_text(WRK_REPORT)
            provider, provider_url = start_provider(work / "logs")
            try:
                for backend in args.backends:
                    backend_run(args, backend, work, provider_url, script)
            finally:
                provider.stop()
    except Exception as exc:
        print(f"live endpoint FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
