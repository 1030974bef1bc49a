"""The processing queue's state changes: enqueue, claim with a lease, finish, retry, dead-letter.

The `detection_processing_queue` table is the source of truth; brokers and in-process queues only
carry hints ("look at item 42"). Every transition is one conditional UPDATE, so that two workers
can never both own an item:

- claiming sets `processing` with a lease only if the item is due (`pending`, `next_attempt_at`
  passed) or orphaned (`processing` with an expired lease) — `FOR UPDATE SKIP LOCKED` picks due
  items on PostgreSQL, SQLite serialises writers;
- finishing, retrying or dead-lettering succeeds only while the caller still holds the lease; a
  worker whose lease expired and was taken over learns it here and stores nothing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.core.context import current_request
from framewatch.core.database import utcnow
from framewatch.core.errors import Conflict, NotFound
from framewatch.core.pagination import is_row_id
from framewatch.events.service import EventType, Severity, record_event
from framewatch.models import Frame, QueueItem
from framewatch.models.frame import FRAME_FAILED, FRAME_QUEUED
from framewatch.models.queue_item import (
    QUEUE_DEAD,
    QUEUE_DONE,
    QUEUE_PENDING,
    QUEUE_PROCESSING,
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits base·2^(n-1), capped, times 0.5–1."""

    max_attempts: int = 5
    base_seconds: float = 5.0
    max_seconds: float = 600.0

    def delay(self, attempts: int) -> timedelta:
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** max(attempts - 1, 0))
        # "Equal jitter": never less than half the backoff, so retries still spread out in time
        # but a failing provider is not hammered by items that drew a near-zero delay.
        return timedelta(seconds=ceiling * random.uniform(0.5, 1.0))


def claimable(now: datetime) -> ColumnElement[bool]:
    """Due pending items, and items whose worker's lease ran out (it died or hung)."""
    return or_(
        and_(QueueItem.status == QUEUE_PENDING, QueueItem.next_attempt_at <= now),
        and_(QueueItem.status == QUEUE_PROCESSING, QueueItem.lease_expires_at < now),
    )


async def enqueue_frame(
    session: AsyncSession,
    frame: Frame,
    *,
    provider_id: int | None,
    detection_types: list[str],
    max_attempts: int,
    last_error: str | None = None,
    attempts: int = 0,
    retryable: bool = True,
    not_before: datetime | None = None,
) -> QueueItem:
    """Queue `frame` for processing (flushes). A frame the provider refused outright is
    dead-lettered at once: retrying cannot help until someone fixes the cause and requeues it."""
    now = utcnow()
    dead = not retryable
    item = QueueItem(
        frame_id=frame.id,
        camera_id=frame.camera_id,
        provider_id=provider_id,
        detection_types=detection_types,
        status=QUEUE_DEAD if dead else QUEUE_PENDING,
        attempts=attempts,
        max_attempts=max_attempts,
        next_attempt_at=not_before or now,
        last_error=last_error,
        finished_at=now if dead else None,
        request_id=current_request.get().request_id,
    )
    session.add(item)
    await session.flush()
    return item


async def claim_item(
    session: AsyncSession, item_id: int, worker_id: str, lease: timedelta
) -> QueueItem | None:
    """Take item `item_id` if it is due or orphaned; None if it is not (done, leased, waiting)."""
    now = utcnow()
    statement = (
        update(QueueItem)
        .where(QueueItem.id == item_id, claimable(now))
        .values(_lease_values(now, worker_id, lease))
        .returning(QueueItem)
    )
    return (await session.scalars(statement)).one_or_none()


async def claim_due_items(
    session: AsyncSession, worker_id: str, lease: timedelta, limit: int
) -> list[QueueItem]:
    """Take up to `limit` due or orphaned items, oldest due first, skipping rows other workers
    are claiming at this moment (PostgreSQL `FOR UPDATE SKIP LOCKED`)."""
    now = utcnow()
    due = (
        select(QueueItem.id)
        .where(claimable(now))
        .order_by(QueueItem.next_attempt_at, QueueItem.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        # A materialised CTE runs once. As a plain IN subquery PostgreSQL may rescan it for each
        # row (nested loop semi join); every rescan skips the rows this statement already
        # updated and locks the next ones, so `limit` was lost and one worker took everything.
        .cte("due")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    statement = (
        update(QueueItem)
        # Re-checked in the UPDATE itself: on SQLite the SELECT takes no row lock.
        .where(QueueItem.id.in_(select(due.c.id)), claimable(now))
        .values(_lease_values(now, worker_id, lease))
        .returning(QueueItem)
        # Refresh objects the session already holds, or callers would get pre-claim values.
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return list((await session.scalars(statement)).all())


def _lease_values(now: datetime, worker_id: str, lease: timedelta) -> dict[str, object]:
    return {
        "status": QUEUE_PROCESSING,
        "lease_owner": worker_id,
        "lease_expires_at": now + lease,
        # Counted when claimed, so an item that kills its worker every time still runs out of
        # attempts instead of crashing workers forever.
        "attempts": QueueItem.attempts + 1,
        "updated_at": now,
    }


def _held_by(item: QueueItem, worker_id: str) -> ColumnElement[bool]:
    return and_(
        QueueItem.id == item.id,
        QueueItem.status == QUEUE_PROCESSING,
        QueueItem.lease_owner == worker_id,
    )


async def mark_done(session: AsyncSession, item: QueueItem, worker_id: str) -> bool:
    """End the item as done if `worker_id` still holds its lease; False if it was taken over."""
    now = utcnow()
    result = await session.execute(
        update(QueueItem)
        .where(_held_by(item, worker_id))
        .values(status=QUEUE_DONE, finished_at=now, lease_owner=None, lease_expires_at=None,
                updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def mark_failed(
    session: AsyncSession,
    item: QueueItem,
    worker_id: str,
    error: str,
    *,
    retryable: bool,
    policy: RetryPolicy,
    provider: str | None,
) -> str | None:
    """Schedule a retry with backoff, or dead-letter the item when retrying cannot help or its
    attempts are spent; writes the `queue.retry` / `queue.dead_letter` event. Returns the new
    status, or None when the lease was lost (nothing written)."""
    now = utcnow()
    if retryable and item.attempts < item.max_attempts:
        next_attempt = now + policy.delay(item.attempts)
        values: dict[str, object] = {
            "status": QUEUE_PENDING,
            "next_attempt_at": next_attempt,
            "dispatched_at": None,  # the sweeper dispatches it again once due
        }
    else:
        values = {"status": QUEUE_DEAD, "finished_at": now}
    result = await session.execute(
        update(QueueItem)
        .where(_held_by(item, worker_id))
        .values(**values, last_error=error[:2000], lease_owner=None, lease_expires_at=None,
                updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return None
    status = str(values["status"])
    payload = {"queue_item_id": item.id, "attempts": item.attempts,
               "max_attempts": item.max_attempts, "error": error[:500]}
    if status == QUEUE_PENDING:
        record_event(
            session, EventType.QUEUE_RETRY,
            f"queue item {item.id} failed (attempt {item.attempts} of {item.max_attempts}); "
            f"retrying at {values['next_attempt_at']:%H:%M:%S}",
            severity=Severity.WARNING, camera_id=item.camera_id, frame_id=item.frame_id,
            provider=provider,
            payload={**payload, "next_attempt_at": str(values["next_attempt_at"])},
        )
    else:
        await session.execute(
            update(Frame).where(Frame.id == item.frame_id).values(status=FRAME_FAILED)
        )
        reason = "not retryable" if not retryable else "attempts exhausted"
        record_event(
            session, EventType.QUEUE_DEAD_LETTER,
            f"queue item {item.id} dead-lettered ({reason}): {error[:200]}",
            severity=Severity.ERROR, camera_id=item.camera_id, frame_id=item.frame_id,
            provider=provider, payload={**payload, "reason": reason},
        )
    return status


async def defer(session: AsyncSession, item: QueueItem, worker_id: str, until: datetime) -> bool:
    """Hand the item back untouched (its claim does not count as an attempt) to run after
    `until`: used while its provider's circuit is open."""
    result = await session.execute(
        update(QueueItem)
        .where(_held_by(item, worker_id))
        .values(status=QUEUE_PENDING, next_attempt_at=until, attempts=QueueItem.attempts - 1,
                dispatched_at=None, lease_owner=None, lease_expires_at=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def release_leases(session: AsyncSession, worker_id: str) -> int:
    """On a clean shutdown: hand back what this worker holds, without counting the attempt."""
    result = await session.execute(
        update(QueueItem)
        .where(QueueItem.status == QUEUE_PROCESSING, QueueItem.lease_owner == worker_id)
        .values(status=QUEUE_PENDING, next_attempt_at=utcnow(), attempts=QueueItem.attempts - 1,
                dispatched_at=None, lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def list_items(
    session: AsyncSession, *, status: str | None, camera_id: str | None,
    camera_scope: frozenset[str] | None, limit: int, before_id: int | None,
) -> tuple[list[QueueItem], int | None]:
    """Items newest first, and the id to pass as `before_id` for the next page (or None)."""
    if camera_id and "\x00" in camera_id:
        return [], None  # no camera id has a NUL (and PostgreSQL refuses one as a parameter)
    query = select(QueueItem).order_by(QueueItem.id.desc()).limit(limit + 1)
    if status:
        query = query.where(QueueItem.status == status)
    if camera_id:
        query = query.where(QueueItem.camera_id == camera_id)
    if camera_scope is not None:
        query = query.where(QueueItem.camera_id.in_(sorted(camera_scope)))
    if before_id:
        query = query.where(QueueItem.id < before_id)
    rows = list(await session.scalars(query))
    return rows[:limit], (rows[limit - 1].id if len(rows) > limit else None)


async def get_item(session: AsyncSession, item_id: int) -> QueueItem:
    item = (await session.get(QueueItem, item_id, populate_existing=True)
            if is_row_id(item_id) else None)
    if item is None:
        raise NotFound(f"no queue item with id {item_id}")
    return item


async def requeue(session: AsyncSession, item_id: int, *, actor: str | None) -> QueueItem:
    """Give a dead-lettered item a fresh set of attempts, due now (flushes, writes an event)."""
    item = await get_item(session, item_id)
    if item.status != QUEUE_DEAD:
        raise Conflict(f"queue item {item_id} is {item.status}; only dead items can be retried",
                       item_status=item.status)
    await _requeue_rows(session, [item.id])
    await session.refresh(item)
    record_event(session, EventType.QUEUE_REQUEUED, f"queue item {item.id} requeued",
                 camera_id=item.camera_id, frame_id=item.frame_id, actor=actor,
                 payload={"queue_item_id": item.id})
    return item


async def requeue_dead(
    session: AsyncSession, *, actor: str | None, camera_id: str | None = None,
    camera_scope: frozenset[str] | None = None,
) -> list[int]:
    """Requeue every dead-lettered item (optionally of one camera, or of the cameras of a
    key's scope); returns their ids."""
    if camera_id and "\x00" in camera_id:
        return []  # no camera id has a NUL (and PostgreSQL refuses one as a parameter)
    query = select(QueueItem.id).where(QueueItem.status == QUEUE_DEAD).order_by(QueueItem.id)
    if camera_id:
        query = query.where(QueueItem.camera_id == camera_id)
    if camera_scope is not None:
        query = query.where(QueueItem.camera_id.in_(sorted(camera_scope)))
    ids = list(await session.scalars(query))
    if ids:
        await _requeue_rows(session, ids)
        record_event(session, EventType.QUEUE_REQUEUED, f"{len(ids)} dead queue items requeued",
                     camera_id=camera_id, actor=actor,
                     payload={"queue_item_ids": ids[:1000], "count": len(ids)})
    return ids


async def _requeue_rows(session: AsyncSession, ids: list[int]) -> None:
    now = utcnow()
    await session.execute(
        update(QueueItem)
        .where(QueueItem.id.in_(ids), QueueItem.status == QUEUE_DEAD)
        .values(status=QUEUE_PENDING, attempts=0, next_attempt_at=now, finished_at=None,
                dispatched_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    frame_ids = select(QueueItem.frame_id).where(QueueItem.id.in_(ids))
    await session.execute(
        update(Frame).where(Frame.id.in_(frame_ids)).values(status=FRAME_QUEUED)
    )


async def mark_dispatched(session: AsyncSession, ids: list[int]) -> None:
    if ids:
        await session.execute(
            update(QueueItem).where(QueueItem.id.in_(ids)).values(dispatched_at=utcnow())
            .execution_options(synchronize_session=False)
        )


async def find_undispatched(
    session: AsyncSession, *, redispatch_after: timedelta, limit: int, resend_stale: bool = True
) -> list[int]:
    """Items a worker should look at now — due or orphaned — that nobody was asked to run
    recently: never dispatched, orphaned since their last dispatch, or (with `resend_stale`)
    dispatched longer ago than `redispatch_after` (the message was lost with a broker restart)."""
    now = utcnow()
    wanted = [
        QueueItem.dispatched_at.is_(None),
        # Orphaned, and nobody was asked to take it over since its lease ran out.
        and_(
            QueueItem.status == QUEUE_PROCESSING,
            QueueItem.dispatched_at < QueueItem.lease_expires_at,
        ),
    ]
    if resend_stale:
        wanted.append(QueueItem.dispatched_at <= now - redispatch_after)
    query = (
        select(QueueItem.id)
        .where(claimable(now), or_(*wanted))
        .order_by(QueueItem.next_attempt_at, QueueItem.id)
        .limit(limit)
    )
    return list(await session.scalars(query))


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    """The queue's timings, from the settings (`FRAMEWATCH_QUEUE_*`)."""

    lease: timedelta = timedelta(seconds=120)
    retry: RetryPolicy = RetryPolicy()
    redispatch_after: timedelta = timedelta(seconds=60)
