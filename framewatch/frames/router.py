from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from framewatch.auth.dependencies import FrameSender, FramesReader
from framewatch.cameras.schemas import ProviderRef
from framewatch.core.dependencies import RuntimeDep, Session
from framewatch.core.openapi import AUTH_ERRORS, error_responses
from framewatch.frames.redetect import RedetectResult, redetect_frame
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
    session: Session, runtime: RuntimeDep, principal: FramesReader, frame_id: int,
    annotate: bool = False,
) -> Response:
    """The frame as stored, or with `annotate=true` a JPEG with its detections drawn."""
    data, content_type = await frame_image(
        session, runtime.frame_store, frame_id, annotated=annotate,
        camera_scope=principal.camera_scope,
    )
    return Response(content=data, media_type=content_type,
                    headers={"Cache-Control": "private, max-age=3600"})


class RedetectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider_id: ProviderRef | None = Field(
        default=None, description="Default: the camera's provider."
    )


@router.post(
    "/{frame_id}/redetect",
    response_model=RedetectResult,
    responses={**AUTH_ERRORS, **error_responses(404, 502, 503)},
)
async def redetect(
    session: Session, runtime: RuntimeDep, principal: FrameSender, frame_id: int,
    body: RedetectRequest | None = None,
) -> RedetectResult:
    """Send a stored frame to a provider now (to compare providers, or to check a frame with a
    better one). The answer is returned and kept as a `frame.redetected` event; the frame's own
    detections are not replaced. The Celery task `send_frame_to_provider` does the same."""
    provider_id = body.provider_id if body else None
    result = await redetect_frame(session, runtime, frame_id, provider_id, actor=principal.actor,
                                  camera_scope=principal.camera_scope)
    await session.commit()
    return result
