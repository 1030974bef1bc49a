from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import AwareDatetime, ValidationError

from framewatch.auth.dependencies import DetectionsReader, FrameSender, authorize, authorizes
from framewatch.auth.permissions import Permission
from framewatch.core.dependencies import RuntimeDep, Session, get_runtime
from framewatch.core.openapi import AUTH_ERRORS, error_responses, query_parameters
from framewatch.detections import queries, service
from framewatch.detections.intake import read_submission
from framewatch.detections.live import cached_live_view
from framewatch.detections.schemas import (
    DetectionOut,
    DetectionPage,
    DetectionTypeList,
    FrameQueued,
    LiveFilters,
    LiveView,
    SendFrameJson,
    SendFrameResult,
)

router = APIRouter(prefix="/api/v1/detections", tags=["detections"])
# The two busiest endpoints (cameras sending frames, dashboards polling the live view), matched
# before every other route: FastAPI tries routes one by one, about 2 µs each.
hot_router = APIRouter(prefix="/api/v1/detections", tags=["detections"])

_SEND_FRAME_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image", "camera_id"],
                    "properties": {
                        "image": {"type": "string", "format": "binary"},
                        "camera_id": {"type": "string"},
                        "detection_types": {"type": "string", "example": "person,face"},
                        "captured_at": {"type": "string", "format": "date-time"},
                        "mode": {"type": "string", "enum": ["sync", "async"], "default": "sync"},
                    },
                }
            },
            "application/json": {"schema": SendFrameJson.model_json_schema()},
        },
    }
}


@hot_router.post(
    "/send-frame",
    response_model=SendFrameResult,
    openapi_extra=_SEND_FRAME_BODY,
    responses={
        202: {"model": FrameQueued, "description": "`mode=async`: stored and queued."},
        **AUTH_ERRORS,
        **error_responses(400, 404, 409, 413, 415, 502, 503),
    },
    summary="Detect in one frame",
)
async def send_frame(
    request: Request, session: Session, runtime: RuntimeDep, principal: FrameSender
) -> SendFrameResult | JSONResponse:
    """Store a frame, run its camera's provider on it and return what was found.

    With `mode=async` the frame is stored and queued; the answer is 202 with the queue item to
    follow (`GET /api/v1/detections/queue/{id}`).
    """
    submission = await read_submission(request, principal, runtime.settings.max_frame_bytes)
    principal.check_camera(submission.camera_id)
    answer = await service.send_frame(session, runtime, submission)
    if isinstance(answer, FrameQueued):
        return JSONResponse(answer.model_dump(mode="json"), status_code=202)
    return answer


@hot_router.get(
    "/live", response_model=LiveView, responses={**AUTH_ERRORS, **error_responses(400)},
    openapi_extra={"security": [{"HTTPBearer": []}],
                   "parameters": query_parameters(LiveFilters)},
)
@authorizes(Permission.DETECTIONS_READ)
async def live(request: Request) -> Response:
    """Per camera, the detections of its most recent frame within the live window (cached for
    `FRAMEWATCH_LIVE_TTL_SECONDS`; new detections invalidate it at once)."""
    # Dashboards poll this many times a second, and a cache hit costs far less than FastAPI's
    # dependency solving and parameter validation did (half of each request's CPU): so the key
    # check and the query are done here, by the same code the dependencies use. No `Session`
    # either: a hit needs no database, and a miss's rebuild opens its own.
    principal = await authorize(request, Permission.DETECTIONS_READ)
    try:
        filters = LiveFilters.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("query", *error["loc"])} for error in exc.errors()]) from None
    if filters.camera_id is not None:
        principal.check_camera(filters.camera_id)
    data = await cached_live_view(get_runtime(request), filters.camera_id,
                                  service.parse_types(filters.types), principal.camera_scope)
    return Response(data, media_type="application/json")


@router.get("", response_model=DetectionPage, responses={**AUTH_ERRORS, **error_responses(400)})
async def list_detections(
    session: Session,
    principal: DetectionsReader,
    camera_id: Annotated[str | None, Query(max_length=64)] = None,
    types: DetectionTypeList | None = None,
    label: Annotated[str | None, Query(max_length=100)] = None,
    min_confidence: Annotated[float | None, Query(ge=0, le=1)] = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    person_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> DetectionPage:
    """Detections, newest first, filtered; follow `next_cursor` for the next page."""
    if camera_id is not None:
        principal.check_camera(camera_id)
    where = queries.DetectionFilter(
        camera_id=camera_id, types=service.parse_types(types), label=label,
        min_confidence=min_confidence, since=since, until=until, person_id=person_id,
        camera_scope=principal.camera_scope,
    )
    return await queries.list_detections(session, where, limit=limit, cursor=cursor)


@router.get(
    "/{detection_id}",
    response_model=DetectionOut,
    responses={**AUTH_ERRORS, **error_responses(404)},
)
async def get_detection(
    session: Session, principal: DetectionsReader, detection_id: int
) -> DetectionOut:
    return await queries.get_detection(session, detection_id, principal.camera_scope)
