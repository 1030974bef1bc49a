"""Checking that bytes are a sane image before anything else touches them; drawing boxes."""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from framewatch.core.config import Settings
from framewatch.core.errors import FrameTooLarge, InvalidFrame
from framewatch.providers.base import FrameImage

SUPPORTED_TYPES = ("image/jpeg", "image/png", "image/webp")


def sniff_content_type(data: bytes) -> str | None:
    """The image type from the file's magic bytes (never trusting the declared type)."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def inspect_frame(data: bytes, settings: Settings) -> FrameImage:
    """Accept `data` as a frame or raise `InvalidFrame` / `FrameTooLarge` saying why.

    The dimensions are read from the header and checked before the pixels are decoded, so a
    small file that declares a huge image (a decompression bomb) is refused cheaply.
    """
    if not data:
        raise InvalidFrame("the image is empty")
    if len(data) > settings.max_frame_bytes:
        raise FrameTooLarge(
            f"the image is {len(data)} bytes; the limit is {settings.max_frame_bytes}",
            limit_bytes=settings.max_frame_bytes,
        )
    content_type = sniff_content_type(data)
    if content_type is None:
        raise InvalidFrame("the bytes are not a JPEG, PNG or WebP image")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            _check_dimensions(width, height, settings)
            image.load()  # decodes every pixel: truncated or corrupt data fails here
    except (FrameTooLarge, InvalidFrame):
        raise
    except Image.DecompressionBombError as exc:
        raise FrameTooLarge(f"the image declares too many pixels: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidFrame(f"the image cannot be decoded: {exc}") from exc
    return FrameImage(data=data, content_type=content_type, width=width, height=height)


def _check_dimensions(width: int, height: int, settings: Settings) -> None:
    if min(width, height) < settings.min_frame_side:
        raise InvalidFrame(
            f"the image is {width}×{height}; each side must be at least "
            f"{settings.min_frame_side} pixels"
        )
    if max(width, height) > settings.max_frame_side or width * height > settings.max_frame_pixels:
        raise FrameTooLarge(
            f"the image is {width}×{height}; the limits are {settings.max_frame_side} pixels a "
            f"side and {settings.max_frame_pixels} pixels in all"
        )


@dataclass(frozen=True, slots=True)
class DrawnBox:
    x_min: int
    y_min: int
    x_max: int
    y_max: int
    caption: str
    type: str


# BGR colours per detection type; other labels get the last one.
_COLOURS = {"person": (60, 200, 60), "face": (230, 160, 30), "vehicle": (40, 120, 240)}
_OTHER_COLOUR = (200, 60, 200)


def annotate(data: bytes, boxes: Iterable[DrawnBox]) -> bytes:
    """The image as a JPEG with each box and its caption drawn on it."""
    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if pixels is None:
        raise InvalidFrame("the stored image cannot be decoded")
    thickness = max(1, round(max(pixels.shape[:2]) / 400))
    for box in boxes:
        colour = _COLOURS.get(box.type, _OTHER_COLOUR)
        cv2.rectangle(pixels, (box.x_min, box.y_min), (box.x_max, box.y_max), colour, thickness)
        (text_w, text_h), baseline = cv2.getTextSize(
            box.caption, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1
        )
        top = max(box.y_min - text_h - baseline - 2, 0)
        cv2.rectangle(
            pixels, (box.x_min, top), (box.x_min + text_w + 4, top + text_h + baseline + 2),
            colour, -1,
        )
        cv2.putText(
            pixels, box.caption, (box.x_min + 2, top + text_h + 1), cv2.FONT_HERSHEY_SIMPLEX,
            0.5, (255, 255, 255), 1, cv2.LINE_AA,
        )
    ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise InvalidFrame("the annotated image cannot be encoded")
    return bytes(encoded)
