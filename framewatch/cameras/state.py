"""A camera's state: when it last sent a frame, what was last found, which provider serves it
and whether that provider's circuit is open, and online/offline by a silence threshold.

The database part is cached for `FRAMEWATCH_CAMERA_STATE_TTL_SECONDS` under the camera's
generation, which new detections bump, and its last edit (rebuilt once per process however many
requests miss it at the same time); online/offline is decided at each read, so it is exact even
from the cache."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.cameras.service import get_camera
from framewatch.core.database import utcnow
from framewatch.core.errors import ProviderUnavailable
from framewatch.detections.schemas import DetectionBrief
from framewatch.detections.service import brief, person_names
from framewatch.live.feed import CACHE_STATE
from framewatch.models import Detection, Frame, ProviderHealth
from framewatch.providers.service import resolve_provider
from framewatch.runtime import Runtime


class LastDetection(DetectionBrief):
    frame_id: int
    detected_at: datetime


class StoredState(BaseModel):
    camera_id: str
    name: str
    enabled: bool
    last_frame_id: int | None
    last_frame_at: datetime | None = Field(description="When the last frame arrived.")
    last_frame_status: str | None
    last_detection: LastDetection | None
    provider: str | None
    provider_state: str | None = Field(description="`closed`, `open`, or unknown (null).")


class CameraState(StoredState):
    online: bool = Field(description="A frame arrived within `offline_after_seconds`.")
    offline_after_seconds: float
    checked_at: datetime


async def camera_state(session: AsyncSession, runtime: Runtime, camera_id: str) -> CameraState:
    camera = await get_camera(session, camera_id)  # 404 first, never from the cache
    generation = await runtime.cache.generation(CACHE_STATE, camera.id)
    # Editing the camera (enabled, name, provider) changes `updated_at`: a new entry at once.
    key = (f"{camera.id}:{camera.created_at.timestamp()}:{camera.updated_at.timestamp()}:"
           f"{generation}")

    async def build() -> dict[str, object]:
        # A session of its own: the rebuild is shared by every request that misses meanwhile.
        async with runtime.session_factory() as own_session:
            built = await _stored_state(own_session, runtime, camera.id)
        return built.model_dump(mode="json")

    stored = StoredState.model_validate(await runtime.cache.get_or_build(
        CACHE_STATE, key, build, runtime.settings.camera_state_ttl_seconds))
    now = utcnow()
    threshold = runtime.settings.camera_offline_seconds
    online = (stored.enabled and stored.last_frame_at is not None
              and now - stored.last_frame_at <= timedelta(seconds=threshold))
    return CameraState(**stored.model_dump(), online=online, offline_after_seconds=threshold,
                       checked_at=now)


async def _stored_state(session: AsyncSession, runtime: Runtime, camera_id: str) -> StoredState:
    camera = await get_camera(session, camera_id)
    frame = await session.scalar(
        select(Frame).where(Frame.camera_id == camera_id)
        .order_by(Frame.received_at.desc(), Frame.id.desc()).limit(1)
    )
    detection = await session.scalar(
        select(Detection).where(Detection.camera_id == camera_id)
        .order_by(Detection.detected_at.desc(), Detection.id.desc()).limit(1)
    )
    try:
        _, spec = await resolve_provider(session, camera, runtime.secret_box, runtime.settings)
        provider: str | None = spec.name
    except ProviderUnavailable as exc:  # the camera's provider is disabled
        provider = exc.extra.get("provider")
    health = await session.get(ProviderHealth, provider) if provider else None
    last = None
    if detection is not None:
        names = await person_names(session, [detection])
        last = LastDetection(**brief(detection, names).model_dump(), frame_id=detection.frame_id,
                             detected_at=detection.detected_at)
    return StoredState(
        camera_id=camera.id, name=camera.name, enabled=camera.enabled,
        last_frame_id=frame.id if frame else None,
        last_frame_at=frame.received_at if frame else None,
        last_frame_status=frame.status if frame else None, last_detection=last,
        provider=provider, provider_state=health.state if health else "closed",
    )
