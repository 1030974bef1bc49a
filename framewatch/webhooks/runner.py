"""Running deliveries: the `deliver_webhooks` job (in-process worker and Celery alike) and the
immediate first attempt of a test ping."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.core.config import Settings
from framewatch.core.database import utcnow
from framewatch.models import WebhookDelivery, WebhookSubscription
from framewatch.models.webhook import DELIVERY_PROCESSING
from framewatch.providers.urls import ProviderAddressPolicy
from framewatch.queue.heartbeats import worker_identity
from framewatch.queue.service import RetryPolicy
from framewatch.webhooks.deliveries import (
    Attempt,
    claim_due,
    delete_finished,
    record_attempt,
    release_leases,
)
from framewatch.webhooks.filters import PING, envelope
from framewatch.webhooks.sender import create_client, post_delivery

if TYPE_CHECKING:
    from framewatch.runtime import Runtime

log = logging.getLogger(__name__)

BATCH = 20  # deliveries sent at once by one run
RUN_BUDGET_SECONDS = 30.0  # a run stops claiming after this; the next run goes on
CLEANUP_EVERY_SECONDS = 3600.0
CLEANUP_BATCH = 1000


@dataclass
class WebhookState:
    """A process's webhook machinery: the HTTP client and the policies, made from settings."""

    client: httpx.AsyncClient
    retry: RetryPolicy
    lease: timedelta
    timeout: float
    retention: timedelta | None
    last_cleanup: float = field(default=float("-inf"), repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, policy: ProviderAddressPolicy) -> WebhookState:
        timeout = settings.webhook_timeout_seconds
        return cls(
            client=create_client(policy),
            retry=RetryPolicy(max_attempts=settings.webhook_max_attempts,
                              base_seconds=settings.webhook_retry_base_seconds,
                              max_seconds=settings.webhook_retry_max_seconds),
            # Well above one POST (connect + answer), so a live worker never loses its lease.
            lease=timedelta(seconds=max(60.0, 3 * timeout)),
            timeout=timeout,
            retention=(timedelta(days=settings.webhook_retention_days)
                       if settings.webhook_retention_days else None),
        )

    async def close(self) -> None:
        await self.client.aclose()


async def deliver_webhooks(runtime: Runtime) -> dict[str, Any]:
    """Send due deliveries, a batch at a time, until none is due or the run's budget is spent;
    then, at most hourly, delete finished deliveries past their retention.

    Stopped (the worker shuts down and cancels the run), it hands back the deliveries it still
    holds at once rather than leaving them to their lease: a POST that was cut short is sent
    again by the next run (delivery is at least once; receivers dedupe on the delivery id)."""
    # One owner per run: two runs in one process (Celery threads) must not release each
    # other's leases.
    worker_id = f"{worker_identity('webhooks')}/{uuid.uuid4().hex[:8]}"
    state = runtime.webhooks
    outcomes: Counter[str] = Counter()
    started = time.monotonic()
    try:
        while time.monotonic() - started < RUN_BUDGET_SECONDS:
            async with runtime.session_factory() as session:
                claimed = await claim_due(session, worker_id, state.lease, BATCH)
                subscriptions = await _subscriptions(session, claimed)
                await session.commit()
            if not claimed:
                break
            results = await asyncio.gather(*(
                run_delivery(runtime, d, subscriptions.get(d.subscription_id), worker_id)
                for d in claimed
            ))
            outcomes.update(results)
            if len(claimed) < BATCH:
                break
    except asyncio.CancelledError:
        await asyncio.shield(_hand_back(runtime, worker_id))
        raise
    report: dict[str, Any] = dict(outcomes)
    due = time.monotonic() - state.last_cleanup > CLEANUP_EVERY_SECONDS
    if state.retention is not None and due:
        state.last_cleanup = time.monotonic()
        async with runtime.session_factory() as session:
            report["deleted"] = await delete_finished(session, utcnow() - state.retention,
                                                      CLEANUP_BATCH)
            await session.commit()
    return report


async def _hand_back(runtime: Runtime, worker_id: str) -> None:
    async with runtime.session_factory() as session:
        released = await release_leases(session, worker_id)
        await session.commit()
    if released:
        log.info("handed back %d unfinished webhook deliveries", released)


async def _subscriptions(session: AsyncSession, deliveries: list[WebhookDelivery]
                         ) -> dict[int, WebhookSubscription]:
    ids = {d.subscription_id for d in deliveries}
    if not ids:
        return {}
    rows = await session.scalars(select(WebhookSubscription).where(WebhookSubscription.id.in_(ids)))
    return {row.id: row for row in rows}


async def run_delivery(runtime: Runtime, delivery: WebhookDelivery,
                       subscription: WebhookSubscription | None, worker_id: str) -> str:
    """POST one claimed delivery and record the outcome; returns the delivery's new status
    (`delivered`, `pending` for a retry, `dead`) or `lost_lease` / `skipped`."""
    if subscription is None:  # deleted meanwhile, and its deliveries with it
        return "skipped"
    state = runtime.webhooks
    try:
        secret = runtime.secret_box.decrypt(subscription.secret_encrypted)
    except ValueError as exc:
        attempt = Attempt(utcnow(), None, str(exc), None, False)
    else:
        attempt = await post_delivery(
            state.client, runtime.provider_policy, url=subscription.url, secret=secret,
            delivery_id=delivery.id, event_type=delivery.event_type, body=delivery.body,
            timeout_seconds=state.timeout,
        )
    async with runtime.session_factory() as session:
        status = await record_attempt(session, delivery, worker_id, attempt, state.retry)
        await session.commit()
    if status is None:
        log.info("webhook delivery %s: lease lost to another worker; outcome dropped",
                 delivery.id)
        return "lost_lease"
    if not attempt.ok:
        log.warning("webhook %s delivery %s attempt %d/%d failed (%s): now %s",
                    subscription.id, delivery.id, delivery.attempts, delivery.max_attempts,
                    attempt.error, status)
    return status


async def send_ping(runtime: Runtime, subscription: WebhookSubscription) -> WebhookDelivery:
    """Queue a `ping` delivery and make its first attempt now (later ones, if it fails, are the
    job's); returns the delivery as it stands after that attempt."""
    now = utcnow()
    data = {"webhook_id": subscription.id, "name": subscription.name,
            "message": "a test ping from framewatch"}
    # Written already leased to this request, attempt 1 under way: the delivery job of a
    # worker (or another instance) cannot take it first, and the caller sees this attempt.
    worker_id = worker_identity("api")
    async with runtime.session_factory() as session:
        delivery = WebhookDelivery(
            subscription_id=subscription.id, event_type=PING,
            body=envelope(subscription.id, PING, data), status=DELIVERY_PROCESSING, attempts=1,
            max_attempts=runtime.webhooks.retry.max_attempts, next_attempt_at=now,
            lease_owner=worker_id, lease_expires_at=now + runtime.webhooks.lease,
            attempt_log=[], created_at=now, updated_at=now,
        )
        session.add(delivery)
        await session.commit()
        await session.refresh(delivery)
    await run_delivery(runtime, delivery, subscription, worker_id)
    async with runtime.session_factory() as session:
        fresh = await session.get(WebhookDelivery, delivery.id)
    assert fresh is not None
    return fresh
