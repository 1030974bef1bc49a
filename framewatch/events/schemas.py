from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    event_type: str = Field(description="See docs/events.md for the list.")
    severity: str
    camera_id: str | None
    frame_id: int | None
    detection_id: int | None
    person_id: int | None
    provider: str | None
    detection_types: list[str]
    message: str
    payload: dict[str, Any]
    actor: str | None
    created_at: datetime


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page.")
