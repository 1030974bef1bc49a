from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from framewatch.detections.schemas import BBox

_NO_NUL = r"^[^\x00]*$"


class PersonCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=_NO_NUL)
    notes: str | None = Field(default=None, max_length=2000, pattern=_NO_NUL)


class PersonPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=_NO_NUL)
    notes: str | None = Field(default=None, max_length=2000, pattern=_NO_NUL)


class PersonOut(BaseModel):
    id: int
    name: str
    notes: str | None
    faces: int = Field(description="Registered faces.")
    created_at: datetime
    updated_at: datetime


class FaceOut(BaseModel):
    id: int
    person_id: int
    encoding_model: str
    source_frame_id: int | None
    box: dict[str, Any] = Field(description="Where the face was in its photo or frame (pixels).")
    quality: float = Field(description="Detector confidence, lowered for faces under 80 px.")
    created_at: datetime
    encoding: list[float] | None = Field(
        default=None, description="Only with `?include=encoding`, for admins.")


class FaceFromDetection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    detection_id: int = Field(ge=1, le=2**63 - 1)


class SubjectLink(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str = Field(default="*", min_length=1, max_length=100, pattern=r"^[\w.@ *-]+$",
                          description="The provider's name; `*` for any provider.")
    subject: str = Field(min_length=1, max_length=200, pattern=_NO_NUL)


class SubjectOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    person_id: int
    provider: str
    subject: str


class Sighting(BaseModel):
    detection_id: int
    camera_id: str
    frame_id: int
    detected_at: datetime
    similarity: float | None
    bbox: BBox


class SightingPage(BaseModel):
    items: list[Sighting]
    next_cursor: str | None


class SimilarFace(BaseModel):
    detection_id: int
    camera_id: str
    frame_id: int
    detected_at: datetime
    distance: float
    similarity: float
    person_id: int | None
    bbox: BBox


class SimilarFaces(BaseModel):
    searched: int = Field(description="Face detections compared.")
    items: list[SimilarFace]
