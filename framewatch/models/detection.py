from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from framewatch.core.database import Base, BigIntId, UTCDateTime, utcnow


class Detection(Base):
    """One thing found in one frame by one provider."""

    __tablename__ = "detections"
    __table_args__ = (
        # "By camera and time" and "latest per camera", newest first, keyset on (time, id).
        Index("ix_detections_camera_time", "camera_id", "detected_at", "id"),
        Index("ix_detections_time", "detected_at", "id"),
        Index("ix_detections_type_time", "type", "detected_at", "id"),
        # The statistics roll-up finds the hours touched since its last run by insertion time.
        Index("ix_detections_created", "created_at"),
        # A person's sightings, newest first.
        Index("ix_detections_person_time", "person_id", "detected_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    frame_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("frames.id", ondelete="CASCADE"), index=True
    )
    camera_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("cameras.id", ondelete="CASCADE")
    )
    provider_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("detection_provider_configs.id", ondelete="SET NULL")
    )
    provider_name: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(200))
    latency_ms: Mapped[float] = mapped_column(Float)
    type: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(100))
    confidence: Mapped[float] = mapped_column(Float)
    x_min: Mapped[int] = mapped_column(Integer)
    y_min: Mapped[int] = mapped_column(Integer)
    x_max: Mapped[int] = mapped_column(Integer)
    y_max: Mapped[int] = mapped_column(Integer)
    x_min_norm: Mapped[float] = mapped_column(Float)
    y_min_norm: Mapped[float] = mapped_column(Float)
    x_max_norm: Mapped[float] = mapped_column(Float)
    y_max_norm: Mapped[float] = mapped_column(Float)
    # Little-endian float32 vector, and the model that produced it.
    face_encoding: Mapped[bytes | None] = mapped_column(LargeBinary)
    encoding_model: Mapped[str | None] = mapped_column(String(100))
    # Identity as the provider named it, and the matched person (the identification issue
    # links the gallery).
    subject: Mapped[str | None] = mapped_column(String(200))
    # No foreign key (a constraint on this table would cost a table rebuild on SQLite): deleting
    # a person clears it explicitly (framewatch.persons.service).
    person_id: Mapped[int | None] = mapped_column(Integer)
    # How close the face was to the person's registered faces (1 - distance), when matched.
    person_similarity: Mapped[float | None] = mapped_column(Float)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # When the camera saw it (the frame's capture time, else its arrival).
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
