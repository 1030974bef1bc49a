"""The audit trail, filtered and paged newest first on (created_at, id).

Every filter narrows an index walk rather than a sort: the (camera, time), (type, time) and
(time) indexes serve the common cases; text and detection-type filters are applied while walking
newest first, so a first page stops as soon as it is full.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.core.pagination import decode_cursor, encode_cursor, in_utc, refuse_nul
from framewatch.events.schemas import EventOut, EventPage
from framewatch.events.service import Severity
from framewatch.models import DetectionEventLog

SEVERITY_ORDER = [s.value for s in Severity]


@dataclass(frozen=True, slots=True)
class EventFilter:
    camera_id: str | None = None
    event_types: list[str] | None = None
    min_severity: str | None = None
    provider: str | None = None
    detection_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None
    person_id: int | None = None
    # The cameras the caller's key may see (then events of no camera are hidden); None: all.
    camera_scope: frozenset[str] | None = None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_events(
    session: AsyncSession, where: EventFilter, *, limit: int, cursor: str | None
) -> EventPage:
    # Errors name the query parameter: the text filter is `q`.
    for field, parameter in (("camera_id", "camera_id"), ("provider", "provider"),
                             ("detection_type", "detection_type"), ("text", "q")):
        refuse_nul(parameter, getattr(where, field))
    since, until = in_utc("since", where.since), in_utc("until", where.until)
    row = DetectionEventLog
    query = select(row)
    if where.camera_id:
        query = query.where(row.camera_id == where.camera_id)
    if where.camera_scope is not None:
        query = query.where(row.camera_id.in_(sorted(where.camera_scope)))
    if where.event_types:
        query = query.where(row.event_type.in_(where.event_types))
    if where.min_severity:
        allowed = SEVERITY_ORDER[SEVERITY_ORDER.index(where.min_severity):]
        query = query.where(row.severity.in_(allowed))
    if where.provider:
        query = query.where(row.provider == where.provider)
    if where.person_id is not None:
        query = query.where(row.person_id == where.person_id)
    if where.detection_type:
        # Types are stored lower-case (as /detections?types= reads them); lower-casing here also
        # keeps SQLite, whose LIKE ignores ASCII case, and PostgreSQL in agreement.
        kind = where.detection_type.strip().lower()
        pattern = f"%,{_escape_like(kind)},%"
        query = query.where(row.detection_types.like(pattern, escape="\\"))
    if since:
        query = query.where(row.created_at >= since)
    if until:
        query = query.where(row.created_at < until)
    if where.text:
        query = query.where(row.message.ilike(f"%{_escape_like(where.text)}%", escape="\\"))
    if cursor:
        moment, last_id = decode_cursor(cursor)
        query = query.where(tuple_(row.created_at, row.id) < tuple_(moment, last_id))
    query = query.order_by(row.created_at.desc(), row.id.desc()).limit(limit + 1)
    rows = list(await session.scalars(query))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id)
    return EventPage(items=[event_out(r) for r in rows], next_cursor=next_cursor)


def event_out(row: DetectionEventLog) -> EventOut:
    return EventOut(
        id=row.id, event_type=row.event_type, severity=row.severity, camera_id=row.camera_id,
        frame_id=row.frame_id, detection_id=row.detection_id, person_id=row.person_id,
        provider=row.provider,
        detection_types=[t for t in (row.detection_types or "").split(",") if t],
        message=row.message, payload=row.payload or {}, actor=row.actor,
        created_at=row.created_at,
    )
