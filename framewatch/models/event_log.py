from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from framewatch.core.database import Base, BigIntId, UTCDateTime, utcnow


class DetectionEventLog(Base):
    """The audit trail. Deliberately without foreign keys: events outlive what they describe."""

    __tablename__ = "detection_event_logs"
    __table_args__ = (
        Index("ix_events_time", "created_at", "id"),
        Index("ix_events_camera_time", "camera_id", "created_at", "id"),
        Index("ix_events_type_time", "event_type", "created_at", "id"),
        Index("ix_events_person_time", "person_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    event_type: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    camera_id: Mapped[str | None] = mapped_column(String(64))
    frame_id: Mapped[int | None] = mapped_column(BigInteger)
    detection_id: Mapped[int | None] = mapped_column(BigInteger)
    # The person the event is about (identification).
    person_id: Mapped[int | None] = mapped_column(Integer)
    provider: Mapped[str | None] = mapped_column(String(100))
    # The detection types the event concerns, as ",face,person," (searchable with LIKE).
    detection_types: Mapped[str | None] = mapped_column(String(300))
    message: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    actor: Mapped[str | None] = mapped_column(String(200))
    # Where the request that caused it came from, and its id (as in the logs).
    address: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
