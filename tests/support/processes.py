"""Real framewatch processes for tests and benchmarks: `framewatch worker`, `framewatch beat` and
one-shot CLI commands run as subprocesses, configured like an in-test `Settings` object; and
`celery_cluster`, a Celery deployment for one queue test (the API in the test process, the flaky
provider, and the worker and beat processes the test starts).

Each long-running process starts in its own session (process group = its pid), so that stopping
or killing it takes its Celery pool children with it, and writes its output to a log file whose
tail is printed when it is stopped (pytest shows it for failing tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr
from sqlalchemy import func, select

from framewatch.core.config import Settings
from framewatch.models import JobRun, QueueItem
from tests.api.helpers import add_camera
from tests.api_fixtures import Api, make_settings, start_api
from tests.queue.scenario import (
    assert_each_frame_stored_once,
    flaky_provider_body,
    send_async,
    wait_for_queue,
)
from tests.support.flaky_provider import FlakyProvider

FRAMEWATCH = str(Path(sys.prefix) / "bin" / "framewatch")


def framewatch_env(settings: Settings, **extra: object) -> dict[str, str]:
    """The environment of a process configured exactly like `settings` (every field that was
    set explicitly), plus `extra` fields; FRAMEWATCH_* variables of this process are dropped."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("FRAMEWATCH_")}
    values: dict[str, object] = {name: getattr(settings, name)
                                 for name in settings.model_fields_set}
    values.update(extra)
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"FRAMEWATCH_{name.upper()}"] = str(value)
    return env


def redis_db_url(url: str, db: int) -> str:
    """`url` with its database number replaced by `db`."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def neighbour_redis_db(url: str) -> str:
    """Another database of the same Redis (the next number; 14 for 15) — a broker db that
    flushing cannot clash with the cache tests' db."""
    path = urlsplit(url).path.strip("/")
    db = int(path) if path else 0
    return redis_db_url(url, db + 1 if db < 15 else db - 1)


class Process:
    """One framewatch command running in its own process group."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log_path: Path,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self.killed = False  # on purpose, by `kill`
        with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
            self.popen = subprocess.Popen(
                [FRAMEWATCH, *args], env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def owns(self, pid: int) -> bool:
        """Whether `pid` is this process or one of its pool children (same process group)."""
        try:
            return os.getpgid(pid) == self.pid
        except ProcessLookupError:
            return False

    def group_pids(self) -> set[int]:
        """The live processes of this process group (main and pool children)."""
        pids = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and self.owns(int(entry.name)):
                pids.add(int(entry.name))
        return pids

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send `sig` to the whole process group (main process and pool children)."""
        self.killed = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the group (a Celery warm shutdown), SIGKILL whatever is left after `grace`."""
        if self.alive():
            self.kill(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        self.kill(signal.SIGKILL)  # pool children that outlived their parent, too
        self.popen.wait(10)

    def output(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


class ProcessGroup:
    """The processes a test started; `stop_all` ends every one of them (call it in `finally`)."""

    def __init__(self, log_dir: Path, env: Mapping[str, str]) -> None:
        self.log_dir = log_dir
        self.env = dict(env)
        self.processes: list[Process] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> Process:
        index = len(self.processes)
        process = Process(name, list(args), env or self.env, self.log_dir / f"{index}-{name}.log",
                          cwd=self.log_dir)
        self.processes.append(process)
        return process

    def worker(self, concurrency: int = 1) -> Process:
        return self.start("worker", "worker", f"--concurrency={concurrency}")

    def beat(self) -> Process:
        return self.start("beat", "beat")

    def stop_all(self) -> None:
        """Stop every process (even when stopping one fails), then print their output."""
        failures = []
        for process in reversed(self.processes):
            try:
                process.stop()
            except Exception as exc:
                failures.append(f"{process.name} (pid {process.pid}): {exc!r}")
        for process in self.processes:
            print(f"--- {process.name} (pid {process.pid}, exit {process.popen.returncode}): "
                  f"last lines of {process.log_path} ---\n{process.output()}")
        if failures:
            raise RuntimeError(f"could not stop {'; '.join(failures)}")

    def check_running(self, processes: Iterable[Process] | None = None) -> None:
        """Fail with its output if a process that was not killed on purpose has exited."""
        for process in processes or self.processes:
            if not process.killed and not process.alive():
                raise AssertionError(f"{process.name} (pid {process.pid}) exited with "
                                     f"{process.popen.returncode}:\n{process.output()}")


def run_command(env: Mapping[str, str], *args: str,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a one-shot `framewatch` command; its output is captured as text."""
    return subprocess.run([FRAMEWATCH, *args], env=dict(env), capture_output=True, text=True,
                          timeout=timeout, check=False)


def wait_for_exit(pid: int, within: float = 10.0) -> None:
    """Wait until `pid` is gone or a zombie (a killed pool child whose new parent, init, may
    reap it late)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state in ("Z", "X"):  # dead, waiting for its new parent to reap it
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} is still alive after {within} s")


# A Celery deployment for the queue tests ------------------------------------------------------

HOST = socket.gethostname()


def celery_worker_id(pid: int) -> str:
    """How a `framewatch worker` process (or a pool child) names itself in heartbeats and leases."""
    return f"celery@{HOST}:{pid}"


@dataclass
class Cluster:
    """A Celery deployment for a test: the API, the flaky provider and framewatch processes."""

    api: Api
    provider: FlakyProvider
    processes: ProcessGroup

    @property
    def env(self) -> dict[str, str]:
        return self.processes.env

    async def stats(self) -> dict[str, Any]:
        response = await self.api.client.get("/api/v1/detections/queue-stats",
                                             headers=self.api.auth("viewer"))
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def send(self, count: int, senders: int = 4) -> list[int]:
        """Send `count` distinct frames with mode=async (a few requests at a time); frame ids."""
        bounds = [count * part // senders for part in range(senders + 1)]
        batches = await asyncio.gather(*[
            send_async(self.api.client, self.api.auth("operator"), "gate", range(low, high))
            for low, high in itertools.pairwise(bounds)
        ])
        return [answer["frame_id"] for batch in batches for answer in batch]

    async def drained(self, within: float) -> dict[str, Any]:
        """Queue-stats once nothing is pending or processing (fails after `within` seconds)."""
        # A cheap count twice a second first: queue-stats ten times a second (as wait_for_queue
        # polls) would take a good share of two cores from the workers while they drain.
        deadline = time.monotonic() + within
        unfinished = QueueItem.status.in_(("pending", "processing"))
        while time.monotonic() < deadline:
            self.processes.check_running()
            async with self.api.runtime.session_factory() as session:
                if not await session.scalar(select(func.count()).where(unfinished)):
                    break
            await asyncio.sleep(0.5)
        stats = await wait_for_queue(self.api.client, self.api.auth("viewer"),
                                     within=max(deadline - time.monotonic(), 1.0))
        self.processes.check_running()
        return stats

    async def wait_for_workers(self, *workers: Process, within: float = 60) -> dict[str, Any]:
        """Until every worker's heartbeat (`celery@host:<its pid>`) shows in queue-stats."""
        wanted = {celery_worker_id(worker.pid) for worker in workers}
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            self.processes.check_running()
            stats = await self.stats()
            if wanted <= {seen["worker_id"] for seen in stats["workers"]}:
                return stats
            await asyncio.sleep(0.2)
        raise AssertionError(f"workers {sorted(wanted)} sent no heartbeat in {within} s")

    async def assert_stored_once(self, frame_ids: list[int]) -> None:
        async with self.api.runtime.session_factory() as session:
            await assert_each_frame_stored_once(session, frame_ids)

    async def wait_for_sweep(self, *, after: datetime, within: float) -> None:
        """Until a run of the sweeper (`process_detection_queue`) finishes after `after`."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            async with self.api.runtime.session_factory() as session:
                finished = await session.scalar(select(JobRun.last_finished_at)
                                                .where(JobRun.name == "process_detection_queue"))
            if finished is not None and finished > after:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"the sweeper did not run in {within} s")

    async def items(self, *where: Any) -> list[QueueItem]:
        async with self.api.runtime.session_factory() as session:
            return list(await session.scalars(select(QueueItem).where(*where)
                                              .order_by(QueueItem.id)))


@asynccontextmanager
async def celery_cluster(tmp_path: Path, database_url: str, broker_url: str,
                         flaky: tuple[FlakyProvider, str], **settings_values: Any
                         ) -> AsyncIterator[Cluster]:
    """The API in this process, dispatching through Celery (so it runs no worker of its own),
    with the flaky provider as the default and a camera `gate`; the test starts worker and beat
    processes with `cluster.processes`, and every one of them is stopped at the end."""
    settings = make_settings(tmp_path, database_url, broker_url=broker_url, **settings_values)
    processes = ProcessGroup(tmp_path / "processes", framewatch_env(settings))
    apis = cast(AsyncGenerator[Api, None], start_api(settings))
    try:
        api = await anext(apis)
        assert api.runtime.uses_broker
        response = await api.client.post("/api/v1/providers", json=flaky_provider_body(flaky[1]),
                                         headers=api.auth("admin"))
        assert response.status_code == 201, response.text
        await add_camera(api)
        yield Cluster(api, flaky[0], processes)
    finally:
        processes.stop_all()
        await apis.aclose()
