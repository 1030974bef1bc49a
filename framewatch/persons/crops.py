"""Face crops: a JPEG of each registered face (with a margin), under `<data_dir>/faces/`."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from framewatch.core.errors import NotFound
from framewatch.core.secrets import write_private_bytes
from framewatch.providers.base import BoundingBox

MARGIN = 0.25


def crop_face(image_bgr: npt.NDArray[np.uint8], box: BoundingBox) -> bytes:
    """The face with a margin of a quarter of its size each side, as JPEG bytes."""
    height, width = image_bgr.shape[:2]
    dx, dy = box.width * MARGIN, box.height * MARGIN
    x0, y0 = max(0, int(box.x_min - dx)), max(0, int(box.y_min - dy))
    x1, y1 = min(width, int(box.x_max + dx)), min(height, int(box.y_max + dy))
    ok, data = cv2.imencode(".jpg", image_bgr[y0:y1, x0:x1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise ValueError("the face crop could not be encoded")
    return bytes(data.tobytes())


class FaceStore:
    """Face crops on disk, readable by the owner only: they are biometric data."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def save(self, person_id: int, data: bytes) -> str:
        relative = f"{person_id}/{uuid.uuid4().hex}.jpg"
        await asyncio.to_thread(write_private_bytes, self.root / relative, data)
        return relative

    async def read(self, relative: str) -> bytes:
        path = self._resolve(relative)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise NotFound("the face crop is no longer stored") from None

    async def delete(self, relative: str) -> None:
        await asyncio.to_thread(self._resolve(relative).unlink, missing_ok=True)

    def _resolve(self, relative: str) -> Path:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise NotFound("no such face crop")
        return path
