from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from framewatch.core.database import Base, BigIntId, UTCDateTime, utcnow

QUEUE_PENDING = "pending"
QUEUE_PROCESSING = "processing"
QUEUE_DONE = "done"
QUEUE_DEAD = "dead"


class QueueItem(Base):
    """A frame waiting for (another) provider call. The database is the queue's source of truth."""

    __tablename__ = "detection_processing_queue"
    __table_args__ = (
        Index("ix_queue_status_due", "status", "next_attempt_at"),
        Index("ix_queue_finished", "finished_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    # One item per frame: however often it is processed, a frame's detections are stored once.
    frame_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("frames.id", ondelete="CASCADE"), unique=True
    )
    camera_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("cameras.id", ondelete="CASCADE")
    )
    provider_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("detection_provider_configs.id", ondelete="SET NULL")
    )
    detection_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default=QUEUE_PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    # When a worker was last asked to run it (a broker message or the in-process worker's
    # queue); the sweeper dispatches again items whose dispatch is older than a threshold.
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When it ended done or dead.
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The id of the request that queued it: on the worker's log lines and events too.
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
