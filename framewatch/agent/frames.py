"""Frames as the agent handles them, and the cheap test of whether one is worth sending."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]

# The change test runs on a greyscale thumbnail this wide, blurred, so that it stays cheap at any
# resolution (measured: 0.1 ms a frame at 320×240, 6 ms at 1920×1080, most of it the resize, on
# 2 cores under a load of 8) and sensor noise and JPEG artefacts average out.
THUMBNAIL_WIDTH = 160
# A thumbnail pixel counts as changed when its grey level moves by more than this (of 255).
# Measured on the demo frames: sensor noise (σ 10) and JPEG re-encoding move none of them past
# it, nor does a +15 brightness drift; people walking change 2-6 % of the picture in half a second.
PIXEL_DELTA = 25


@dataclass(frozen=True, slots=True)
class GrabbedFrame:
    """A picture from a source, decoded (BGR), with the bytes the source gave when it gave an
    image the API accepts (a JPEG, PNG or WebP snapshot or file): those are sent as they are."""

    image: Image
    captured_at: datetime
    encoded: bytes | None = None
    content_type: str = "image/jpeg"


@dataclass(frozen=True, slots=True)
class OutgoingFrame:
    """A frame waiting to be sent: its bytes and when it was grabbed."""

    data: bytes
    content_type: str
    captured_at: datetime


def decode_image(data: bytes) -> Image | None:
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    return None if image is None else np.asarray(image, dtype=np.uint8)


def to_outgoing(frame: GrabbedFrame, jpeg_quality: int) -> OutgoingFrame:
    """The frame as bytes to send: the source's own when it gave some, else a new JPEG."""
    if frame.encoded is not None:
        return OutgoingFrame(frame.encoded, frame.content_type, frame.captured_at)
    ok, data = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise ValueError("OpenCV could not encode the frame as JPEG")
    return OutgoingFrame(data.tobytes(), "image/jpeg", frame.captured_at)


def thumbnail(image: Image) -> Image:
    height, width = image.shape[:2]
    size = (THUMBNAIL_WIDTH, max(1, round(height * THUMBNAIL_WIDTH / width)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
    return np.asarray(cv2.GaussianBlur(grey, (5, 5), 0), dtype=np.uint8)


class ChangeDetector:
    """Whether a frame differs from the last frame let through by more than `threshold` percent
    of its pixels. Comparing with the last frame let through (not the last one seen) means a slow
    change still gets through once it adds up; 0 lets every frame through."""

    def __init__(self, threshold_percent: float) -> None:
        self.threshold = threshold_percent
        self._reference: Image | None = None

    def changed_percent(self, image: Image) -> float:
        """Percent of the thumbnail that differs from the reference (100 without one)."""
        current = thumbnail(image)
        reference = self._reference
        if reference is None or reference.shape != current.shape:
            return 100.0
        moved = cv2.absdiff(current, reference) > PIXEL_DELTA
        return 100.0 * float(np.count_nonzero(moved)) / moved.size

    def admit(self, image: Image) -> bool:
        """True when the frame should be sent; it then becomes the new reference."""
        if self.threshold > 0 and self.changed_percent(image) < self.threshold:
            return False
        self._reference = thumbnail(image)
        return True
