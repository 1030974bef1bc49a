"""Roll-ups that statistics read instead of scanning `detections`, and job bookkeeping.

Three grains, all maintained by `framewatch.stats.rollup` and read by `framewatch.stats.queries`:

- hourly, per camera (`detection_stats_hourly`, `provider_stats_hourly`): recomputed from the raw
  rows; the source of truth for the other two;
- daily, per camera (`detection_stats_daily`, `provider_stats_daily`): the hourly rows of a UTC
  day summed, so that a range of whole days reads 24 times fewer rows; statistics read only the
  partial first and last days of a range from the hourly rows;
- hourly, over every camera and label (`detection_series_hourly`): the detections per hour and
  type, for the hour-bucket series when no camera filter applies (a 30-day series is then ~700
  hours × types rows instead of every camera's and label's).

Every roll-up row is a sum of finer rows and is rewritten whole, never incremented.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from framewatch.core.database import Base, UTCDateTime

# Upper bounds (ms) of the provider latency histogram's buckets; the last bucket is open-ended.
LATENCY_BUCKETS_MS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
LATENCY_COLUMNS = tuple(f"latency_bucket_{i}" for i in range(len(LATENCY_BUCKETS_MS) + 1))
# What the provider roll-ups sum, at either grain (besides their key).
PROVIDER_FIGURES = ("frames", "errors", "dead_letters", "latency_ms_sum", *LATENCY_COLUMNS)


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


class DetectionStatsDaily(Base):
    """The hourly detection rows of a UTC day (`day` at 00:00 UTC), camera, type and label."""

    __tablename__ = "detection_stats_daily"
    __table_args__ = (Index("ix_detection_stats_daily_camera_day", "camera_id", "day"),)

    day: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(100), primary_key=True)
    detections: Mapped[int] = mapped_column(Integer)
    confidence_sum: Mapped[float] = mapped_column(Float)


class DetectionSeriesHourly(Base):
    """Detections per hour and type, every camera and label together."""

    __tablename__ = "detection_series_hourly"

    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    type: Mapped[str] = mapped_column(String(64), primary_key=True)
    detections: Mapped[int] = mapped_column(Integer)


class ProviderCallColumns:
    """Provider calls of a bucket: frames processed, errors, dead letters, latency."""

    frames: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    dead_letters: Mapped[int] = mapped_column(Integer)
    latency_ms_sum: Mapped[float] = mapped_column(Float)
    # Calls per LATENCY_BUCKETS_MS bucket (bucket i: up to LATENCY_BUCKETS_MS[i] ms), the last
    # one for slower calls. Columns, not a JSON list, so that statistics sum them in SQL.
    latency_bucket_0: Mapped[int] = mapped_column(Integer, default=0)
    latency_bucket_1: Mapped[int] = mapped_column(Integer, default=0)
    latency_bucket_2: Mapped[int] = mapped_column(Integer, default=0)
    latency_bucket_3: Mapped[int] = mapped_column(Integer, default=0)
    latency_bucket_4: Mapped[int] = mapped_column(Integer, default=0)
    latency_bucket_5: Mapped[int] = mapped_column(Integer, default=0)
    latency_bucket_6: Mapped[int] = mapped_column(Integer, default=0)
    latency_bucket_7: Mapped[int] = mapped_column(Integer, default=0)
    latency_bucket_8: Mapped[int] = mapped_column(Integer, default=0)
    latency_bucket_9: Mapped[int] = mapped_column(Integer, default=0)
    latency_bucket_10: Mapped[int] = mapped_column(Integer, default=0)

    @property
    def latency_histogram(self) -> list[int]:
        return [getattr(self, name) or 0 for name in LATENCY_COLUMNS]

    @latency_histogram.setter
    def latency_histogram(self, counts: list[int]) -> None:
        if len(counts) != len(LATENCY_COLUMNS):
            raise ValueError(f"a latency histogram has {len(LATENCY_COLUMNS)} buckets")
        for name, count in zip(LATENCY_COLUMNS, counts, strict=True):
            setattr(self, name, count)


class ProviderStatsHourly(ProviderCallColumns, Base):
    """Provider calls per hour, camera and provider."""

    __tablename__ = "provider_stats_hourly"
    __table_args__ = (Index("ix_provider_stats_camera_bucket", "camera_id", "bucket_start"),)

    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(100), primary_key=True)


class ProviderStatsDaily(ProviderCallColumns, Base):
    """The hourly provider rows of a UTC day (`day` at 00:00 UTC), camera and provider."""

    __tablename__ = "provider_stats_daily"
    __table_args__ = (Index("ix_provider_stats_daily_camera_day", "camera_id", "day"),)

    day: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(100), primary_key=True)


class JobRun(Base):
    """When each periodic job last ran and what it did; the roll-up keeps its cursor here."""

    __tablename__ = "job_runs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cursor: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
