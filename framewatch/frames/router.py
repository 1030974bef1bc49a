from __future__ import annotations

from fastapi import APIRouter, Response

from framewatch.auth.dependencies import Viewer
from framewatch.core.dependencies import RuntimeDep, Session
from framewatch.core.openapi import AUTH_ERRORS, error_responses
from framewatch.frames.service import frame_image

router = APIRouter(prefix="/api/v1/frames", tags=["frames"])


@router.get(
    "/{frame_id}/image",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}},
        **AUTH_ERRORS,
        **error_responses(404),
    },
)
async def get_frame_image(
    session: Session, runtime: RuntimeDep, _: Viewer, frame_id: int, annotate: bool = False
) -> Response:
    """The frame as stored, or with `annotate=true` a JPEG with its detections drawn."""
    data, content_type = await frame_image(
        session, runtime.frame_store, frame_id, annotated=annotate
    )
    return Response(content=data, media_type=content_type,
                    headers={"Cache-Control": "private, max-age=3600"})
