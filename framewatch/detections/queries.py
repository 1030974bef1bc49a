"""Reading detections back: filtered keyset pages, one by id, and the live view."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.core.database import utcnow
from framewatch.core.errors import NotFound
from framewatch.core.pagination import (
    decode_cursor,
    encode_cursor,
    in_utc,
    is_row_id,
    refuse_nul,
)
from framewatch.detections.schemas import (
    DetectionOut,
    DetectionPage,
    LiveCamera,
    LiveView,
)
from framewatch.detections.service import brief, person_names
from framewatch.models import Detection, Frame
from framewatch.models.frame import FRAME_PROCESSED


@dataclass(frozen=True, slots=True)
class DetectionFilter:
    camera_id: str | None = None
    types: list[str] | None = None
    label: str | None = None
    min_confidence: float | None = None
    since: datetime | None = None
    until: datetime | None = None
    person_id: int | None = None
    # The cameras the caller's key may see; None: all.
    camera_scope: frozenset[str] | None = None


async def list_detections(
    session: AsyncSession, where: DetectionFilter, *, limit: int, cursor: str | None
) -> DetectionPage:
    """Newest first, ordered by (detected_at, id), so pages are stable under inserts."""
    refuse_nul("camera_id", where.camera_id)
    refuse_nul("label", where.label)
    since, until = in_utc("since", where.since), in_utc("until", where.until)
    query = select(Detection)
    if where.camera_id:
        query = query.where(Detection.camera_id == where.camera_id)
    if where.camera_scope is not None:
        query = query.where(Detection.camera_id.in_(sorted(where.camera_scope)))
    if where.person_id is not None:
        query = query.where(Detection.person_id == where.person_id)
    if where.types:
        query = query.where(Detection.type.in_(where.types))
    if where.label:
        query = query.where(Detection.label == where.label)
    if where.min_confidence is not None:
        query = query.where(Detection.confidence >= where.min_confidence)
    if since:
        query = query.where(Detection.detected_at >= since)
    if until:
        query = query.where(Detection.detected_at < until)
    if cursor:
        moment, last_id = decode_cursor(cursor)
        query = query.where(tuple_(Detection.detected_at, Detection.id) < tuple_(moment, last_id))
    query = query.order_by(Detection.detected_at.desc(), Detection.id.desc()).limit(limit + 1)
    rows = list(await session.scalars(query))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].detected_at, rows[-1].id)
    names = await person_names(session, rows)
    return DetectionPage(items=[detection_out(row, names) for row in rows],
                         next_cursor=next_cursor)


async def get_detection(
    session: AsyncSession, detection_id: int, camera_scope: frozenset[str] | None = None
) -> DetectionOut:
    row = await session.get(Detection, detection_id) if is_row_id(detection_id) else None
    # Out of the key's scope looks exactly like absent: existence is not leaked.
    if row is None or (camera_scope is not None and row.camera_id not in camera_scope):
        raise NotFound(f"no detection with id {detection_id}")
    return detection_out(row, await person_names(session, [row]))


async def live_view(
    session: AsyncSession, *, window_seconds: float, camera_id: str | None,
    types: list[str] | None, camera_scope: frozenset[str] | None = None,
) -> LiveView:
    """Per camera, the detections of its latest processed frame within the live window."""
    refuse_nul("camera_id", camera_id)
    cutoff = utcnow() - timedelta(seconds=window_seconds)
    latest = (
        select(func.max(Frame.id).label("frame_id"))
        .where(Frame.received_at >= cutoff, Frame.status == FRAME_PROCESSED)
        .group_by(Frame.camera_id)
    )
    if camera_id:
        latest = latest.where(Frame.camera_id == camera_id)
    if camera_scope is not None:
        latest = latest.where(Frame.camera_id.in_(sorted(camera_scope)))
    frames = list(
        await session.scalars(
            select(Frame).where(Frame.id.in_(latest.scalar_subquery())).order_by(Frame.camera_id)
        )
    )
    by_frame: dict[int, list[Detection]] = {frame.id: [] for frame in frames}
    if frames:
        query = select(Detection).where(Detection.frame_id.in_(list(by_frame)))
        if types:
            query = query.where(Detection.type.in_(types))
        for detection in await session.scalars(query.order_by(Detection.id)):
            by_frame[detection.frame_id].append(detection)
    names = await person_names(session, [d for ds in by_frame.values() for d in ds])
    return LiveView(
        window_seconds=window_seconds,
        cameras=[
            LiveCamera(
                camera_id=frame.camera_id, frame_id=frame.id, received_at=frame.received_at,
                processed_at=frame.processed_at, provider=frame.provider_name,
                detections=[brief(d, names) for d in by_frame[frame.id]],
            )
            for frame in frames
        ],
    )


def detection_out(row: Detection, names: Mapping[int, str] | None = None) -> DetectionOut:
    summary = brief(row, names)
    return DetectionOut(
        **summary.model_dump(), frame_id=row.frame_id, camera_id=row.camera_id,
        provider=row.provider_name, provider_id=row.provider_id, model=row.model,
        latency_ms=row.latency_ms, has_encoding=row.face_encoding is not None,
        encoding_model=row.encoding_model, attributes=row.attributes or {},
        detected_at=row.detected_at, created_at=row.created_at,
    )
