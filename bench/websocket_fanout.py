"""WebSocket fan-out: 1,000 clients subscribed to every detection while 20 frames a second are
processed; publish-to-receive latency and messages delivered vs sent.

One `framewatch serve` process (PostgreSQL, a database of its own, created and dropped,
FRAMEWATCH_BENCH_WS_DATABASE_URL; or SQLite with `--database sqlite`) and the test suite's fake
DeepStack provider (one person per frame, no latency); frames go through send-frame, sync mode,
at a fixed rate (open loop, round-robin over 10 cameras). The clients run in `--processes`
processes of their own, on `websockets`' sans-I/O protocol on a bare asyncio connection under
uvloop (`RecordingClient`: `websockets`' asyncio client cost most of a core the server needed);
each subscribes to all cameras with no filter, so each should receive one `detection` message
per frame. Latency = when the message's bytes reached the client − the frame's `processed_at`
in it (set just before the frame's transaction commits; same machine clock); the fan-out spread
= that latency − the frame's earliest one (how long reaching every client took once the first
had it). After the last frame it waits until a probe client has every stored frame (at most
`--drain-timeout` s: a server that fell behind gets to catch up, its lateness shows in the
latency), then `--settle` s. Frames that send-frame refused are counted and fail the run. "µs
per delivered message" (server CPU over messages) is the figure that does not depend on how
loaded the machine is.
Live log: in memory (`--backends memory`), or a Redis stream (`redis`: RedisStreamLog, the
cache and rate limiter in Redis too; FRAMEWATCH_BENCH_REDIS_URL, default db 8, flushed). With
Redis, `--frames-via another-instance` sends the frames to a second API process on the same
database and Redis, as behind a load balancer: the clients' server then only fans out.

    .venv/bin/python bench/websocket_fanout.py                   # ~1-4 minutes
    .venv/bin/python bench/websocket_fanout.py --duration 60 --clients 1000 --rate 20
    .venv/bin/python bench/websocket_fanout.py --profile /tmp/prof   # py-spy, where time goes
    .venv/bin/python bench/websocket_fanout.py --backends redis --frames-via another-instance

(`--profile` samples the server with py-spy, while it holds the GIL, during the publishing; it
needs py-spy in the venv or on PATH, and costs the server some CPU.)

Targets: every message delivered to every client (anything lost exits non-zero), p99 ≤ 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import (
    BIN,
    POSTGRES,
    REDIS,
    Proc,
    cpu_seconds,
    flush_redis,
    framewatch_env,
    fresh_serve,
    machine,
    percentile,
    profile_shares,
    recreate_database,
    send_frame,
    set_up_api,
    start_provider,
    start_serve,
    verdict,
)

TARGET_P99_MS = 100
PROFILE_RATE = 250  # py-spy samples per second

# Where the server's time goes, by the first of these marks found in a sampled stack
# (";function@path" frames, outermost first).
CATEGORIES = [
    ("hub.deliver: filtering and encoding each live message", ("deliver@",)),
    ("uvicorn's WebSocket protocol: framing, socket writes, pings", (
        "@uvicorn/protocols/websockets/", "@websockets/")),
    ("send loop: outbox, Starlette's WebSocket, middleware", ("send_forever@",)),
    ("send-frame requests (HTTP, provider call, database, outbox)", (
        "@framewatch/detections/", "@framewatch/frames/", "@framewatch/queue/",
        "@framewatch/providers/", "@framewatch/live/outbox.py",
        "@httpx/", "@httpcore/", "@sqlalchemy/", "@asyncpg/", "@aiosqlite/",
        "@uvicorn/protocols/http/")),
    ("reading the live stream (Redis)", ("_read_forever@", "@redis/")),
    ("receiving client messages", ("receive_forever@",)),
]


# The client processes ---------------------------------------------------------------------

class RecordingClient(asyncio.Protocol):
    """One WebSocket client: websockets' own protocol (sans-I/O: handshake, framing, answering
    pings) on a bare asyncio connection, which notes when each text message arrived and keeps
    its bytes, to be read after the run. The 1,000 clients share the server's two cores; with
    `websockets`' asyncio client on top, on asyncio's own event loop, reading the messages took
    0.9 of a core, time the server did not get (a browser's reading is not on the server's
    machine)."""

    def __init__(self, url: str) -> None:
        from websockets.client import ClientProtocol
        from websockets.uri import parse_uri

        self.protocol = ClientProtocol(parse_uri(url), max_size=None)
        self.texts: list[tuple[float, bytes]] = []  # (time.time() on arrival, payload)
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.subscribed = asyncio.Event()
        self.closed: str | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.protocol.send_request(self.protocol.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        from websockets.frames import Frame, Opcode
        from websockets.http11 import Response

        now = time.time()
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Frame):
                if event.opcode is Opcode.TEXT:
                    self.texts.append((now, bytes(event.data)))
                    if not self.subscribed.is_set() and b'"subscribed"' in event.data:
                        self.subscribed.set()
                elif event.opcode is Opcode.CLOSE and self.protocol.close_rcvd is not None:
                    self.closed = (f"closed by the server: {self.protocol.close_rcvd.code} "
                                   f"{self.protocol.close_rcvd.reason}")
            elif isinstance(event, Response) and not self.opened.done():
                if self.protocol.handshake_exc is None:
                    self.opened.set_result(None)
                else:
                    self.opened.set_exception(self.protocol.handshake_exc)
        self._flush()  # pongs, and the answer to a close

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = self.closed or f"connection lost: {exc or 'closed by the server'}"
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(self.closed))

    def send(self, body: dict[str, Any]) -> None:
        self.protocol.send_text(json.dumps(body).encode())
        self._flush()

    def _flush(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        for data in self.protocol.data_to_send():
            if data:
                self.transport.write(data)
            elif self.transport.can_write_eof():
                self.transport.write_eof()


async def client_worker(url: str, key: str, count: int, out: Path) -> None:
    """`count` subscribed clients; "ready" on stdout once all are subscribed; on "stop" from
    stdin, one asks the server for its hub stats and every client's receipts go to `out`."""
    from urllib.parse import urlsplit

    loop = asyncio.get_running_loop()
    address = urlsplit(url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    clients: list[RecordingClient | None] = [None] * count
    failures: list[str] = []

    async def one(index: int) -> None:
        try:
            _, client = await loop.create_connection(
                lambda: RecordingClient(f"{url}?token={key}"), host, port)
            clients[index] = client
            await asyncio.wait_for(client.opened, 60)
            client.send({"type": "subscribe"})
            await asyncio.wait_for(client.subscribed.wait(), 60)
        except Exception as exc:  # recorded: a client that could not subscribe fails the run
            failures.append(f"{type(exc).__name__}: {exc}")

    for start in range(0, count, 50):  # connect in waves, not all 1,000 SYNs at once
        await asyncio.gather(*(one(i) for i in range(start, min(start + 50, count))))
        if failures:
            print(f"failed: {failures[:3]}", flush=True)
            return
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    first = clients[0]
    stats = None
    if first is not None and first.closed is None:
        seen = len(first.texts)
        first.send({"type": "get_stats"})
        deadline = time.monotonic() + 10
        while stats is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            for _, data in first.texts[seen:]:
                message = json.loads(data)
                if message.get("type") == "stats":
                    stats = message
            seen = len(first.texts)
    received: list[list[tuple[int, float]]] = []
    lost: list[str] = []
    sizes = [0, 0]  # detection messages' characters, and their count
    for client in clients:
        receipts: list[tuple[int, float]] = []
        for arrived, data in client.texts if client is not None else []:
            message = json.loads(data)
            if message.get("type") == "detection":
                sent = datetime.fromisoformat(message["processed_at"]).timestamp()
                receipts.append((message["frame_id"], arrived - sent))
                sizes[0] += len(data.decode())
                sizes[1] += 1
        received.append(receipts)
        if client is None:
            lost.append("never connected")
        elif client.closed is not None:
            lost.append(client.closed)
        elif client.transport is not None:
            client.transport.close()
    text = json.dumps({"received": received, "lost": lost, "sizes": sizes, "stats": stats})
    out.write_text(text)  # noqa: ASYNC240 (the run is over)


# The benchmark ----------------------------------------------------------------------------

async def publish(url: str, cameras: list[str], rate: float, duration: float
                  ) -> tuple[list[int], list[float], list[str]]:
    """Frames at `rate` per second for `duration` seconds (open loop); the frame ids stored,
    the send-frame round trips (ms), and why the others failed (a server that cannot keep up
    refuses or times out: counted and reported, the run goes on)."""

    async def one(client: httpx.AsyncClient, index: int) -> tuple[int | None, float, str]:
        began = time.perf_counter()
        try:
            answer = await send_frame(client, cameras[index % len(cameras)], 1000 + index)
        except (RuntimeError, httpx.HTTPError) as exc:
            return None, (time.perf_counter() - began) * 1000, f"{type(exc).__name__}: {exc}"
        return int(answer["frame_id"]), (time.perf_counter() - began) * 1000, ""

    async with httpx.AsyncClient(base_url=url, timeout=60,
                                 limits=httpx.Limits(max_connections=200)) as client:
        started = time.monotonic()
        tasks = []
        for index in range(int(rate * duration)):
            await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one(client, index)))
        answers = await asyncio.gather(*tasks)
    return ([frame_id for frame_id, _, _ in answers if frame_id is not None],
            [took for _, took, _ in answers], [error[:160] for _, _, error in answers if error])


async def publish_and_settle(url: str, key: str, cameras: list[str], args: argparse.Namespace,
                             frames_url: str | None = None,
                             ) -> tuple[list[int], list[float], list[str]]:
    """`publish`, with one more subscribed client (a probe, not counted) in this process; after
    the last frame, waits until the probe has received every stored frame — at most
    `--drain-timeout` seconds: a server that fell behind is given time to catch up, and what
    it delivers late shows in the latency — then `--settle` seconds more for the others (one
    hub delivery queues a message for every client at once)."""
    from websockets.asyncio.client import connect

    seen: set[int] = set()
    arrived = asyncio.Event()
    ws_url = url.replace("http://", "ws://") + f"/api/v1/detections/ws?token={key}"
    async with connect(ws_url, max_queue=None, ping_interval=None, open_timeout=60) as probe:
        await probe.send(json.dumps({"type": "subscribe"}))

        async def read() -> None:
            async for raw in probe:
                message = json.loads(raw)
                if message.get("type") == "detection":
                    seen.add(int(message["frame_id"]))
                    arrived.set()

        reader = asyncio.create_task(read())
        try:
            answers = await publish(frames_url or url, cameras, args.rate, args.duration)
            deadline = time.monotonic() + args.drain_timeout
            while not set(answers[0]) <= seen and time.monotonic() < deadline:
                arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived.wait(), deadline - time.monotonic())
            await asyncio.sleep(args.settle)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    return answers


def start_clients(args: argparse.Namespace, url: str, key: str, work: Path
                  ) -> list[tuple[subprocess.Popen[str], Path]]:
    ws_url = url.replace("http://", "ws://") + "/api/v1/detections/ws"
    workers = []
    for number in range(args.processes):
        count = args.clients // args.processes + (number < args.clients % args.processes)
        out = work / f"clients-{number}.json"
        process = subprocess.Popen(
            [sys.executable, __file__, "--client-worker", ws_url, key, str(count), str(out)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        workers.append((process, out))
    for process, _ in workers:
        line = process.stdout.readline() if process.stdout else ""
        if line.strip() != "ready":
            raise RuntimeError(f"a client process did not get ready: {line!r}")
    return workers


def stop_clients(workers: list[tuple[subprocess.Popen[str], Path]]) -> list[dict[str, Any]]:
    results = []
    for process, _ in workers:
        if process.stdin:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.write("stop\n")
                process.stdin.flush()
    for process, out in workers:
        try:
            process.wait(60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        if not out.exists():
            raise RuntimeError(f"a client process left no results ({process.returncode})")
        results.append(json.loads(out.read_text()))
    return results


def backend_run(args: argparse.Namespace, backend: str, work: Path, provider_url: str) -> bool:
    """One configuration; False when messages were lost, clients disconnected or frames
    were refused."""
    redis_url = args.redis_url if backend == "redis" else None
    data = work / backend
    serve, url, database = fresh_serve(
        data, None if args.database == "sqlite" else args.database_url, redis_url,
        work / "logs", f"serve-{backend}")
    workers: list[tuple[subprocess.Popen[str], Path]] = []
    # With `--frames-via another-instance`, a second API process (same database and Redis)
    # takes the frames, and the first one only fans out: as behind a load balancer.
    frames: Proc | None = None
    frames_url: str | None = None
    try:
        if args.frames_via == "another-instance" and redis_url:
            frames, frames_url = start_serve(framewatch_env(data, database, redis_url),
                                             work / "logs", f"frames-{backend}")
        cameras = [f"cam-{index:02d}" for index in range(args.cameras)]

        async def setup() -> str:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                return await set_up_api(client, provider_url, cameras)

        key = asyncio.run(setup())
        began = time.monotonic()
        workers = start_clients(args, url, key, work)
        print(f"[{backend}] {args.clients} clients subscribed in {time.monotonic() - began:.1f} "
              f"s; publishing {args.rate:g} frames/s for {args.duration:g} s", flush=True)
        pids = [serve.pid]
        client_pids = [process.pid for process, _ in workers]
        spy = start_profile(args, serve.pid, backend) if args.profile else None
        frames_pids = [frames.pid] if frames is not None else []
        cpu, client_cpu, clock = cpu_seconds(pids), cpu_seconds(client_pids), time.monotonic()
        frames_cpu = cpu_seconds(frames_pids)
        frame_ids, round_trips, failed = asyncio.run(
            publish_and_settle(url, key, cameras, args, frames_url))
        elapsed = time.monotonic() - clock
        if spy is not None:
            spy.wait(60)
        cpu, client_cpu = cpu_seconds(pids) - cpu, cpu_seconds(client_pids) - client_cpu
        frames_cpu = cpu_seconds(frames_pids) - frames_cpu
        results = stop_clients(workers)
        workers = []
        serve.check()
    except Exception:
        print(f"--- end of the server's log ---\n{serve.tail()}", file=sys.stderr)
        raise
    finally:
        for process, _ in workers:
            process.kill()
            process.wait(10)
        serve.stop()
        if frames is not None:
            frames.stop()
        if redis_url:
            flush_redis(redis_url)
        if args.database == "postgresql":
            asyncio.run(recreate_database(database, drop_only=True))
    if frames is not None:
        print(f"  frames through a second API process ({frames_cpu / elapsed:.0%} of a core)")
    print(f"  send-frame round trip: p50 {percentile(round_trips, 50):.1f} ms  "
          f"p99 {percentile(round_trips, 99):.1f} ms; {len(failed)} of {len(round_trips)} "
          "frames refused or failed")
    for reason in sorted(set(failed))[:3]:
        print(f"  send-frame failed: {reason}")
    complete = report(backend, args, frame_ids, results, cpu, client_cpu, elapsed)
    if args.profile:
        summarize_profile(Path(args.profile) / f"websocket-{backend}.txt")
    return complete and not failed


def start_profile(args: argparse.Namespace, pid: int, backend: str) -> subprocess.Popen[bytes]:
    """py-spy on the server for the `--duration` seconds of publishing (collapsed stacks)."""
    out = Path(args.profile) / f"websocket-{backend}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    spy_command = shutil.which("py-spy", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if spy_command is None:
        raise RuntimeError("--profile needs py-spy (pip install py-spy)")
    return subprocess.Popen([spy_command, "record", "--pid", str(pid), "--format", "raw",
                             "--rate", str(PROFILE_RATE), "--gil", "--nonblocking",
                             "--duration", f"{args.duration:g}", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize_profile(path: Path) -> None:
    """Shares of the sampled time by category, and the functions with the most self time."""
    total, by_category, self_time = profile_shares(path, CATEGORIES)
    print(f"  profile: {total} samples with the GIL held ({total / PROFILE_RATE:.1f} s); {path}")
    for category, samples in by_category.most_common():
        print(f"    {samples / max(total, 1):6.1%}  {category}")
    print("  self time, top 15:")
    for frame, samples in self_time.most_common(15):
        print(f"    {samples / max(total, 1):6.1%}  {frame}")


def report(backend: str, args: argparse.Namespace, frame_ids: list[int],
           results: list[dict[str, Any]], server_cpu: float, client_cpu: float,
           elapsed: float) -> bool:
    """Prints the figures; `server_cpu` and `client_cpu` are CPU seconds over `elapsed`."""
    sent = set(frame_ids)
    latencies: list[float] = []
    first: dict[int, float] = {}  # per frame, the earliest latency any client saw
    missing = duplicates = clients = 0
    lost = [reason for result in results for reason in result["lost"]]
    for result in results:
        for receipts in result["received"]:
            clients += 1
            ids = [frame_id for frame_id, _ in receipts if frame_id in sent]
            duplicates += len(ids) - len(set(ids))
            missing += len(sent - set(ids))
            for frame_id, latency in receipts:
                if frame_id in sent:
                    latencies.append(latency * 1000)
                    first[frame_id] = min(first.get(frame_id, latency), latency)
    spread = [latency * 1000 - first[frame_id] * 1000 for result in results
              for receipts in result["received"] for frame_id, latency in receipts
              if frame_id in sent]
    expected = len(sent) * clients
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    stats = next((r["stats"] for r in results if r.get("stats")), None) or {}
    print(f"[{backend}] {len(sent)} frames published, {clients} clients: "
          f"{len(latencies):,} of {expected:,} messages delivered, {missing:,} missing, "
          f"{duplicates} duplicates, {len(lost)} clients disconnected")
    characters, messages = (sum(r.get("sizes", [0, 0])[i] for r in results) for i in (0, 1))
    print(f"  a detection message: {characters / max(messages, 1):.0f} characters on average")
    print(f"  latency processed_at → client: p50 {p50:.1f} ms  p99 {p99:.1f} ms  "
          f"max {max(latencies, default=float('nan')):.1f} ms")
    print(f"  fan-out spread (after the frame's first receipt): p50 {percentile(spread, 50):.1f} "
          f"ms  p99 {percentile(spread, 99):.1f} ms; first receipts: p50 "
          f"{percentile(sorted(first.values()), 50) * 1000:.1f} ms  p99 "
          f"{percentile(sorted(first.values()), 99) * 1000:.1f} ms")
    # CPU per delivered message: the figure that does not depend on how loaded the machine
    # is; one core's worth of it is the fan-out ceiling of one server process.
    per_message = server_cpu / max(len(latencies), 1) * 1e6
    included = ("send-frame included" if args.frames_via == "same-instance" or backend != "redis"
                else "fan-out only")
    print(f"  CPU: server {server_cpu / elapsed:.0%} of a core ({per_message:.0f} µs per "
          f"delivered message, {included}: one core ≈ {1e6 / per_message:,.0f} "
          f"messages/s), client processes {client_cpu / elapsed:.0%}; "
          f"server hub: sent {stats.get('messages_sent')}, dropped "
          f"{stats.get('messages_dropped')}, clients dropped {stats.get('clients_dropped')}")
    complete = missing == 0 and not lost and clients == args.clients
    print(f"  all delivered: {verdict(complete)};  p99 ≤ {TARGET_P99_MS} ms: "
          f"{verdict(p99 <= TARGET_P99_MS)}")
    for reason in sorted(set(lost))[:5]:
        print(f"  disconnected: {reason}")
    return complete


def main() -> int:
    if len(sys.argv) == 6 and sys.argv[1] == "--client-worker":
        import uvloop

        uvloop.run(client_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), Path(sys.argv[5])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20, help="frames (detections) per second")
    parser.add_argument("--duration", type=float, default=15, help="seconds of publishing")
    parser.add_argument("--drain-timeout", type=float, default=60,
                        help="at most this many seconds for the last frames to reach a probe "
                             "client after publishing ends")
    parser.add_argument("--settle", type=float, default=3,
                        help="seconds more for the other clients once the probe has every frame")
    parser.add_argument("--cameras", type=int, default=10)
    parser.add_argument("--frames-via", choices=["same-instance", "another-instance"],
                        default="same-instance",
                        help="with Redis: send the frames to a second API process, so that "
                        "the one the clients are connected to only fans out")
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--backends", nargs="+", choices=["memory", "redis"],
                        default=["memory", "redis"])
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--database-url", default=os.environ.get(
        "FRAMEWATCH_BENCH_WS_DATABASE_URL", f"{POSTGRES}/framewatch_bench_ws"),
        help="the PostgreSQL database to create, use and drop")
    parser.add_argument("--profile", metavar="DIR",
                        help="sample the server with py-spy during the publishing")
    parser.add_argument("--redis-url",
                        default=os.environ.get("FRAMEWATCH_BENCH_REDIS_URL", REDIS))
    args = parser.parse_args()
    print(f"websocket fan-out: {args.clients} clients in {args.processes} processes, "
          f"{args.rate:g} frames/s for {args.duration:g} s, {args.database}; {machine()}",
          flush=True)
    complete = True
    try:
        with tempfile.TemporaryDirectory(prefix="framewatch-bench-ws-") as tmp:
            work = Path(tmp)
            provider, provider_url = start_provider(work / "logs")
            try:
                for backend in args.backends:
                    complete = backend_run(args, backend, work, provider_url) and complete
            finally:
                provider.stop()
    except Exception as exc:
        print(f"websocket fan-out FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if not complete:
        print("websocket fan-out FAILED: messages lost, clients disconnected or frames refused",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
