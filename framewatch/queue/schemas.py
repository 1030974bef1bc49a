from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from framewatch.detections.schemas import DetectionBrief


class QueueItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    frame_id: int
    camera_id: str
    provider_id: int | None
    detection_types: list[str]
    status: str = Field(description="`pending`, `processing`, `done` or `dead`.")
    attempts: int
    max_attempts: int
    next_attempt_at: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    detections: list[DetectionBrief] | None = Field(
        default=None, description="Once `done`: what was found in the frame."
    )


class QueuePage(BaseModel):
    items: list[QueueItemOut]
    next_cursor: int | None = Field(description="Pass as `before_id` for the next page.")


class Requeued(BaseModel):
    requeued: list[int]


class WindowCounts(BaseModel):
    done: int
    dead: int
    retries: int


class WorkerSeen(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    worker_id: str
    kind: str
    hostname: str
    pid: int
    started_at: datetime
    last_seen_at: datetime


class BreakerState(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    provider: str
    state: str = Field(description="`closed` (calls go ahead) or `open` (calls paused).")
    consecutive_failures: int
    opened_at: datetime | None
    open_until: datetime | None
    last_error: str | None
    last_failure_at: datetime | None
    last_success_at: datetime | None
    last_checked_at: datetime | None


class QueueStats(BaseModel):
    mode: str = Field(description="`inprocess` (no broker) or `celery`.")
    counts: dict[str, int] = Field(description="Items by status.")
    oldest_pending_age_seconds: float | None
    windows: dict[str, WindowCounts] = Field(
        description="Items finished and retries scheduled in the last 1, 5 and 15 minutes."
    )
    dead_letters: int
    workers: list[WorkerSeen] = Field(description="Workers with a heartbeat in the last minute.")
    breakers: list[BreakerState]
