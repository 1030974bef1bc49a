from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

CAMERA_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"

CameraId = Annotated[
    str,
    Field(
        pattern=CAMERA_ID_PATTERN,
        description="A short slug: lower-case letters, digits, `-` and `_`, at most 64.",
        examples=["front-door"],
    ),
]

# Provider ids are 32-bit integers in the database; a larger number cannot name one.
ProviderRef = Annotated[int, Field(ge=1, le=2**31 - 1)]

# Free text without NUL characters, which PostgreSQL cannot store in a text column.
_NO_NUL = r"^[^\x00]*$"


RetentionDays = Annotated[
    int | None,
    Field(ge=0, le=36_500, description="Days; 0 keeps forever; null: the global setting."),
]


class CameraRetention(BaseModel):
    """Retention overrides of one camera (see docs/security.md, "What is kept")."""

    retention_detections_days: RetentionDays = None
    retention_frames_days: RetentionDays = None
    retention_face_encodings_days: RetentionDays = None
    retention_events_days: RetentionDays = None


class CameraCreate(CameraRetention):
    model_config = ConfigDict(extra="forbid")

    id: CameraId
    name: str = Field(min_length=1, max_length=200, pattern=_NO_NUL)
    location: str | None = Field(default=None, max_length=200, pattern=_NO_NUL)
    enabled: bool = True
    provider_id: ProviderRef | None = Field(
        default=None, description="The camera's own provider; null uses the default provider."
    )


class CameraPatch(CameraRetention):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=_NO_NUL)
    location: str | None = Field(default=None, max_length=200, pattern=_NO_NUL)
    enabled: bool | None = None
    provider_id: ProviderRef | None = None


class CameraOut(CameraRetention):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    location: str | None
    enabled: bool
    provider_id: int | None
    created_at: datetime
    updated_at: datetime
