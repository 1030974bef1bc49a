"""The periodic jobs, listed once: Celery beat schedules them, the in-process worker runs them on
the same intervals. Each is a plain async function of the runtime, returning a small report that
is kept in `job_runs`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.core.config import Settings
from framewatch.core.database import utcnow
from framewatch.models import JobRun

if TYPE_CHECKING:
    from framewatch.runtime import Runtime

JobFunction = Callable[["Runtime"], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class PeriodicJob:
    name: str
    interval: Callable[[Settings], float]
    # Only meaningful with a broker: the in-process worker claims due items itself.
    broker_only: bool = False

    @property
    def task_name(self) -> str:
        return f"framewatch.{self.name}"

    def function(self) -> JobFunction:
        # Imported on use: the job modules import the runtime, which imports this module's users.
        from framewatch.providers.health import check_providers
        from framewatch.queue.sweeper import sweep
        from framewatch.retention.service import cleanup_old_data
        from framewatch.stats.rollup import aggregate_stats
        from framewatch.webhooks.runner import deliver_webhooks

        functions: dict[str, JobFunction] = {
            "test_detection_provider": check_providers,
            "cleanup_old_detections": cleanup_old_data,
            "aggregate_detection_stats": aggregate_stats,
            "process_detection_queue": sweep,
            "deliver_webhooks": deliver_webhooks,
        }
        return functions[self.name]


PERIODIC_JOBS = (
    PeriodicJob("process_detection_queue", lambda s: s.queue_sweep_seconds, broker_only=True),
    PeriodicJob("test_detection_provider", lambda s: s.provider_check_seconds),
    PeriodicJob("aggregate_detection_stats", lambda s: s.stats_interval_seconds),
    PeriodicJob("cleanup_old_detections", lambda s: s.cleanup_interval_seconds),
    # Webhook deliveries due now (framewatch/webhooks/runner.py).
    PeriodicJob("deliver_webhooks", lambda s: s.webhook_poll_seconds),
)


def job_named(name: str) -> PeriodicJob:
    for job in PERIODIC_JOBS:
        if job.name == name:
            return job
    raise KeyError(name)


async def run_job(runtime: Runtime, job: PeriodicJob) -> dict[str, Any]:
    """Run `job` once and record when it ran and what it reported in `job_runs`."""
    async with runtime.session_factory() as session:
        await _mark(session, job.name, last_started_at=utcnow())
        await session.commit()
    try:
        report = await job.function()(runtime)
        runtime.metrics.tasks.labels(job.name, "ok").inc()
    except Exception as exc:
        report = {"error": f"{type(exc).__name__}: {exc}"}
        runtime.metrics.tasks.labels(job.name, "error").inc()
        raise
    except asyncio.CancelledError:
        # The worker is stopping. Without a report the `finally` below would raise a NameError
        # in place of the cancellation, the caller's loop would log it and carry on, and the
        # worker's stop would wait for that loop forever.
        report = {"error": "cancelled: the worker stopped"}
        raise
    finally:
        async with runtime.session_factory() as session:
            await _mark(session, job.name, last_finished_at=utcnow(), last_result=report)
            await session.commit()
    return report


async def _mark(session: AsyncSession, name: str, **values: Any) -> None:
    row = await session.get(JobRun, name)
    if row is None:
        row = JobRun(name=name, last_result={})
        session.add(row)
    for key, value in values.items():
        setattr(row, key, value)
