from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class TypeTotal(BaseModel):
    type: str
    detections: int
    avg_confidence: float | None


class LabelTotal(BaseModel):
    label: str
    detections: int


class CameraTotal(BaseModel):
    camera_id: str
    detections: int
    frames: int


class SeriesPoint(BaseModel):
    bucket_start: datetime
    detections: int
    by_type: dict[str, int]


class ProviderFigures(BaseModel):
    provider: str
    frames: int = Field(description="Frames the provider processed.")
    errors: int = Field(description="Failed calls (sync errors, queue retries, dead letters).")
    error_rate: float | None = Field(description="errors / (frames + errors).")
    dead_letters: int
    latency_ms_avg: float | None
    latency_ms_p50: float | None = Field(description="Interpolated from a histogram.")
    latency_ms_p95: float | None


class QueueFigures(BaseModel):
    frames_processed: int
    dead_letters: int
    frames_per_hour: float


class CacheFigures(BaseModel):
    hits: int = Field(description="Answered without a rebuild (coalesced ones included).")
    misses: int = Field(description="Rebuilt from the database.")
    coalesced: int = Field(default=0, description="Hits that waited for a rebuild another "
                           "request of this process had started.")
    errors: int
    hit_rate: float | None


class Statistics(BaseModel):
    since: datetime
    until: datetime
    camera_id: str | None
    bucket: str
    detections: int
    avg_confidence: float | None
    by_type: list[TypeTotal]
    by_label: list[LabelTotal] = Field(description="The 50 most frequent labels.")
    by_camera: list[CameraTotal]
    series: list[SeriesPoint]
    providers: list[ProviderFigures]
    queue: QueueFigures
    cache: dict[str, CacheFigures] = Field(description="This API process's cache, by kind.")
    rolled_up_to: datetime | None = Field(
        description="Roll-ups include what was stored up to about this time."
    )
