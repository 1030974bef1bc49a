from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from framewatch.core.database import Base, BigIntId, UTCDateTime, utcnow

DELIVERY_PENDING = "pending"
DELIVERY_PROCESSING = "processing"
DELIVERY_DELIVERED = "delivered"
DELIVERY_DEAD = "dead"


class WebhookSubscription(Base):
    """An outbound webhook: where matching live messages are POSTed, and which ones."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    url: Mapped[str] = mapped_column(String(2048))
    # Fernet token of the signing secret; never returned by the API nor logged.
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Filters, as on the WebSocket: null = every camera / type / person.
    camera_ids: Mapped[list[str] | None] = mapped_column(JSON)
    detection_types: Mapped[list[str] | None] = mapped_column(JSON)
    person_ids: Mapped[list[int] | None] = mapped_column(JSON)
    min_confidence: Mapped[float] = mapped_column(Float, default=0.0)
    # `detection`, `event` (every event type) or event types such as `person.identified`.
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WebhookDelivery(Base):
    """One message for one subscription: a durable queue item with a lease, like
    `detection_processing_queue` (framewatch/webhooks/deliveries.py)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_status_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_subscription", "subscription_id", "id"),
        Index("ix_webhook_deliveries_finished", "finished_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    subscription_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("webhook_subscriptions.id", ondelete="CASCADE")
    )
    # `detection`, an event type, or `ping`: the X-Framewatch-Event header.
    event_type: Mapped[str] = mapped_column(String(64))
    # The exact JSON text POSTed (and signed) at every attempt.
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=DELIVERY_PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=8)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_response_ms: Mapped[float | None] = mapped_column(Float)
    # The last attempts: [{"at", "status_code", "error", "response_ms"}], newest last.
    attempt_log: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When it ended delivered or dead (retention counts from here).
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
