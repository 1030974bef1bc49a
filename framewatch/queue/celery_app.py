"""The Celery application: made from the settings when a broker is configured.

Reliability settings: a task is acknowledged only after it ran (`task_acks_late`), given back to
the broker if its worker process dies (`task_reject_on_worker_lost`), and each worker process
reserves one message at a time (prefetch 1), so a dead worker strands at most the item it was
running — and the database lease brings even that one back.

The periodic jobs go to a queue of their own that every worker consumes besides the items' queue
(`tasks.consume_periodic_queue`). Behind a backlog of items in one shared queue they waited longer
than their `expires` and were discarded unrun, so the sweeper — which redispatches retries,
deferred and orphaned items — did not run at all until the backlog had drained.
"""

from __future__ import annotations

from datetime import timedelta

from celery import Celery
from kombu.entity import Exchange, Queue

from framewatch.core.config import Settings
from framewatch.queue.jobs import PERIODIC_JOBS

QUEUE_NAME = "framewatch"
PERIODIC_QUEUE_NAME = "framewatch.periodic"


def periodic_queue() -> Queue:
    """The periodic jobs' queue, declared alike by beat (which sends) and workers (which read)."""
    exchange = Exchange(PERIODIC_QUEUE_NAME, type="direct")  # type: ignore[no-untyped-call]
    return Queue(PERIODIC_QUEUE_NAME, exchange,  # type: ignore[no-untyped-call]
                 routing_key=PERIODIC_QUEUE_NAME)


def create_celery(settings: Settings, *, set_as_current: bool = True) -> Celery:
    """The Celery app for `settings`; `set_as_current=False` for a client that only sends."""
    if not settings.broker_url:
        raise ValueError("FRAMEWATCH_BROKER_URL is not set: Celery needs a broker "
                         "(e.g. redis://127.0.0.1:6379/0 or amqp://guest@127.0.0.1//)")
    app = Celery("framewatch", broker=settings.broker_url, include=["framewatch.queue.tasks"],
                 set_as_current=set_as_current)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue=QUEUE_NAME,
        task_routes={job.task_name: {"queue": periodic_queue()} for job in PERIODIC_JOBS},
        broker_connection_retry_on_startup=True,
        # Redis re-delivers an unacknowledged message after this long; the sweeper usually
        # recovers the item much sooner, and a late duplicate is a no-op.
        broker_transport_options={"visibility_timeout": 3600},
        # Publishing must not hang a request when the broker is down: the sweeper resends.
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0,
                                   "interval_step": 0.2, "interval_max": 0.5},
        broker_connection_timeout=2,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        enable_utc=True,
        timezone="UTC",
        beat_schedule={
            job.name: {
                "task": job.task_name,
                "schedule": timedelta(seconds=job.interval(settings)),
                # A periodic run that could not start before the next one is due is useless.
                "options": {"expires": job.interval(settings)},
            }
            for job in PERIODIC_JOBS
        },
    )
    return app
