"""Hourly roll-ups that statistics read instead of scanning `detections`, and job bookkeeping."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from framewatch.core.database import Base, UTCDateTime

# Upper bounds (ms) of the provider latency histogram's buckets; the last bucket is open-ended.
LATENCY_BUCKETS_MS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class DetectionStatsHourly(Base):
    """Detections per hour (by `detected_at`), camera, type and label."""

    __tablename__ = "detection_stats_hourly"
    __table_args__ = (Index("ix_detection_stats_camera_bucket", "camera_id", "bucket_start"),)

    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(100), primary_key=True)
    detections: Mapped[int] = mapped_column(Integer)
    confidence_sum: Mapped[float] = mapped_column(Float)


class ProviderStatsHourly(Base):
    """Provider calls per hour and camera: frames processed, errors, dead letters, latency."""

    __tablename__ = "provider_stats_hourly"
    __table_args__ = (Index("ix_provider_stats_camera_bucket", "camera_id", "bucket_start"),)

    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(100), primary_key=True)
    frames: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    dead_letters: Mapped[int] = mapped_column(Integer)
    latency_ms_sum: Mapped[float] = mapped_column(Float)
    # Counts per LATENCY_BUCKETS_MS bucket, plus one for slower calls.
    latency_histogram: Mapped[list[int]] = mapped_column(JSON)


class JobRun(Base):
    """When each periodic job last ran and what it did; the roll-up keeps its cursor here."""

    __tablename__ = "job_runs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cursor: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
