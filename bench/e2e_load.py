"""End-to-end load test: simulated cameras → 2 API processes → Celery → WebSocket subscribers.

A deployment in miniature on 127.0.0.1: two `framewatch serve` processes and two
`framewatch worker` processes (prefork, `--worker-concurrency` pool processes each) sharing one
PostgreSQL database (created and dropped) and one Redis database (broker, cache and the live
stream between processes; flushed), `framewatch beat` (the sweeper and the other periodic jobs,
as in a real deployment), and the test suite's FlakyProvider as the provider, in a process of its
own: the DeepStack wire format, `--latency` ± `--jitter` seconds per call and an `--error-rate`
of HTTP 500s. The provider is configured through the API (docs/providers.md), as an integrator
would, with its usual quick retries.

`--cameras` simulated cameras each send one real JPEG from tests/data per second (open loop,
staggered over the second, cameras split over the two API processes as a load balancer would) to
send-frame with `mode=async`, for `--duration` seconds. `--subscribers` WebSocket clients (a
process of their own, half on each API process, authenticated with a ws-token) subscribe to
every detection. Measured:

- frames/s accepted (202) and processed (first WebSocket receipt), over the run and its second
  half (the sustained rate);
- the queue backlog (pending + processing) every second, and its slope over the second half,
  read from the queue table (what GET /api/v1/detections/queue-stats counts) rather than
  through the API, which may be the bottleneck;
- latency from the send-frame request to each WebSocket receipt, p50/p95/p99;
- errors: refused or failed send-frame requests, dead-lettered items, retries, WebSocket
  disconnects, frames not delivered to every subscriber by the end of the drain;
- PostgreSQL transactions and rows written per processed frame (pg_stat_database);
- CPU per component (user + system from /proc, per process group; PostgreSQL: the backends of
  this database; Redis: the whole server, which other users may share) during the run, in
  cores and in ms per processed frame.

Targets (issue 8): processed frames/s ≥ 97 % of the offered load, a flat backlog (slope ≤ 0.5
item/s over the second half, at most 2 s of load queued at the end), p95 ≤ 500 ms.

    .venv/bin/python bench/e2e_load.py                # short: 20 cameras for 20 s (~1-2 min)
    .venv/bin/python bench/e2e_load.py --full         # 100 cameras for 120 s
    .venv/bin/python bench/e2e_load.py --full --py-spy 20 --out /tmp/e2e   # and profile

Writes `e2e_load.json` and `e2e_load.png` (backlog, throughput and latency over time) into
`--out` (default: a new folder under /tmp), with the processes' logs and, with `--py-spy`,
folded stacks of one API process and one worker (py-spy must be installed). PostgreSQL:
FRAMEWATCH_BENCH_E2E_DATABASE_URL (default .../fw_e2e; the user must be allowed to create
databases); Redis: FRAMEWATCH_BENCH_E2E_REDIS_URL (default db 10, flushed). Exits 1 when the
set-up fails or a process dies; missing a target is reported, not an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import (
    FRAMEWATCH,
    ROOT,
    Proc,
    admin,
    collapsed_stacks,
    flush_redis,
    framewatch_env,
    free_port,
    machine,
    migrate,
    percentile,
    recreate_database,
    start_serve,
    verdict,
    wait_until_up,
)

DEFAULT_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:5432/fw_e2e"
DEFAULT_REDIS = "redis://127.0.0.1:6379/10"
IMAGES = sorted((ROOT / "tests" / "data").glob("*.jpg"))
TARGET_P95_MS = 500.0
TARGET_RATE_SHARE = 0.97  # processed / offered
FLAT_SLOPE = 0.5  # items/s of backlog growth over the second half
FLAT_SECONDS = 2.0  # of offered load left queued when sending stops
MAX_IN_FLIGHT_PER_CAMERA = 10  # beyond it a camera skips frames (counted) instead of piling up


# The subscribers' process --------------------------------------------------------------------

async def run_subscribers(urls: list[str], token: str, count: int, out: Path) -> None:
    """`count` clients, spread over `urls`, subscribed to every detection; "ready" on stdout once
    all are subscribed; on a line from stdin, every receipt (frame id, time.time()) to `out`."""
    from websockets.asyncio.client import connect

    received: list[list[tuple[int, float]]] = [[] for _ in range(count)]
    ended: list[str | None] = [None] * count
    subscribed = [asyncio.Event() for _ in range(count)]

    async def one(index: int) -> None:
        url = f"{urls[index % len(urls)]}?token={token}"
        try:
            async with connect(url, max_queue=None, open_timeout=60) as socket:
                await socket.send(json.dumps({"type": "subscribe"}))
                async for raw in socket:
                    now = time.time()
                    message = json.loads(raw)
                    if message.get("type") == "detection":
                        received[index].append((message["frame_id"], now))
                    elif message.get("type") == "subscribed":
                        subscribed[index].set()
        except Exception as exc:  # recorded: the report counts lost connections
            ended[index] = f"{type(exc).__name__}: {exc}"
        else:
            ended[index] = "closed by the server"

    tasks = [asyncio.create_task(one(i)) for i in range(count)]
    try:
        await asyncio.wait_for(asyncio.gather(*(s.wait() for s in subscribed)), 60)
    except TimeoutError:
        print(f"failed: {[reason for reason in ended if reason][:3]}", flush=True)
        return
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    lost = [reason for reason in ended if reason]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    out.write_text(json.dumps({"received": received, "lost": lost}))  # noqa: ASYNC240


class Subscribers:
    """The subscribers' process, driven over its stdin/stdout."""

    def __init__(self, ws_urls: list[str], token: str, count: int, work: Path) -> None:
        self.out = work / "receipts.json"
        self.log = (work / "logs" / "subscribers.log").open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, __file__, "--subscribers-process", str(count), "--receipts",
             str(self.out), "--token", token, *ws_urls],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
            start_new_session=True,
        )

    async def ready(self) -> None:
        assert self.popen.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.popen.stdout.readline), 90)
        if line.strip() != "ready":
            raise RuntimeError(f"the WebSocket subscribers did not connect: {line.strip()!r}")

    async def results(self) -> dict[str, Any]:
        assert self.popen.stdin is not None
        self.popen.stdin.write("stop\n")
        self.popen.stdin.flush()
        await asyncio.wait_for(asyncio.to_thread(self.popen.wait), 60)
        result: dict[str, Any] = json.loads(self.out.read_text())
        return result

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)
        self.log.close()


# The deployment ------------------------------------------------------------------------------

@dataclass
class Cluster:
    procs: list[Proc] = field(default_factory=list)
    api_urls: list[str] = field(default_factory=list)
    provider_url: str = ""
    subscribers: Subscribers | None = None

    def by_role(self) -> dict[str, list[Proc]]:
        roles: dict[str, list[Proc]] = defaultdict(list)
        for proc in self.procs:
            roles[proc.name.rstrip("0123456789")].append(proc)
        return roles

    def check(self) -> None:
        for proc in self.procs:
            proc.check()

    def stop(self) -> None:
        if self.subscribers is not None:
            self.subscribers.stop()
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop()


def start_cluster(args: argparse.Namespace, cluster: Cluster, data: Path, logs: Path) -> None:
    port = free_port()
    provider = Proc("provider", [
        sys.executable, "-m", "tests.support.flaky_provider", "--port", str(port),
        "--latency", str(args.latency), "--jitter", str(args.jitter),
        "--fail-rate", str(args.error_rate),
    ], logs)
    cluster.procs.append(provider)
    cluster.provider_url = f"http://127.0.0.1:{port}"
    wait_until_up(f"{cluster.provider_url}/v1/vision/detection", provider)  # 405: it is up

    env = framewatch_env(data, args.database_url, args.redis_url, broker_url=args.redis_url)
    migrate(env)
    for index in range(2):  # one after the other: the first creates the admin key
        proc, url = start_serve(env, logs, name=f"api{index}")
        cluster.procs.append(proc)
        cluster.api_urls.append(url)
    for index in range(2):
        cluster.procs.append(Proc(f"worker{index}", [
            FRAMEWATCH, "worker", f"--concurrency={args.worker_concurrency}"], logs, env))
    cluster.procs.append(Proc("beat", [FRAMEWATCH, "beat"], logs, env))


async def configure(client: httpx.AsyncClient, cluster: Cluster, cameras: list[str]) -> str:
    """The simulator as the default provider, the cameras; a ws-token of a new viewer key."""
    await expect(client.post("/api/v1/providers", headers=admin(), json={
        "name": "simulator", "kind": "deepstack", "base_url": cluster.provider_url,
        "timeout_seconds": 5, "max_retries": 2, "detection_types": ["person"],
        "min_confidence": 0.1, "is_default": True, "options": {"retry_backoff_seconds": 0.05},
    }), 201)
    for camera in cameras:
        await expect(client.post("/api/v1/cameras", headers=admin(),
                                 json={"id": camera, "name": f"Camera {camera}"}), 201)
    key = await expect(client.post("/api/v1/keys", headers=admin(),
                                   json={"name": "load-test-viewer", "role": "viewer"}), 201)
    token = await expect(client.post("/api/v1/auth/ws-token",
                                     headers={"Authorization": f"Bearer {key['key']}"}), 200)
    return str(token["token"])


async def expect(request: Any, status: int) -> dict[str, Any]:
    response: httpx.Response = await request
    if response.status_code != status:
        raise RuntimeError(f"{response.request.method} {response.request.url.path}: "
                           f"{response.status_code} {response.text[:300]}")
    body: dict[str, Any] = response.json()
    return body


async def queue_stats(client: httpx.AsyncClient) -> dict[str, Any]:
    return await expect(client.get("/api/v1/detections/queue-stats", headers=admin()), 200)


async def wait_for_workers(client: httpx.AsyncClient, cluster: Cluster, count: int) -> None:
    deadline = time.monotonic() + 120
    while True:
        cluster.check()
        stats = await queue_stats(client)
        if sum(w["kind"] == "celery" for w in stats["workers"]) >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} Celery workers did not report in 120 s: "
                               f"{stats['workers']}")
        await asyncio.sleep(0.5)


# CPU per component ---------------------------------------------------------------------------

def process_table() -> dict[int, tuple[int, float]]:
    """pid → (process group, CPU seconds so far) of every process."""
    table = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            table[int(entry.name)] = (int(fields[2]), (int(fields[11]) + int(fields[12])) / tick)
    return table


def redis_server_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "redis-server":
                pids.append(int(entry.name))
    return pids


class CpuMeter:
    """CPU seconds per component between `start` and the last `sample`. A process first seen
    after the start (a new PostgreSQL backend) counts from zero: it was born during the run."""

    def __init__(self) -> None:
        self.first: dict[tuple[str, int], float] = {}
        self.last: dict[tuple[str, int], float] = {}
        self.started = False

    def sample(self, groups: dict[str, list[int]], pids: dict[str, list[int]]) -> None:
        """`groups`: component → process groups; `pids`: component → single pids."""
        table = process_table()
        members: dict[str, list[int]] = defaultdict(list)
        for pid, (group, _) in table.items():
            for component, leaders in groups.items():
                if group in leaders:
                    members[component].append(pid)
        for component, more in pids.items():
            members[component] += more
        for component, chosen in members.items():
            for pid in chosen:
                if pid not in table:
                    continue
                key = (component, pid)
                self.first.setdefault(key, table[pid][1] if not self.started else 0.0)
                self.last[key] = table[pid][1]
        self.started = True

    def seconds(self) -> dict[str, float]:
        totals: dict[str, float] = defaultdict(float)
        for key, value in self.last.items():
            totals[key[0]] += value - self.first[key]
        return dict(totals)


async def database_connection(database_url: str) -> Any:
    import asyncpg
    from sqlalchemy.engine import make_url

    target = make_url(database_url)
    connection = await asyncpg.connect(host=target.host or "127.0.0.1", port=target.port or 5432,
                                       user=target.username or "postgres",
                                       password=target.password, database=target.database)
    return connection


# The load ------------------------------------------------------------------------------------

@dataclass
class Send:
    camera: str
    scheduled: float
    started: float
    finished: float = 0.0
    status: int | str = 0
    frame_id: int | None = None


@dataclass
class Run:
    t0: float = 0.0
    sends: list[Send] = field(default_factory=list)
    duration: float = 0.0
    skipped: int = 0
    cpu: dict[str, float] | None = None  # CPU seconds per component from t0 - 1 to t0 + duration
    samples: list[dict[str, Any]] = field(default_factory=list)


async def drive(args: argparse.Namespace, clients: list[httpx.AsyncClient], cameras: list[str],
                run: Run) -> None:
    """Every camera sends one frame a second until the duration is over (open loop)."""
    images = [path.read_bytes() for path in IMAGES]
    in_flight: Counter[str] = Counter()
    pending: set[asyncio.Task[None]] = set()

    async def send(client: httpx.AsyncClient, record: Send, image: bytes) -> None:
        try:
            response = await client.post(
                "/api/v1/detections/send-frame", headers=admin(),
                files={"image": (f"{record.camera}.jpg", image, "image/jpeg")},
                data={"camera_id": record.camera, "mode": "async"}, timeout=60,
            )
            record.status = response.status_code
            if response.status_code == 202:
                record.frame_id = int(response.json()["frame_id"])
        except httpx.HTTPError as exc:
            record.status = type(exc).__name__
        finally:
            record.finished = time.time()
            in_flight[record.camera] -= 1

    async def camera_loop(index: int, camera: str) -> None:
        client = clients[index % len(clients)]
        offset = index / len(cameras)
        for second in range(int(args.duration)):
            scheduled = run.t0 + offset + second
            await asyncio.sleep(max(0.0, scheduled - time.time()))
            if in_flight[camera] >= MAX_IN_FLIGHT_PER_CAMERA:
                run.skipped += 1
                continue
            in_flight[camera] += 1
            record = Send(camera, scheduled, time.time())
            run.sends.append(record)
            task = asyncio.create_task(send(client, record, images[(index + second) % len(images)]))
            pending.add(task)
            task.add_done_callback(pending.discard)

    await asyncio.gather(*(camera_loop(i, camera) for i, camera in enumerate(cameras)))
    if pending:
        await asyncio.wait(pending, timeout=60)


QUEUE_COUNTS = """
    SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
           count(*) FILTER (WHERE status = 'processing') AS processing,
           count(*) FILTER (WHERE status = 'done') AS done,
           count(*) FILTER (WHERE status = 'dead') AS dead,
           count(*) FILTER (WHERE attempts > 1) AS retried,
           extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'pending')) AS oldest
    FROM detection_processing_queue"""
SAMPLER_TRANSACTIONS = 4  # statements of one sample, each its own transaction
DATABASE_COUNTS = """
    SELECT xact_commit + xact_rollback AS transactions, tup_inserted + tup_updated
           + tup_deleted AS rows_written, tup_fetched AS rows_read
    FROM pg_stat_database WHERE datname = current_database()"""


async def sample_forever(cluster: Cluster, meter: CpuMeter, database: Any,
                         subscribers: Subscribers, run: Run) -> None:
    """Every second: the queue's counts (read from its table: the API may be the bottleneck),
    the database's transaction counters and everyone's CPU."""
    roles = cluster.by_role()
    groups = {role: [p.pid for p in procs] for role, procs in roles.items()}
    groups["subscribers"] = [subscribers.popen.pid]
    redis_pids = redis_server_pids()
    own = await database.fetchval("SELECT pg_backend_pid()")
    while True:
        started = time.monotonic()
        cluster.check()
        rows = await database.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        backends = [row["pid"] for row in rows if row["pid"] != own]
        meter.sample(groups, {"postgres": backends, "redis": redis_pids,
                              "load generator": [os.getpid()]})
        if run.cpu is None and time.time() >= run.t0 + run.duration:
            run.cpu = meter.seconds()  # the sending window only, like the rates
        queue = await database.fetchrow(QUEUE_COUNTS)
        # pg_stat_database is a snapshot per transaction: ask for a fresh one every time.
        await database.execute("SELECT pg_stat_clear_snapshot()")
        totals = await database.fetchrow(DATABASE_COUNTS)
        oldest = queue["oldest"]
        run.samples.append({
            "t": round(time.time() - run.t0, 2), **{k: queue[k] for k in (
                "pending", "processing", "done", "dead", "retried")},
            "oldest_pending_age_seconds": round(float(oldest), 2) if oldest is not None else None,
            **{k: int(totals[k]) for k in ("transactions", "rows_written", "rows_read")},
        })
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


async def profile(args: argparse.Namespace, cluster: Cluster, out: Path) -> list[Path]:
    """py-spy on one API process and one worker (with its pool processes) at once, from a third
    of the run on, folded stacks (`--format raw`) into out/py-spy."""
    await asyncio.sleep(args.duration / 3)
    folder = out / "py-spy"
    folder.mkdir(exist_ok=True)
    roles = cluster.by_role()
    targets = [("api0", roles["api"][0].pid, []), ("worker0", roles["worker"][0].pid,
                                                    ["--subprocesses"])]
    runs, paths = [], []
    for name, pid, extra in targets:
        path = folder / f"{name}.txt"
        paths.append(path)
        runs.append(await asyncio.create_subprocess_exec(
            args.py_spy_command, "record", "--pid", str(pid), "--duration", str(int(args.py_spy)),
            "--rate", "50", "--nonblocking", "--format", "raw", "--output", str(path), *extra,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        ))
    for process in runs:
        await asyncio.wait_for(process.wait(), args.py_spy + 60)
    return paths


def summarize_profile(path: Path, top: int = 12) -> dict[str, Any]:
    """The functions (own time, and inclusive time of framewatch's own functions) with the
    largest share of the samples of a folded-stacks file."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for frames, count in collapsed_stacks(path):
        total += count
        own[frames[-1]] += count
        for name in {f for f in frames if "framewatch/" in f and "/site-packages/" not in f}:
            inclusive[name] += count
    if not total:
        return {"samples": 0}

    def share(counter: Counter[str]) -> list[list[Any]]:
        return [[name, round(100 * n / total, 1)] for name, n in counter.most_common(top)]

    return {"samples": total, "self_percent": share(own), "framewatch_inclusive_percent":
            share(inclusive)}


# The report ----------------------------------------------------------------------------------

def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t, y)."""
    if len(points) < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (y - mean_y) for t, y in points) / spread if spread else 0.0


def analyse(args: argparse.Namespace, run: Run, receipts: dict[str, Any], cpu: dict[str, float],
            cameras: int) -> dict[str, Any]:
    duration = float(args.duration)
    offered = cameras  # frames/s
    sent_at = {s.frame_id: s.started for s in run.sends if s.frame_id is not None}
    latencies, first_receipt = [], {}
    for client in receipts["received"]:
        for frame_id, at in client:
            if frame_id in sent_at:
                latencies.append((sent_at[frame_id], 1000 * (at - sent_at[frame_id])))
                first_receipt[frame_id] = min(at, first_receipt.get(frame_id, at))
    counts_by_client = [Counter(frame_id for frame_id, _ in client)
                        for client in receipts["received"]]
    undelivered = sum(1 for frame_id in sent_at
                      if any(c[frame_id] == 0 for c in counts_by_client))
    values = [ms for _, ms in latencies]
    half = run.t0 + duration / 2
    processed_second_half = sum(1 for at in first_receipt.values()
                                if half <= at < run.t0 + duration)
    during = [s for s in run.samples if "pending" in s and s["t"] <= duration]
    backlog = [(s["t"], s["pending"] + s["processing"]) for s in during]
    late = [s for s in backlog if s[0] >= duration / 2]
    at_end = backlog[-1][1] if backlog else 0
    done_during = (during[-1]["done"] - during[0]["done"]) if len(during) > 1 else 0
    # The sampler's own 4 statements a second are not the load's.
    transactions = ((during[-1]["transactions"] - during[0]["transactions"]
                     - SAMPLER_TRANSACTIONS * (len(during) - 1)) if len(during) > 1 else 0)
    written = during[-1]["rows_written"] - during[0]["rows_written"] if len(during) > 1 else 0
    statuses = Counter(str(s.status) for s in run.sends)
    accepted = sum(1 for s in run.sends if s.status == 202 and s.finished < run.t0 + duration)
    answered = [1000 * (s.finished - s.started) for s in run.sends if s.status == 202]
    final = next((s for s in reversed(run.samples) if "pending" in s), {})
    p95 = percentile(values, 95)
    sustained = processed_second_half / (duration / 2)
    backlog_slope = slope(late)
    flat = backlog_slope <= FLAT_SLOPE and at_end <= FLAT_SECONDS * offered
    return {
        "offered_frames_per_second": offered,
        "accepted_frames_per_second": round(accepted / duration, 2),  # answered in the window
        "accepted_frames": statuses["202"],
        "processed_frames_per_second": {
            "whole_run": round(len([a for a in first_receipt.values()
                                    if a < run.t0 + duration]) / duration, 2),
            "second_half": round(sustained, 2),
            "queue_done_per_second": round(done_during / max(1.0, during[-1]["t"] - during[0]["t"])
                                           if len(during) > 1 else 0.0, 2),
        },
        "backlog": {"at_end_of_sending": at_end, "max": max((b for _, b in backlog), default=0),
                    "slope_second_half_items_per_second": round(backlog_slope, 2),
                    "oldest_pending_age_at_end_seconds":
                        during[-1]["oldest_pending_age_seconds"] if during else None,
                    "left_after_drain": final.get("pending", 0) + final.get("processing", 0)},
        "latency_ms": {"receipts": len(values), "p50": round(percentile(values, 50), 1),
                       "p95": round(p95, 1), "p99": round(percentile(values, 99), 1),
                       "max": round(max(values), 1) if values else None},
        "errors": {
            "send_frame_by_status": dict(statuses),
            "frames_skipped_by_cameras": run.skipped,
            "dead_lettered": final.get("dead", 0),
            "items_retried": final.get("retried", 0),
            "websocket_connections_lost": receipts["lost"],
            "frames_not_delivered_to_every_subscriber": undelivered,
        },
        "send_frame_response_ms": {
            "p50": round(percentile(answered, 50), 1), "p95": round(percentile(answered, 95), 1),
            "p99": round(percentile(answered, 99), 1)},
        "load_generator_lateness_ms_p99": round(percentile(
            [1000 * (s.started - s.scheduled) for s in run.sends], 99), 1),
        "postgres_per_processed_frame": {
            "transactions": round(transactions / done_during, 2) if done_during else None,
            "rows_written": round(written / done_during, 2) if done_during else None},
        "cpu": {name: {"seconds": round(seconds, 2), "cores": round(seconds / duration, 3),
                       "ms_per_accepted_frame": round(1000 * seconds / accepted, 2)
                       if accepted else None,
                       "ms_per_processed_frame": round(1000 * seconds / done_during, 2)
                       if done_during else None}
                for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1])},
        "targets": {
            "rate": verdict(sustained >= TARGET_RATE_SHARE * offered),
            "flat_backlog": verdict(flat),
            "p95_at_most_500_ms": verdict(p95 <= TARGET_P95_MS),
        },
        "series": series(run, latencies, first_receipt, duration),
    }


def series(run: Run, latencies: list[tuple[float, float]], first_receipt: dict[int, float],
           duration: float) -> dict[str, Any]:
    """Per 5-second bucket of sending time: latency percentiles; per second: frames accepted
    (202 answered) and processed (first WebSocket receipt)."""
    buckets: dict[int, list[float]] = defaultdict(list)
    for sent, ms in latencies:
        buckets[int((sent - run.t0) // 5)].append(ms)
    processed: Counter[int] = Counter(int(at - run.t0) for at in first_receipt.values())
    accepted: Counter[int] = Counter(int(s.finished - run.t0) for s in run.sends
                                     if s.frame_id is not None)
    end = max([*processed, int(duration)]) + 1
    return {
        "latency_by_5s": [{"t": 5 * b + 2.5, "p50": percentile(v, 50), "p95": percentile(v, 95),
                           "p99": percentile(v, 99)} for b, v in sorted(buckets.items())],
        "per_second": [{"t": t, "accepted": accepted[t], "processed": processed[t]}
                       for t in range(0, end)],
        "queue": run.samples,
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = result["results"]["series"]
    duration = result["config"]["duration_seconds"]
    figure, (rate_ax, backlog_ax, latency_ax) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    per_second = data["per_second"]
    rate_ax.plot([p["t"] for p in per_second], [p["accepted"] for p in per_second],
                 label="accepted (202 answered)", color="tab:blue")
    rate_ax.plot([p["t"] for p in per_second], [p["processed"] for p in per_second],
                 label="processed (first WebSocket receipt)", color="tab:green")
    rate_ax.set_ylabel("frames/s")
    rate_ax.legend(loc="lower right")
    queue = [q for q in data["queue"] if "pending" in q]
    backlog_ax.plot([q["t"] for q in queue], [q["pending"] + q["processing"] for q in queue],
                    color="tab:red", label="pending + processing")
    backlog_ax.set_ylabel("queue backlog (items)")
    backlog_ax.legend(loc="upper left")
    latency = data["latency_by_5s"]
    for key, style in (("p50", "-"), ("p95", "--"), ("p99", ":")):
        latency_ax.plot([b["t"] for b in latency], [b[key] / 1000 for b in latency], style,
                        color="tab:purple", label=key)
    latency_ax.axhline(TARGET_P95_MS / 1000, color="grey", linewidth=0.8)
    latency_ax.set_ylabel("send-frame → WebSocket (s)")
    latency_ax.set_xlabel("seconds since the first frame (by sending time)")
    latency_ax.legend(loc="upper left")
    for axis in (rate_ax, backlog_ax, latency_ax):
        axis.axvline(duration, color="grey", linewidth=0.8, linestyle="--")
        axis.grid(alpha=0.3)
    config = result["config"]
    figure.suptitle(f"framewatch end to end: {config['cameras']} cameras × 1 frame/s, "
                    f"2 API + 2 Celery workers × {config['worker_concurrency']}, provider "
                    f"{config['provider_latency_ms']} ± {config['provider_jitter_ms']} ms")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def print_report(result: dict[str, Any]) -> None:
    r = result["results"]
    rate, backlog, latency, errors = (r["processed_frames_per_second"], r["backlog"],
                                      r["latency_ms"], r["errors"])
    print(f"\noffered {r['offered_frames_per_second']} frames/s, accepted "
          f"{r['accepted_frames_per_second']}/s; processed {rate['whole_run']}/s over the run, "
          f"{rate['second_half']}/s over its second half (queue: {rate['queue_done_per_second']}"
          f" done/s)")
    print(f"backlog: {backlog['at_end_of_sending']} items when sending stopped (max "
          f"{backlog['max']}, slope {backlog['slope_second_half_items_per_second']} items/s over "
          f"the second half, oldest {backlog['oldest_pending_age_at_end_seconds']} s); "
          f"{backlog['left_after_drain']} left after the drain")
    print(f"send-frame → WebSocket: p50 {latency['p50']} ms, p95 {latency['p95']} ms, "
          f"p99 {latency['p99']} ms ({latency['receipts']} receipts)")
    answer = r["send_frame_response_ms"]
    print(f"send-frame answered (202) in p50 {answer['p50']} ms, p95 {answer['p95']} ms, p99 "
          f"{answer['p99']} ms; load generator late by ≤ {r['load_generator_lateness_ms_p99']} ms"
          " (p99)")
    print(f"errors: {json.dumps(errors)}")
    print(f"PostgreSQL per processed frame: {json.dumps(r['postgres_per_processed_frame'])}")
    print("CPU during the sending window (ms per accepted / per processed frame):")
    for name, figures in r["cpu"].items():
        print(f"  {name:<15} {figures['seconds']:>8.1f} s  {figures['cores']:>6.2f} cores  "
              f"{figures['ms_per_accepted_frame']} / {figures['ms_per_processed_frame']} ms")
    targets = r["targets"]
    print(f"targets: {targets['rate']} ≥ {TARGET_RATE_SHARE:.0%} of the offered load, "
          f"{targets['flat_backlog']} flat backlog, {targets['p95_at_most_500_ms']} p95 ≤ 500 ms")


# Putting it together -------------------------------------------------------------------------

async def load_test(args: argparse.Namespace, out: Path, data: Path,
                    cluster: Cluster) -> dict[str, Any]:
    cameras = [f"cam{index:03d}" for index in range(args.cameras)]
    await recreate_database(args.database_url)
    flush_redis(args.redis_url)
    start_cluster(args, cluster, data, out / "logs")
    clients = [httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(
        max_connections=args.cameras, max_keepalive_connections=args.cameras))
        for url in cluster.api_urls]
    database = await database_connection(args.database_url)
    try:
        token = await configure(clients[0], cluster, cameras)
        await wait_for_workers(clients[0], cluster, 2)
        ws_urls = [url.replace("http://", "ws://") + "/api/v1/detections/ws"
                   for url in cluster.api_urls]
        subscribers = cluster.subscribers = Subscribers(ws_urls, token, args.subscribers, out)
        await subscribers.ready()
        await warm_up(args, clients, cameras)
        load = {"before": os.getloadavg()}
        meter, run = CpuMeter(), Run(t0=time.time() + 1, duration=args.duration)
        sampler = asyncio.create_task(sample_forever(cluster, meter, database, subscribers, run))
        profiling = asyncio.create_task(profile(args, cluster, out)) if args.py_spy else None
        await drive(args, clients, cameras, run)
        load["end_of_sending"] = os.getloadavg()
        await drain(args, run, sampler)
        cpu = run.cpu if run.cpu is not None else meter.seconds()
        profiles = await profiling if profiling else []
        receipts = await subscribers.results()
        results = analyse(args, run, receipts, cpu, args.cameras)
        results["load_average"] = load
        if profiles:
            results["py_spy"] = {p.stem: summarize_profile(p) for p in profiles}
        return results
    finally:
        await database.close()
        for client in clients:
            await client.aclose()


async def warm_up(args: argparse.Namespace, clients: list[httpx.AsyncClient],
                  cameras: list[str]) -> None:
    """A frame for every pool process, processed before the clock starts: the first item of a
    fresh pool process pays for imports and connections, which is not the steady state."""
    image = IMAGES[0].read_bytes()
    count = 2 * 2 * args.worker_concurrency
    before = (await queue_stats(clients[0]))["counts"].get("done", 0)
    for index in range(count):
        await expect(clients[index % 2].post(
            "/api/v1/detections/send-frame", headers=admin(),
            files={"image": ("warm-up.jpg", image, "image/jpeg")},
            data={"camera_id": cameras[index % len(cameras)], "mode": "async"}), 202)
    deadline = time.monotonic() + 120
    while (await queue_stats(clients[0]))["counts"].get("done", 0) < before + count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {count} warm-up frames were not processed in 120 s")
        await asyncio.sleep(0.5)


async def drain(args: argparse.Namespace, run: Run, sampler: asyncio.Task[None]) -> None:
    """Sampling goes on until the queue is empty or `--drain` seconds have passed."""
    deadline = time.monotonic() + args.drain
    while time.monotonic() < deadline and not sampler.done():
        last = next((s for s in reversed(run.samples) if "pending" in s), None)
        if last and last["t"] > args.duration and last["pending"] + last["processing"] == 0:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(1)  # the last WebSocket messages
    sampler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampler  # raises when a process died


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true",
                        help="the scenario of issue 8: 100 cameras for 120 s")
    parser.add_argument("--cameras", type=int, default=None, help="default 20 (--full: 100)")
    parser.add_argument("--duration", type=int, default=None,
                        help="seconds of sending; default 20 (--full: 120)")
    parser.add_argument("--drain", type=float, default=30,
                        help="seconds to wait for the queue to empty afterwards (default 30)")
    parser.add_argument("--subscribers", type=int, default=20)
    parser.add_argument("--worker-concurrency", type=int, default=4,
                        help="pool processes per Celery worker (default 4)")
    parser.add_argument("--latency", type=float, default=0.05, help="provider seconds per call")
    parser.add_argument("--jitter", type=float, default=0.02, help="± seconds around --latency")
    parser.add_argument("--error-rate", type=float, default=0.02,
                        help="share of provider calls answered with HTTP 500 (default 0.02)")
    parser.add_argument("--py-spy", type=float, default=0, metavar="SECONDS",
                        help="profile one API process and one worker for this long")
    parser.add_argument("--out", type=Path, default=None, help="folder for results and logs")
    parser.add_argument("--database-url", default=os.environ.get(
        "FRAMEWATCH_BENCH_E2E_DATABASE_URL", DEFAULT_DATABASE))
    parser.add_argument("--redis-url", default=os.environ.get(
        "FRAMEWATCH_BENCH_E2E_REDIS_URL", DEFAULT_REDIS))
    args = parser.parse_args()
    args.cameras = args.cameras or (100 if args.full else 20)
    args.duration = args.duration or (120 if args.full else 20)
    for name in ("cameras", "duration", "subscribers", "worker_concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    args.py_spy_command = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if args.py_spy and not Path(args.py_spy_command).exists():
        parser.error("--py-spy needs py-spy: .venv/bin/pip install py-spy")
    if not 0 <= args.error_rate < 1:
        parser.error("--error-rate must be in [0, 1)")
    return args


def subscribers_main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers-process", type=int, required=True)
    parser.add_argument("--receipts", type=Path, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("urls", nargs="+")
    args = parser.parse_args()
    asyncio.run(run_subscribers(args.urls, args.token, args.subscribers_process, args.receipts))
    return 0


def main() -> int:
    if "--subscribers-process" in sys.argv:
        return subscribers_main()
    args = parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="framewatch-e2e-"))
    out.mkdir(parents=True, exist_ok=True)
    # SIGTERM (a CI timeout, a Ctrl-C'd make) must still stop every child: let `finally` run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    config = {
        "cameras": args.cameras, "duration_seconds": args.duration,
        "subscribers": args.subscribers, "api_processes": 2, "worker_processes": 2,
        "worker_concurrency": args.worker_concurrency,
        "provider_latency_ms": round(args.latency * 1000),
        "provider_jitter_ms": round(args.jitter * 1000), "provider_error_rate": args.error_rate,
        "images": [p.name for p in IMAGES], "machine": machine(),
    }
    print(f"end-to-end load: {args.cameras} cameras × 1 frame/s for {args.duration} s, "
          f"{args.subscribers} WebSocket subscribers; {machine()}; output in {out}", flush=True)
    cluster = Cluster()
    # Bounded: set-up (≤ ~4 min), the run, the drain, the profile and the collection.
    limit = 300 + args.duration + args.drain + args.py_spy + 120
    with tempfile.TemporaryDirectory(prefix="framewatch-e2e-data-") as data:
        try:
            results = asyncio.run(asyncio.wait_for(
                load_test(args, out, Path(data), cluster), limit))
        except Exception as exc:
            print(f"end-to-end load FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
            print(f"(process logs in {out / 'logs'})", file=sys.stderr)
            return 1
        finally:
            cluster.stop()
            with contextlib.suppress(Exception):
                asyncio.run(recreate_database(args.database_url, drop_only=True))
            with contextlib.suppress(Exception):
                flush_redis(args.redis_url)
    result = {"config": config, "results": results}
    (out / "e2e_load.json").write_text(json.dumps(result, indent=1))
    plot(result, out / "e2e_load.png")
    print_report(result)
    print(f"results: {out / 'e2e_load.json'}, plot: {out / 'e2e_load.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
