"""The in-process worker of `framewatch serve` when no broker is configured (the default).

It runs exactly what Celery workers run — `run_claimed_item` for queue items and the periodic
jobs of `jobs.PERIODIC_JOBS` — inside the API's event loop, so one machine needs no broker and
behaves the same. Several `serve` processes on one PostgreSQL database share the queue safely:
items are claimed with leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from framewatch.models import QueueItem
from framewatch.queue.heartbeats import heartbeat, worker_identity
from framewatch.queue.jobs import PERIODIC_JOBS, PeriodicJob, run_job
from framewatch.queue.processing import Outcome, run_claimed_item
from framewatch.queue.service import claim_due_items, release_leases
from framewatch.runtime import Runtime

log = logging.getLogger(__name__)

KIND = "inprocess"


class InProcessWorker:
    def __init__(self, runtime: Runtime, wake: asyncio.Event) -> None:
        self.runtime = runtime
        self.worker_id = worker_identity(KIND)
        self.concurrency = runtime.settings.worker_concurrency
        self.poll_seconds = runtime.settings.worker_poll_seconds
        self._wake = wake
        self._running: set[asyncio.Task[Outcome]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False
        self._stopped = asyncio.Event()

    def start(self) -> None:
        self._loops.append(asyncio.create_task(self._claim_loop(), name="queue-claims"))
        self._loops.append(asyncio.create_task(self._heartbeat_loop(), name="queue-heartbeat"))
        for job in PERIODIC_JOBS:
            if not job.broker_only:
                self._loops.append(asyncio.create_task(self._job_loop(job), name=job.name))

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop claiming, let running items finish (bounded), hand back what is left."""
        self._stopping = True
        self._stopped.set()
        self._wake.set()
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self._running:
            await asyncio.wait(set(self._running), timeout=grace_seconds)
        for unfinished in self._running:
            unfinished.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        async with self.runtime.session_factory() as session:
            released = await release_leases(session, self.worker_id)
            await session.commit()
        if released:
            log.info("handed back %d unfinished queue items", released)

    async def _claim_loop(self) -> None:
        lease = self.runtime.queue_policy.lease
        while not self._stopping:
            free = self.concurrency - len(self._running)
            claimed: list[QueueItem] = []
            if free > 0:
                try:
                    claimed = await self._claim(free, lease)
                except Exception:  # a database blip must not kill the worker
                    log.exception("claiming queue items failed; retrying")
            for item in claimed:
                task = asyncio.create_task(run_claimed_item(self.runtime, item, self.worker_id))
                self._running.add(task)
                task.add_done_callback(self._item_finished)
            if claimed and len(self._running) < self.concurrency:
                continue  # more may be due right now
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)

    async def _claim(self, limit: int, lease: timedelta) -> list[QueueItem]:
        async with self.runtime.session_factory() as session:
            items = await claim_due_items(session, self.worker_id, lease, limit)
            await session.commit()
        return items

    def _item_finished(self, task: asyncio.Task[Outcome]) -> None:
        self._running.discard(task)
        if task.cancelled():
            outcome = "cancelled"
        elif task.exception() is not None:
            outcome = "error"
            log.error("queue item failed unexpectedly", exc_info=task.exception())
        else:
            outcome = task.result().value
        self.runtime.metrics.tasks.labels("process_detection_frame", outcome).inc()
        self._wake.set()  # a slot is free

    async def _heartbeat_loop(self) -> None:
        while not self._stopping:
            try:
                async with self.runtime.session_factory() as session:
                    await heartbeat(session, self.worker_id, KIND)
                    await session.commit()
            except Exception:
                log.exception("worker heartbeat failed")
            await self._rest(self.runtime.settings.worker_heartbeat_seconds)

    async def _job_loop(self, job: PeriodicJob) -> None:
        interval = job.interval(self.runtime.settings)
        while not await self._rest(interval):
            try:
                await run_job(self.runtime, job)
            except Exception:
                log.exception("periodic job %s failed", job.name)

    async def _rest(self, seconds: float) -> bool:
        """Wait `seconds`, or less if the worker stops; whether it is stopping. The loops end
        on the flag as well as on cancellation: a cancellation that a library swallows (a
        database driver interrupted mid-call, say) must not leave a loop running forever."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)
        return self._stopping
