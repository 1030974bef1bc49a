"""Committed detections and events → webhook deliveries (in the same transaction) and MQTT.

`install(session_class, …)` listens to the runtime's session class (the one the live outbox
made). Every flush collects the frames that became processed, the detections and the events
added; just before the transaction commits, they become the same messages the live stream
carries, and one `webhook_deliveries` row is added for each enabled subscription that wants
one — so a delivery exists exactly when its detection or event is committed, whichever process
committed it (API request, in-process worker, Celery task, CLI). After the commit the messages
are handed to `after_commit` (the MQTT publisher); a rollback forgets everything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import event, select
from sqlalchemy.orm import Session, UOWTransaction

from framewatch.core.database import utcnow
from framewatch.live.outbox import Collected, Outgoing, collect_flushed, messages_for
from framewatch.models import (
    WebhookDelivery,
    WebhookSubscription,
)
from framewatch.models.webhook import DELIVERY_PENDING
from framewatch.webhooks.filters import Filters, about_itself, envelope

log = logging.getLogger(__name__)

_KEY = "framewatch_integrations"


@dataclass
class _Collected(Collected):
    messages: list[Outgoing] | None = None


@dataclass
class CaptureOptions:
    max_attempts: Callable[[], int]
    person_names: Callable[[], Mapping[int, str]] = dict
    after_commit: Callable[[list[Outgoing]], None] | None = None


def install(session_class: type[Session], options: CaptureOptions) -> None:
    def collect(session: Session, _: UOWTransaction) -> None:
        collect_flushed(session, session.info.setdefault(_KEY, _Collected()))

    def prepare(session: Session) -> None:
        session.flush()  # what is still pending is collected now
        collected: _Collected | None = session.info.get(_KEY)
        if collected is None or collected.messages is not None:
            return
        collected.messages = messages_for(collected, options.person_names())
        if collected.messages:
            add_deliveries(session, collected.messages, options.max_attempts())

    def sent(session: Session) -> None:
        collected: _Collected | None = session.info.pop(_KEY, None)
        if collected is not None and collected.messages and options.after_commit is not None:
            try:
                options.after_commit(collected.messages)
            except Exception:  # never fail the caller after its commit
                log.exception("handing %d committed messages on failed", len(collected.messages))

    def forget(session: Session) -> None:
        session.info.pop(_KEY, None)

    event.listen(session_class, "after_flush", collect)
    event.listen(session_class, "before_commit", prepare)
    event.listen(session_class, "after_commit", sent)
    event.listen(session_class, "after_rollback", forget)


def add_deliveries(session: Session, messages: list[Outgoing], max_attempts: int) -> int:
    """One pending delivery per (message, enabled subscription that wants it)."""
    subscriptions = session.scalars(
        select(WebhookSubscription).where(WebhookSubscription.enabled.is_(True))
        .order_by(WebhookSubscription.id)
    ).all()
    if not subscriptions:
        return 0
    now = utcnow()
    added = 0
    for subscription in subscriptions:
        filters = Filters.of(subscription)
        for message in messages:
            selected = filters.select(message)
            if selected is None or about_itself(subscription.id, *selected):
                continue
            session.add(WebhookDelivery(
                subscription_id=subscription.id, event_type=selected[0],
                body=envelope(subscription.id, *selected), status=DELIVERY_PENDING,
                attempts=0, max_attempts=max_attempts, next_attempt_at=now, attempt_log=[],
                created_at=now, updated_at=now,
            ))
            added += 1
    return added
