from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from framewatch.cameras.schemas import CameraId

DetectionTypeList = Annotated[
    str,
    Field(
        max_length=1000,
        pattern=r"^\s*[a-z][a-z0-9 _-]{0,63}(\s*,\s*[a-z][a-z0-9 _-]{0,63})*\s*$",
        description="Comma-separated detection types, e.g. `person,face`.",
        examples=["person,face"],
    ),
]


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is outside the years 1 to 9999 once converted to UTC") from None


CaptureTime = Annotated[
    AwareDatetime,
    AfterValidator(_in_utc),
    Field(description="When the camera took the frame (with a time zone); default: arrival."),
]

SendMode = Annotated[
    Literal["sync", "async"],
    Field(description="`sync` (default): answer with the detections. `async`: store and queue "
          "the frame, answer 202 at once."),
]


class SendFrameJson(BaseModel):
    """The JSON form of send-frame (the multipart form has the same fields, `image` a file)."""

    model_config = ConfigDict(extra="forbid")

    camera_id: CameraId
    image_base64: str = Field(min_length=1, description="The JPEG, PNG or WebP bytes, base64.")
    detection_types: DetectionTypeList | list[Annotated[str, Field(max_length=64)]] | None = None
    captured_at: CaptureTime | None = None
    mode: SendMode = "sync"


class BBox(BaseModel):
    x_min: float
    y_min: float
    x_max: float
    y_max: float


class PersonRef(BaseModel):
    id: int
    name: str | None = Field(description="Null when the person was deleted since.")
    similarity: float | None = Field(description="1 − encoding distance (or the provider's "
                                     "similarity when identified through a linked subject).")


class DetectionBrief(BaseModel):
    id: int
    type: str
    label: str
    confidence: float
    bbox: BBox = Field(description="In pixels of the frame.")
    bbox_norm: BBox = Field(description="As fractions 0..1 of the frame's width and height.")
    subject: str | None = None
    person_id: int | None = None
    person: PersonRef | None = Field(default=None, description="Who the face is, if known.")


class SendFrameResult(BaseModel):
    frame_id: int
    camera_id: str
    provider: str
    processed_at: datetime
    latency_ms: float
    cached: bool
    detections: list[DetectionBrief]


class FrameQueued(BaseModel):
    """The answer to an async send-frame: the frame is stored and a worker will run it."""

    queue_item_id: int
    frame_id: int
    camera_id: str
    status: str = Field(description="`pending`; follow `GET /api/v1/detections/queue/{id}`.")


class DetectionOut(DetectionBrief):
    model_config = ConfigDict(from_attributes=True)

    frame_id: int
    camera_id: str
    provider: str
    provider_id: int | None
    model: str
    latency_ms: float
    has_encoding: bool
    encoding_model: str | None
    attributes: dict[str, object]
    detected_at: datetime
    created_at: datetime


class DetectionPage(BaseModel):
    items: list[DetectionOut]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page.")


class LiveCamera(BaseModel):
    camera_id: str
    frame_id: int
    received_at: datetime
    processed_at: datetime | None
    provider: str | None
    detections: list[DetectionBrief]


class LiveFilters(BaseModel):
    """The query of `GET /api/v1/detections/live`, validated by the endpoint itself (see
    there); other query parameters are ignored, as FastAPI ignores them."""

    camera_id: str | None = Field(default=None, max_length=64)
    types: DetectionTypeList | None = None


class LiveView(BaseModel):
    window_seconds: float
    cameras: list[LiveCamera]
