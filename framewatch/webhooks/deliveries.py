"""The webhook deliveries' state changes: claim with a lease, deliver, retry, dead-letter,
redeliver — the patterns of the processing queue (framewatch/queue/service.py, docs/queue.md):
every transition is one conditional UPDATE, attempts are counted at the claim, and a worker
whose lease expired learns it when it tries to record the outcome, and records nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.core.database import utcnow
from framewatch.core.errors import Conflict, NotFound
from framewatch.core.pagination import is_row_id
from framewatch.events.service import EventType, Severity, record_event
from framewatch.models import WebhookDelivery, WebhookSubscription
from framewatch.models.webhook import (
    DELIVERY_DEAD,
    DELIVERY_DELIVERED,
    DELIVERY_PENDING,
    DELIVERY_PROCESSING,
)
from framewatch.queue.service import RetryPolicy
from framewatch.webhooks.filters import PING

ATTEMPT_LOG_SIZE = 20


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one POST came to."""

    at: datetime
    status_code: int | None
    error: str | None
    response_ms: float | None
    retryable: bool

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_log(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "status_code": self.status_code,
                "error": self.error, "response_ms": self.response_ms}


def claimable(now: datetime) -> ColumnElement[bool]:
    """Due pending deliveries and orphaned ones (lease expired) of enabled subscriptions; a ping
    goes out even to a disabled one."""
    enabled = select(WebhookSubscription.id).where(WebhookSubscription.enabled.is_(True))
    return and_(
        or_(
            and_(WebhookDelivery.status == DELIVERY_PENDING,
                 WebhookDelivery.next_attempt_at <= now),
            and_(WebhookDelivery.status == DELIVERY_PROCESSING,
                 WebhookDelivery.lease_expires_at < now),
        ),
        or_(WebhookDelivery.subscription_id.in_(enabled), WebhookDelivery.event_type == PING),
    )


async def claim_due(
    session: AsyncSession, worker_id: str, lease: timedelta, limit: int,
) -> list[WebhookDelivery]:
    """Take up to `limit` due or orphaned deliveries, oldest due first (PostgreSQL: skipping
    rows other workers are claiming right now)."""
    now = utcnow()
    due = (
        select(WebhookDelivery.id).where(claimable(now))
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(limit)
        .with_for_update(skip_locked=True, of=WebhookDelivery)
        # Materialised: run once (see claim_due_items in framewatch/queue/service.py).
        .cte("due").prefix_with("MATERIALIZED", dialect="postgresql")
    )
    statement = (
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(select(due.c.id)), claimable(now))
        .values(status=DELIVERY_PROCESSING, lease_owner=worker_id, lease_expires_at=now + lease,
                attempts=WebhookDelivery.attempts + 1, updated_at=now)
        .returning(WebhookDelivery)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return list((await session.scalars(statement)).all())


def _held_by(delivery: WebhookDelivery, worker_id: str) -> ColumnElement[bool]:
    return and_(WebhookDelivery.id == delivery.id,
                WebhookDelivery.status == DELIVERY_PROCESSING,
                WebhookDelivery.lease_owner == worker_id)


async def record_attempt(
    session: AsyncSession, delivery: WebhookDelivery, worker_id: str, attempt: Attempt,
    policy: RetryPolicy,
) -> str | None:
    """Store the attempt's outcome: delivered, retry later (backoff) or dead. Writes the
    `webhook.dead_letter` event. None when the lease was lost (nothing written)."""
    now = utcnow()
    values: dict[str, Any] = {
        "last_status_code": attempt.status_code, "last_error": attempt.error,
        "last_response_ms": attempt.response_ms, "lease_owner": None, "lease_expires_at": None,
        "attempt_log": [*(delivery.attempt_log or []), attempt.as_log()][-ATTEMPT_LOG_SIZE:],
        "updated_at": now,
    }
    if attempt.ok:
        values.update(status=DELIVERY_DELIVERED, delivered_at=now, finished_at=now)
    elif attempt.retryable and delivery.attempts < delivery.max_attempts:
        values.update(status=DELIVERY_PENDING,
                      next_attempt_at=now + policy.delay(delivery.attempts))
    else:
        values.update(status=DELIVERY_DEAD, finished_at=now)
    result = await session.execute(
        update(WebhookDelivery).where(_held_by(delivery, worker_id)).values(**values)
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return None
    status = str(values["status"])
    if status == DELIVERY_DEAD:
        reason = "attempts exhausted" if attempt.retryable else "not retryable"
        record_event(
            session, EventType.WEBHOOK_DEAD_LETTER,
            f"webhook delivery {delivery.id} ({delivery.event_type}) dead-lettered ({reason}): "
            f"{(attempt.error or '')[:200]}",
            severity=Severity.ERROR,
            payload={"webhook_id": delivery.subscription_id, "delivery_id": delivery.id,
                     "event_type": delivery.event_type, "attempts": delivery.attempts,
                     "status_code": attempt.status_code, "error": (attempt.error or "")[:500],
                     "reason": reason},
        )
    return status


async def release_leases(session: AsyncSession, worker_id: str) -> int:
    """Hand back what this worker holds (a clean stop), without counting the attempt."""
    result = await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.status == DELIVERY_PROCESSING,
               WebhookDelivery.lease_owner == worker_id)
        .values(status=DELIVERY_PENDING, next_attempt_at=utcnow(),
                attempts=WebhookDelivery.attempts - 1, lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def get_delivery(session: AsyncSession, subscription_id: int,
                       delivery_id: int) -> WebhookDelivery:
    delivery = (await session.get(WebhookDelivery, delivery_id, populate_existing=True)
                if is_row_id(delivery_id) else None)
    if delivery is None or delivery.subscription_id != subscription_id:
        raise NotFound(f"webhook {subscription_id} has no delivery {delivery_id}")
    return delivery


async def list_deliveries(
    session: AsyncSession, subscription_id: int, *, status: str | None, limit: int,
    before_id: int | None,
) -> tuple[list[WebhookDelivery], int | None]:
    """A subscription's deliveries, newest first, and the `before_id` of the next page."""
    query = (select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription_id)
             .order_by(WebhookDelivery.id.desc()).limit(limit + 1))
    if status:
        query = query.where(WebhookDelivery.status == status)
    if before_id:
        query = query.where(WebhookDelivery.id < before_id)
    rows = list(await session.scalars(query))
    return rows[:limit], (rows[limit - 1].id if len(rows) > limit else None)


async def redeliver(session: AsyncSession, delivery: WebhookDelivery, *,
                    actor: str | None) -> WebhookDelivery:
    """Send a delivered or dead delivery again, with a fresh set of attempts and the same id
    (receivers that keep the ids they processed can tell it is the same message)."""
    previous = delivery.status
    if previous not in (DELIVERY_DELIVERED, DELIVERY_DEAD):
        raise Conflict(f"delivery {delivery.id} is {previous}; only delivered or dead "
                       "deliveries can be sent again", delivery_status=previous)
    now = utcnow()
    result = await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery.id, WebhookDelivery.status == previous)
        .values(status=DELIVERY_PENDING, attempts=0, next_attempt_at=now, finished_at=None,
                delivered_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise Conflict(f"delivery {delivery.id} changed meanwhile; try again")
    await session.refresh(delivery)
    record_event(session, EventType.WEBHOOK_REDELIVERED,
                 f"webhook delivery {delivery.id} sent again", actor=actor,
                 payload={"webhook_id": delivery.subscription_id, "delivery_id": delivery.id,
                          "previous_status": previous})
    return delivery


async def delete_finished(session: AsyncSession, older_than: datetime, limit: int) -> int:
    """Retention: delivered and dead deliveries that ended before `older_than` (one batch)."""
    ids = select(WebhookDelivery.id).where(
        WebhookDelivery.status.in_((DELIVERY_DELIVERED, DELIVERY_DEAD)),
        WebhookDelivery.finished_at < older_than,
    ).limit(limit)
    result = await session.execute(
        delete(WebhookDelivery).where(WebhookDelivery.id.in_(ids))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
