"""The provider contract: what a provider is given, what it answers, how it fails.

A provider is a small class with `capabilities()`, `detect()`, `test_connection()` and
`aclose()`. Adapters turn each service's wire format into `FoundObject`s with boxes in pixels of
the frame they were given; the detection pipeline clamps, normalises and stores them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import httpx

if TYPE_CHECKING:
    from framewatch.detector.detector import BuiltinDetector

PERSON = "person"
FACE = "face"
VEHICLE = "vehicle"
STANDARD_TYPES: frozenset[str] = frozenset({PERSON, FACE, VEHICLE})

# Object labels (COCO and Darknet spellings) that count as vehicles.
VEHICLE_LABELS = frozenset({"car", "truck", "bus", "motorbike", "motorcycle", "bicycle"})


def detection_type_for(label: str) -> str:
    """Map an object label to its detection type: person, vehicle, or the label itself."""
    label = label.strip().lower()
    if label == PERSON:
        return PERSON
    if label in VEHICLE_LABELS:
        return VEHICLE
    if label == FACE:
        return FACE
    return label


@dataclass(frozen=True, slots=True)
class BoundingBox:
    """A box in pixels of the frame: (x_min, y_min) top-left, (x_max, y_max) bottom-right."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float

    @property
    def width(self) -> float:
        return self.x_max - self.x_min

    @property
    def height(self) -> float:
        return self.y_max - self.y_min


@dataclass(frozen=True, slots=True)
class FoundObject:
    """One thing a provider found in a frame."""

    type: str
    label: str
    confidence: float
    box: BoundingBox
    encoding: tuple[float, ...] | None = None
    encoding_model: str | None = None
    # Identity as the provider knows it (DeepStack `userid`, CompreFace `subject`).
    subject: str | None = None
    subject_similarity: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    # The gallery's person this face was identified as (framewatch.persons.identify).
    person_id: int | None = None
    person_similarity: float | None = None


@dataclass(frozen=True, slots=True)
class FrameImage:
    """An accepted frame: its bytes (JPEG, PNG or WebP) and its size."""

    data: bytes
    content_type: str
    width: int
    height: int

    @property
    def filename(self) -> str:
        extension = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}
        return f"frame.{extension.get(self.content_type, 'bin')}"


@dataclass(frozen=True, slots=True)
class ProviderResult:
    """A provider's answer for one frame."""

    objects: list[FoundObject]
    model: str
    # The provider's answer as received (JSON-compatible), kept with the frame for provenance.
    raw: Any
    latency_ms: float
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class Capabilities:
    detection_types: frozenset[str]
    face_encodings: bool
    identification: bool
    remote: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "detection_types": sorted(self.detection_types),
            "face_encodings": self.face_encodings,
            "identification": self.identification,
            "remote": self.remote,
        }


@dataclass(frozen=True, slots=True)
class ConnectionReport:
    ok: bool
    latency_ms: float
    detail: str


class ProviderError(Exception):
    """A provider call failed. `retryable` says whether trying again later may help."""

    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, status_code: int | None = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.attempts = attempts


class ProviderUnreachable(ProviderError):
    """Timeouts, refused connections and 5xx answers, after the provider's retries."""

    retryable = True


class ProviderResponseError(ProviderError):
    """The provider refused the request (4xx, bad key) or answered something unusable."""

    retryable = False


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """Everything needed to build a provider: a stored configuration or an inline one."""

    name: str
    kind: str
    base_url: str | None = None
    api_key: str | None = None
    timeout_seconds: float = 10.0
    connect_timeout_seconds: float = 5.0
    max_retries: int = 2
    retry_backoff_seconds: float = 0.5
    detection_types: frozenset[str] = STANDARD_TYPES
    min_confidence: float = 0.4
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ProviderDeps:
    """Shared, process-wide resources handed to every provider (created in the app lifespan)."""

    http_client: httpx.AsyncClient
    builtin_detector: Callable[[], BuiltinDetector]


class Provider(Protocol):
    kind: ClassVar[str]
    spec: ProviderSpec

    def capabilities(self) -> Capabilities:
        """What this provider can find."""
        ...

    async def detect(self, frame: FrameImage, types: frozenset[str]) -> ProviderResult:
        """Find `types` in `frame`; raise `ProviderError` on failure."""
        ...

    async def test_connection(self) -> ConnectionReport:
        """Check the provider answers, without raising."""
        ...
