"""Helpers shared by the benchmarks of bench/: real `framewatch serve` processes, the test suite's
fake DeepStack provider in a process of its own, throw-away PostgreSQL databases, percentiles.

Not a benchmark itself (running it does nothing). It also holds `ceiling_app`, the bare FastAPI
app the live endpoint benchmark compares framewatch with:

    python -m uvicorn --app-dir bench --factory common:ceiling_app --port 8123

Top-level imports are kept to the standard library and httpx, so that the ceiling process loads
no more than FastAPI.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# The framewatch command the benchmarks run (another build can be compared with
# FRAMEWATCH_BENCH_COMMAND=/path/to/its/framewatch).
FRAMEWATCH = os.environ.get("FRAMEWATCH_BENCH_COMMAND", str(BIN / "framewatch"))
ADMIN_KEY = "fw_bench_admin_key_0123456789abcdef"
POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379/8"
HIGH_LIMIT = 100_000_000  # requests per minute: the limiters still run, but never refuse


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linearly interpolated between the closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def verdict(met: bool) -> str:
    return "MET" if met else "MISSED"


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs, load average {load}, Python {sys.version.split()[0]}"


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time the processes `pids` used so far."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


class Proc:
    """A child process in its own session (its group = its pid), output to a log file."""

    def __init__(self, name: str, args: list[str], log_dir: Path,
                 env: Mapping[str, str] | None = None, cwd: Path = ROOT) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(args, env=dict(env or os.environ), cwd=cwd,
                                          stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM its process group, SIGKILL what is left after `grace` seconds."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait(10)


def wait_until_up(url: str, proc: Proc, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        proc.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} did not answer {url} in {within} s:\n{proc.tail()}")
        time.sleep(0.1)


def framewatch_env(data_dir: Path, database_url: str, redis_url: str | None = None,
                   **settings: object) -> dict[str, str]:
    """The environment of a benchmark's framewatch process: this process's FRAMEWATCH_*
    variables dropped; rate limits raised far above the load (they still run); quiet logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMEWATCH_")}
    values: dict[str, object] = {
        "data_dir": data_dir, "database_url": database_url, "admin_api_key": ADMIN_KEY,
        "secret_key": "bench-secret-passphrase", "provider_allow_private_networks": True,
        "log_level": "WARNING", "rate_limit_per_key_per_minute": HIGH_LIMIT,
        "rate_limit_per_address_per_minute": HIGH_LIMIT,
        "rate_limit_send_frame_per_minute": HIGH_LIMIT,
    }
    if redis_url:
        values["redis_url"] = redis_url
    values.update(settings)
    env.update({f"FRAMEWATCH_{name.upper()}": str(value) for name, value in values.items()})
    return env


def migrate(env: Mapping[str, str]) -> None:
    """`framewatch migrate` with `env` (SQLite under its data dir, or its database URL)."""
    done = subprocess.run([FRAMEWATCH, "migrate"], env=dict(env), capture_output=True, text=True,
                          timeout=300, check=False)
    if done.returncode:
        raise RuntimeError(f"framewatch migrate failed:\n{done.stdout}{done.stderr}")


def start_serve(env: Mapping[str, str], log_dir: Path, name: str = "serve") -> tuple[Proc, str]:
    """`framewatch serve` on a free port; its base URL once /healthz answers."""
    port = free_port()
    proc = Proc(name, [FRAMEWATCH, "serve", "--port", str(port)], log_dir, env)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(f"{url}/healthz", proc)
    return proc, url


def fresh_serve(data: Path, database_url: str | None, redis_url: str | None, log_dir: Path,
                name: str) -> tuple[Proc, str, str]:
    """`framewatch serve` on an empty database (`database_url` recreated, or SQLite under `data`
    when None) and an empty Redis (flushed, when given), migrated: (process, URL, database)."""
    if database_url is None:
        database_url = f"sqlite+aiosqlite:///{data / 'framewatch.db'}"
    else:
        asyncio.run(recreate_database(database_url))
    env = framewatch_env(data, database_url, redis_url)
    if redis_url:
        flush_redis(redis_url)
    migrate(env)
    serve, url = start_serve(env, log_dir, name)
    return serve, url, database_url


def start_provider(log_dir: Path) -> tuple[Proc, str]:
    """The test suite's FlakyProvider (DeepStack wire format; no failures, no latency)."""
    port = free_port()
    proc = Proc("provider", [sys.executable, "-m", "tests.support.flaky_provider",
                             "--port", str(port)], log_dir)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(f"{url}/v1/vision/detection", proc)
    return proc, url


def start_ceiling(body_path: Path, log_dir: Path) -> tuple[Proc, str]:
    """`ceiling_app` in a uvicorn process of its own, serving the bytes in `body_path`."""
    port = free_port()
    env = {**os.environ, "BENCH_CEILING_BODY": str(body_path)}
    proc = Proc("ceiling", [sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "bench"),
                            "--factory", "common:ceiling_app", "--host", "127.0.0.1",
                            "--port", str(port), "--log-level", "warning"], log_dir, env)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(f"{url}/api/v1/detections/live", proc)
    return proc, url


def ceiling_app() -> Any:
    """A bare FastAPI app answering GET /api/v1/detections/live with fixed bytes: no
    middleware, no authentication, no cache, no database."""
    from fastapi import FastAPI
    from fastapi.responses import Response

    body = Path(os.environ["BENCH_CEILING_BODY"]).read_bytes()
    app = FastAPI()

    @app.get("/api/v1/detections/live")
    async def live() -> Response:
        return Response(body, media_type="application/json")

    return app


def frame_image(index: int) -> bytes:
    """A 64×48 JPEG whose bytes differ for every `index` (send-frame caches equal bytes)."""
    import cv2
    import numpy as np

    image = np.full((48, 64, 3), index % 251, dtype=np.uint8)
    image[0, 0] = (index // 251 % 256, index // 64_000 % 256, 7)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise RuntimeError("could not encode a frame")
    return bytes(data.tobytes())


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


async def set_up_api(client: httpx.AsyncClient, provider_url: str | None,
                     cameras: Iterable[str]) -> str:
    """The fake provider as the default (when given), the cameras; returns a new viewer key."""
    if provider_url is not None:
        response = await client.post("/api/v1/providers", headers=admin(), json={
            "name": "fake", "kind": "deepstack", "base_url": provider_url, "max_retries": 0,
            "timeout_seconds": 5, "detection_types": ["person"], "min_confidence": 0.1,
            "is_default": True, "options": {"retry_backoff_seconds": 0},
        })
        _expect(response, 201)
    for camera in cameras:
        _expect(await client.post("/api/v1/cameras", headers=admin(),
                                  json={"id": camera, "name": camera}), 201)
    response = await client.post("/api/v1/keys", headers=admin(),
                                 json={"name": "bench-viewer", "role": "viewer"})
    _expect(response, 201)
    return str(response.json()["key"])


async def send_frame(client: httpx.AsyncClient, camera: str, index: int) -> dict[str, Any]:
    """One frame through send-frame (sync: answered once stored and published)."""
    response = await client.post(
        "/api/v1/detections/send-frame", headers=admin(),
        files={"image": (f"f{index}.jpg", frame_image(index), "image/jpeg")},
        data={"camera_id": camera, "mode": "sync"},
    )
    _expect(response, 200)
    answer: dict[str, Any] = response.json()
    return answer


def cache_counts(url: str, kind: str) -> tuple[int, int, int]:
    """(hits, misses, coalesced) of one cache kind in the API process at `url`, from statistics
    asked with a `since` of its own (so that the statistics answer itself is never a cached one).
    Coalesced requests (served by a rebuild another request started) are among the hits."""
    from datetime import UTC, datetime, timedelta

    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    response = httpx.get(f"{url}/api/v1/detections/statistics", params={"since": since},
                         headers=admin(), timeout=30)
    _expect(response, 200)
    figures = response.json()["cache"].get(kind, {})
    return (int(figures.get("hits", 0)), int(figures.get("misses", 0)),
            int(figures.get("coalesced", 0)))


def _expect(response: httpx.Response, status: int) -> None:
    if response.status_code != status:
        raise RuntimeError(f"{response.request.method} {response.request.url.path}: "
                           f"{response.status_code} {response.text[:300]}")


async def recreate_database(url: str, *, drop_only: bool = False) -> None:
    """Drop the PostgreSQL database of `url` and (unless `drop_only`) create it empty."""
    import asyncpg
    from sqlalchemy.engine import make_url

    target = make_url(url)
    name = target.database or ""
    if not name.replace("_", "").isalnum() or name in ("postgres", "template0", "template1"):
        raise ValueError(f"refusing to drop database {name!r}")
    connection = await asyncpg.connect(host=target.host or "127.0.0.1", port=target.port or 5432,
                                       user=target.username or "postgres",
                                       password=target.password, database="postgres")
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


def flush_redis(url: str) -> None:
    import redis

    with redis.Redis.from_url(url) as client:
        client.flushdb()


def collapsed_stacks(path: Path) -> Iterator[tuple[list[str], int]]:
    """The stacks of a py-spy raw profile (outermost frame first), each with its samples."""
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            yield stack.split(";"), int(count)


def profile_shares(path: Path, categories: Sequence[tuple[str, Sequence[str]]]
                   ) -> tuple[int, Counter[str], Counter[str]]:
    """A py-spy raw profile (collapsed stacks): the samples in all, by category, and by the
    function that was running (self time). A stack's category is the first of `categories`
    with a mark found in it, the stack written `;function@module/path.py;...`; else
    "event loop, other"."""
    by_category: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    total = 0
    for stack, samples in collapsed_stacks(path):
        total += samples
        # py-spy's frames read "function (path/to/file.py:line)", the path mostly relative to
        # site-packages or to the checkout.
        frames = [f"{frame.split(' (')[0]}@{frame.rsplit('(', 1)[-1].split(':')[0]}"
                  for frame in stack]
        joined = ";" + ";".join(frame.replace("site-packages/", "@") for frame in frames)
        joined = joined.replace(f"{ROOT}/", "@").replace(f"{Path.cwd()}/", "@")
        category = next((name for name, marks in categories
                         if any(mark in joined for mark in marks)), "event loop, other")
        by_category[category] += samples
        leaf = frames[-1]
        self_time[f"{leaf.split('@')[0]}@{leaf.rsplit('/', 1)[-1]}"] += samples
    return total, by_category, self_time
