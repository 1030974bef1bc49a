from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from framewatch.core.database import Base, UTCDateTime, utcnow


class Camera(Base):
    __tablename__ = "cameras"

    # A short user-given slug such as "front-door"; it appears in URLs and in every record.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    location: Mapped[str | None] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # The camera's own provider; NULL means the default provider.
    provider_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("detection_provider_configs.id", ondelete="SET NULL"), index=True
    )
    # Retention overrides for this camera, in days (NULL: the global FRAMEWATCH_RETENTION_*).
    retention_detections_days: Mapped[int | None] = mapped_column(Integer)
    retention_frames_days: Mapped[int | None] = mapped_column(Integer)
    retention_face_encodings_days: Mapped[int | None] = mapped_column(Integer)
    retention_events_days: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
