"""Celery tasks. Each body is one call into the same service code the API and the in-process
worker use; the tasks only supply a per-process runtime and event loop.

Every worker process (prefork child) builds its own `Runtime` — engine, HTTP client, cache,
detector — on first use and closes it when the process ends.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from celery import shared_task
from celery.signals import (
    celeryd_after_setup,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from framewatch.core.config import Settings
from framewatch.queue.celery_app import periodic_queue
from framewatch.queue.heartbeats import heartbeat, worker_identity
from framewatch.queue.jobs import job_named, run_job
from framewatch.queue.processing import process_item
from framewatch.runtime import Runtime

log = logging.getLogger(__name__)
T = TypeVar("T")
KIND = "celery"


class _ProcessState:
    """This worker process's event loop and runtime, made on first use."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.runtime: Runtime | None = None

    def run(self, action: Callable[[Runtime], Awaitable[T]]) -> T:
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
        if self.runtime is None:
            self.runtime = Runtime.create(Settings())
        try:
            return self.loop.run_until_complete(action(self.runtime))
        finally:
            # What the task committed goes out to the live stream before the task ends.
            self.loop.run_until_complete(self.runtime.live.outbox.drain())

    def close(self) -> None:
        if self.loop is not None and self.runtime is not None:
            self.loop.run_until_complete(self.runtime.close())
        if self.loop is not None:
            self.loop.close()
        self.loop, self.runtime = None, None


_process = _ProcessState()


@worker_process_shutdown.connect
def _close_process_state(**_: Any) -> None:
    _process.close()


@celeryd_after_setup.connect
def consume_periodic_queue(instance: Any, **_: Any) -> None:
    """Every worker also reads the periodic jobs' queue, whatever `--queues` selected, so that
    the sweeper and the other jobs run on time while items wait in the main queue."""
    instance.app.amqp.queues.select_add(periodic_queue())


@shared_task(name="framewatch.process_detection_frame")
def process_detection_frame(item_id: int) -> str:
    """Run queue item `item_id` if it is due (a duplicate or early message is a no-op)."""

    async def run(runtime: Runtime) -> str:
        outcome = await process_item(runtime, item_id, worker_identity(KIND))
        runtime.metrics.tasks.labels("process_detection_frame", outcome.value).inc()
        return outcome.value

    return _process.run(run)


@shared_task(name="framewatch.send_frame_to_provider")
def send_frame_to_provider(frame_id: int, provider_id: int | None = None) -> dict[str, Any]:
    """Send a stored frame to a provider on demand; the answer is kept as a
    `frame.redetected` event (the frame's own detections are not replaced)."""
    from framewatch.frames.redetect import redetect_frame

    async def run(runtime: Runtime) -> dict[str, Any]:
        async with runtime.session_factory() as session:
            result = await redetect_frame(session, runtime, frame_id, provider_id, actor="celery")
            await session.commit()
        return result.model_dump(mode="json")

    return _process.run(run)


def _periodic(name: str) -> Callable[[], dict[str, Any]]:
    job = job_named(name)

    def task() -> dict[str, Any]:
        return _process.run(lambda runtime: run_job(runtime, job))

    task.__name__ = name
    task.__doc__ = f"Periodic job `{name}` (see framewatch.queue.jobs)."
    return shared_task(name=job.task_name)(task)  # type: ignore[no-any-return]


test_detection_provider = _periodic("test_detection_provider")
cleanup_old_detections = _periodic("cleanup_old_detections")
aggregate_detection_stats = _periodic("aggregate_detection_stats")
process_detection_queue = _periodic("process_detection_queue")
deliver_webhooks = _periodic("deliver_webhooks")


class _Heartbeat:
    """A thread in the worker's main process that records it as alive every few seconds."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, worker_id: str) -> None:
        self._thread = threading.Thread(target=self._run, args=(worker_id,), daemon=True,
                                        name="framewatch-heartbeat")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self, worker_id: str) -> None:
        settings = Settings()
        asyncio.run(self._beat(settings, worker_id))

    async def _beat(self, settings: Settings, worker_id: str) -> None:
        from framewatch.core.database import create_engine, create_session_factory

        engine = create_engine(settings.resolved_database_url)
        sessions = create_session_factory(engine)
        try:
            while not self._stop.is_set():
                try:
                    async with sessions() as session:
                        await heartbeat(session, worker_id, KIND)
                        await session.commit()
                except Exception:
                    log.exception("worker heartbeat failed")
                await asyncio.to_thread(self._stop.wait, settings.worker_heartbeat_seconds)
        finally:
            await engine.dispose()


_heartbeat = _Heartbeat()


@worker_ready.connect
def _start_heartbeat(**_: Any) -> None:
    _heartbeat.start(worker_identity(KIND))


@worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    _heartbeat.stop()
