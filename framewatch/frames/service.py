"""Frames as records: reading one back, and removing image files nothing refers to."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.core.errors import NotFound
from framewatch.frames.images import DrawnBox, annotate
from framewatch.frames.storage import FrameStore
from framewatch.models import Detection, Frame

# Frame ids are 64-bit; a larger number cannot be bound as a parameter on either database.
MAX_FRAME_ID = 2**63 - 1
_PATHS_PER_QUERY = 1000


async def get_frame(
    session: AsyncSession, frame_id: int, camera_scope: frozenset[str] | None = None
) -> Frame:
    """The frame, or 404 — also when its camera is outside `camera_scope`."""
    frame = await session.get(Frame, frame_id) if 1 <= frame_id <= MAX_FRAME_ID else None
    if frame is None or (camera_scope is not None and frame.camera_id not in camera_scope):
        raise NotFound(f"no frame with id {frame_id}")
    return frame


async def frame_image(
    session: AsyncSession, store: FrameStore, frame_id: int, *, annotated: bool,
    camera_scope: frozenset[str] | None = None,
) -> tuple[bytes, str]:
    """The frame's bytes and content type; with `annotated`, a JPEG with its boxes drawn."""
    frame = await get_frame(session, frame_id, camera_scope)
    if frame.image_purged_at is not None:  # the file may live on for a newer frame's sake
        raise NotFound(f"frame {frame_id}'s image was deleted by retention")
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
    candidates = sorted(set(paths))
    still_used: set[str] = set()
    # In chunks: one parameter per path, and PostgreSQL takes at most 32767 in a query.
    for start in range(0, len(candidates), _PATHS_PER_QUERY):
        chunk = candidates[start:start + _PATHS_PER_QUERY]
        still_used.update(
            await session.scalars(select(Frame.storage_path).where(Frame.storage_path.in_(chunk)))
        )
    unused = [path for path in candidates if path not in still_used]
    await store.delete_many(unused)
    return len(unused)
