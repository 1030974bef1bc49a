"""Queue statistics: what is waiting, what got done lately, who is working, which circuits are
open. Every query here is an indexed count or a small read."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.core.database import utcnow
from framewatch.events.service import EventType
from framewatch.models import DetectionEventLog, QueueItem
from framewatch.models.queue_item import QUEUE_DEAD, QUEUE_DONE, QUEUE_PENDING, QUEUE_PROCESSING
from framewatch.providers.breaker import breaker_states
from framewatch.queue.heartbeats import recent_workers
from framewatch.queue.schemas import BreakerState, QueueStats, WindowCounts, WorkerSeen

WINDOWS = {"1m": timedelta(minutes=1), "5m": timedelta(minutes=5), "15m": timedelta(minutes=15)}
WORKER_SEEN_WITHIN = timedelta(minutes=1)


async def queue_stats(session: AsyncSession, mode: str) -> QueueStats:
    now = utcnow()
    counts = {status: 0 for status in (QUEUE_PENDING, QUEUE_PROCESSING, QUEUE_DONE, QUEUE_DEAD)}
    for status, count in await session.execute(
        select(QueueItem.status, func.count()).group_by(QueueItem.status)
    ):
        counts[status] = count
    oldest = await session.scalar(
        select(QueueItem.created_at).where(QueueItem.status == QUEUE_PENDING)
        .order_by(QueueItem.created_at).limit(1)
    )
    longest = max(WINDOWS.values())
    finished = {status: [0] * len(WINDOWS) for status in (QUEUE_DONE, QUEUE_DEAD)}
    column = QueueItem.finished_at
    for status, *sums in await session.execute(
        select(QueueItem.status, *[func.sum(case((column >= now - span, 1), else_=0))
                                   for span in WINDOWS.values()])
        .where(column >= now - longest).group_by(QueueItem.status)
    ):
        finished[status] = [int(value or 0) for value in sums]
    created = DetectionEventLog.created_at
    retry_sums = (
        await session.execute(
            select(*[func.sum(case((created >= now - span, 1), else_=0))
                     for span in WINDOWS.values()])
            .where(DetectionEventLog.event_type == EventType.QUEUE_RETRY.value,
                   created >= now - longest)
        )
    ).one()
    windows = {
        name: WindowCounts(done=finished[QUEUE_DONE][index], dead=finished[QUEUE_DEAD][index],
                           retries=int(retry_sums[index] or 0))
        for index, name in enumerate(WINDOWS)
    }
    return QueueStats(
        mode=mode,
        counts=counts,
        oldest_pending_age_seconds=(now - oldest).total_seconds() if oldest else None,
        windows=windows,
        dead_letters=counts[QUEUE_DEAD],
        workers=[WorkerSeen.model_validate(w)
                 for w in await recent_workers(session, WORKER_SEEN_WITHIN)],
        breakers=[BreakerState.model_validate(b) for b in await breaker_states(session)],
    )
