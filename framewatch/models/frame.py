from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from framewatch.core.database import Base, BigIntId, UTCDateTime, utcnow

FRAME_RECEIVED = "received"
FRAME_PROCESSED = "processed"
FRAME_QUEUED = "queued"
FRAME_FAILED = "failed"


class Frame(Base):
    """One received image. The bytes live on disk, content-addressed by their sha256."""

    __tablename__ = "frames"
    __table_args__ = (
        # "A camera's latest frame" (with the id as tie-breaker) and "frames by camera and time".
        Index("ix_frames_camera_received", "camera_id", "received_at", "id"),
        # "The latest frames of every camera": the all-cameras live view.
        Index("ix_frames_received", "received_at"),
        Index("ix_frames_sha256", "sha256"),
        # Roll-ups and retention walk frames by when they were processed.
        Index("ix_frames_processed", "processed_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    camera_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("cameras.id", ondelete="CASCADE")
    )
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(32))
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    # Path relative to the data dir's frames folder.
    storage_path: Mapped[str] = mapped_column(String(256))
    captured_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default=FRAME_RECEIVED)
    requested_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Provenance of the processing: who looked at it, with what model, how long it took,
    # and the provider's raw answer.
    provider_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("detection_provider_configs.id", ondelete="SET NULL")
    )
    provider_name: Mapped[str | None] = mapped_column(String(100))
    model: Mapped[str | None] = mapped_column(String(200))
    latency_ms: Mapped[float | None] = mapped_column(Float)
    provider_response: Mapped[Any | None] = mapped_column(JSON)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when retention deleted the image from disk; the row and its detections may remain.
    image_purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def seen_at(self) -> datetime:
        """When the camera saw it: the capture time if given, else when it arrived."""
        return self.captured_at or self.received_at
