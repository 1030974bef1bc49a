"""Cameras: plain functions taking the caller's session."""

from __future__ import annotations

import re

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.cameras.schemas import CAMERA_ID_PATTERN, CameraCreate, CameraPatch
from framewatch.core.errors import Conflict, NotFound, ValidationFailed
from framewatch.events.service import EventType, Severity, record_event
from framewatch.models import Camera, Detection, DetectionProviderConfig, Frame


async def list_cameras(session: AsyncSession) -> list[Camera]:
    return list(await session.scalars(select(Camera).order_by(Camera.id)))


async def get_camera(session: AsyncSession, camera_id: str) -> Camera:
    # Only slugs are ever stored; anything else (a NUL byte breaks PostgreSQL) is not looked up.
    is_slug = re.fullmatch(CAMERA_ID_PATTERN, camera_id) is not None
    camera = await session.get(Camera, camera_id) if is_slug else None
    if camera is None:
        raise NotFound(f"no camera with id {camera_id!r}")
    return camera


async def create_camera(session: AsyncSession, data: CameraCreate, *, actor: str | None) -> Camera:
    if await session.get(Camera, data.id) is not None:
        raise Conflict(f"a camera with id {data.id!r} already exists")
    await _check_provider(session, data.provider_id)
    camera = Camera(**data.model_dump())
    session.add(camera)
    await session.flush()
    record_event(session, EventType.CAMERA_CREATED, f"camera {camera.id!r} created",
                 camera_id=camera.id, actor=actor, payload=data.model_dump())
    return camera


async def update_camera(
    session: AsyncSession, camera_id: str, patch: CameraPatch, *, actor: str | None
) -> Camera:
    camera = await get_camera(session, camera_id)
    changes = patch.model_dump(exclude_unset=True)
    if "name" in changes and changes["name"] is None:
        raise ValidationFailed("name cannot be null")
    if "enabled" in changes and changes["enabled"] is None:
        raise ValidationFailed("enabled cannot be null")
    if "provider_id" in changes:
        await _check_provider(session, changes["provider_id"])
    for field, value in changes.items():
        setattr(camera, field, value)
    await session.flush()
    record_event(session, EventType.CAMERA_UPDATED, f"camera {camera.id!r} updated",
                 camera_id=camera.id, actor=actor, payload=changes)
    return camera


async def delete_camera(
    session: AsyncSession, camera_id: str, *, actor: str | None
) -> set[str]:
    """Delete a camera with its frames, detections and queue items (events stay).

    Returns the storage paths its frames used; once committed, the caller removes the files
    no other frame shares (`frames.service.delete_unreferenced_files`).
    """
    camera = await get_camera(session, camera_id)
    query = select(Frame.storage_path).where(Frame.camera_id == camera_id)
    paths = set(await session.scalars(query))
    record_event(session, EventType.CAMERA_DELETED, f"camera {camera.id!r} deleted",
                 camera_id=camera.id, actor=actor, severity=Severity.WARNING)
    await session.delete(camera)
    await session.flush()
    return paths


async def _check_provider(session: AsyncSession, provider_id: int | None) -> None:
    if provider_id is not None and await session.get(DetectionProviderConfig, provider_id) is None:
        raise ValidationFailed(f"no provider with id {provider_id}", field="provider_id")


async def purge_biometrics(session: AsyncSession, camera_id: str, *, actor: str | None) -> int:
    """Erase the face encodings of every detection of the camera (the detections stay);
    returns how many were erased (flushes, writes a `biometrics.purged` event)."""
    camera = await get_camera(session, camera_id)
    result = await session.execute(
        update(Detection)
        .where(Detection.camera_id == camera.id, Detection.face_encoding.is_not(None))
        .values(face_encoding=None, encoding_model=None)
        .execution_options(synchronize_session=False)
    )
    erased = int(result.rowcount)  # type: ignore[attr-defined]
    record_event(session, EventType.BIOMETRICS_PURGED,
                 f"face encodings of camera {camera.id!r} erased ({erased})",
                 camera_id=camera.id, actor=actor, severity=Severity.WARNING,
                 payload={"face_encodings": erased})
    return erased
