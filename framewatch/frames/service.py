"""Frames as records: reading one back, and removing image files nothing refers to."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.core.errors import NotFound
from framewatch.frames.images import DrawnBox, annotate
from framewatch.frames.storage import FrameStore
from framewatch.models import Detection, Frame


async def get_frame(session: AsyncSession, frame_id: int) -> Frame:
    frame = await session.get(Frame, frame_id)
    if frame is None:
        raise NotFound(f"no frame with id {frame_id}")
    return frame


async def frame_image(
    session: AsyncSession, store: FrameStore, frame_id: int, *, annotated: bool
) -> tuple[bytes, str]:
    """The frame's bytes and content type; with `annotated`, a JPEG with its boxes drawn."""
    frame = await get_frame(session, frame_id)
    data = await store.read(frame.storage_path)
    if not annotated:
        return data, frame.content_type
    detections = await session.scalars(
        select(Detection).where(Detection.frame_id == frame_id).order_by(Detection.id)
    )
    boxes = [
        DrawnBox(d.x_min, d.y_min, d.x_max, d.y_max, _caption(d), d.type) for d in detections
    ]
    return annotate(data, boxes), "image/jpeg"


def _caption(detection: Detection) -> str:
    who = f" {detection.subject}" if detection.subject else ""
    return f"{detection.label}{who} {detection.confidence:.0%}"


async def delete_unreferenced_files(
    session: AsyncSession, store: FrameStore, paths: Iterable[str]
) -> int:
    """Delete the image files among `paths` that no frame row refers to any more."""
    paths = set(paths)
    if not paths:
        return 0
    still_used = set(
        await session.scalars(select(Frame.storage_path).where(Frame.storage_path.in_(paths)))
    )
    removed = 0
    for path in paths - still_used:
        await store.delete(path)
        removed += 1
    return removed
