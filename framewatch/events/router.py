from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from framewatch.auth.dependencies import EventsReader
from framewatch.core.dependencies import Session
from framewatch.core.openapi import AUTH_ERRORS, error_responses
from framewatch.events import queries
from framewatch.events.schemas import EventPage
from framewatch.events.service import EventType

router = APIRouter(prefix="/api/v1/detections", tags=["events"])

SeverityName = Literal["debug", "info", "warning", "error", "critical"]


@router.get("/events", response_model=EventPage,
            responses={**AUTH_ERRORS, **error_responses(400)})
async def list_events(
    session: Session,
    principal: EventsReader,
    camera_id: Annotated[str | None, Query(max_length=64)] = None,
    event_type: Annotated[list[EventType] | None, Query(max_length=50)] = None,
    severity: Annotated[SeverityName | None, Query(description="This severity or worse.")] = None,
    provider: Annotated[str | None, Query(max_length=100)] = None,
    detection_type: Annotated[str | None, Query(max_length=64)] = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    q: Annotated[str | None, Query(max_length=200, description="Text in the message.")] = None,
    person_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> EventPage:
    """The audit trail, newest first; follow `next_cursor` for older pages.

    `event_type` may be repeated; event types are listed in docs/events.md.
    """
    if camera_id is not None:
        principal.check_camera(camera_id)
    where = queries.EventFilter(
        camera_id=camera_id, event_types=[e.value for e in event_type] if event_type else None,
        min_severity=severity, provider=provider, detection_type=detection_type,
        since=since, until=until, text=q, person_id=person_id,
        camera_scope=principal.camera_scope,
    )
    return await queries.list_events(session, where, limit=limit, cursor=cursor)
