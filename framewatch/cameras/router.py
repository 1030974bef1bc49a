from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from framewatch.auth.dependencies import CamerasAdmin, CamerasReader
from framewatch.cameras import service
from framewatch.cameras.schemas import CameraCreate, CameraOut, CameraPatch
from framewatch.cameras.state import CameraState, camera_state
from framewatch.core.dependencies import RuntimeDep, Session
from framewatch.core.openapi import AUTH_ERRORS, error_responses
from framewatch.frames.service import delete_unreferenced_files

router = APIRouter(prefix="/api/v1/cameras", tags=["cameras"])


@router.get("", response_model=list[CameraOut], responses=AUTH_ERRORS)
async def list_cameras(session: Session, principal: CamerasReader) -> list[CameraOut]:
    cameras = await service.list_cameras(session)
    return [CameraOut.model_validate(c) for c in cameras if principal.sees_camera(c.id)]


@router.post("", response_model=CameraOut, status_code=201,
             responses={**AUTH_ERRORS, **error_responses(409)})
async def create_camera(
    session: Session, principal: CamerasAdmin, body: CameraCreate
) -> CameraOut:
    principal.check_camera(body.id)
    camera = await service.create_camera(session, body, actor=principal.actor)
    await session.commit()
    return CameraOut.model_validate(camera)


@router.get("/{camera_id}", response_model=CameraOut,
            responses={**AUTH_ERRORS, **error_responses(404)})
async def get_camera(session: Session, principal: CamerasReader, camera_id: str) -> CameraOut:
    principal.check_visible(camera_id)
    return CameraOut.model_validate(await service.get_camera(session, camera_id))


@router.get("/{camera_id}/state", response_model=CameraState,
            responses={**AUTH_ERRORS, **error_responses(404)})
async def get_camera_state(
    session: Session, runtime: RuntimeDep, principal: CamerasReader, camera_id: str
) -> CameraState:
    """Last frame, last detection, provider and its circuit, online or offline."""
    principal.check_visible(camera_id)
    return await camera_state(session, runtime, camera_id)


@router.patch("/{camera_id}", response_model=CameraOut,
              responses={**AUTH_ERRORS, **error_responses(404)})
async def update_camera(
    session: Session, principal: CamerasAdmin, camera_id: str, body: CameraPatch
) -> CameraOut:
    principal.check_visible(camera_id)
    camera = await service.update_camera(session, camera_id, body, actor=principal.actor)
    await session.commit()
    return CameraOut.model_validate(camera)


@router.delete("/{camera_id}", status_code=204, response_class=Response,
               responses={**AUTH_ERRORS, **error_responses(404)})
async def delete_camera(
    session: Session, runtime: RuntimeDep, principal: CamerasAdmin, camera_id: str
) -> Response:
    """Delete the camera with its frames (and their images), detections — with their face
    encodings — and queue items."""
    principal.check_visible(camera_id)
    stored_paths = await service.delete_camera(session, camera_id, actor=principal.actor)
    await session.commit()
    await delete_unreferenced_files(session, runtime.frame_store, stored_paths)
    return Response(status_code=204)


class Purged(BaseModel):
    face_encodings: int = Field(description="Face encodings erased.")


@router.post("/{camera_id}/purge-biometrics", response_model=Purged,
             responses={**AUTH_ERRORS, **error_responses(404)})
async def purge_biometrics(session: Session, principal: CamerasAdmin, camera_id: str) -> Purged:
    """Erase every face encoding (biometric data) the camera's detections hold; the detections
    themselves stay."""
    principal.check_visible(camera_id)
    erased = await service.purge_biometrics(session, camera_id, actor=principal.actor)
    await session.commit()
    return Purged(face_encodings=erased)
