"""Sending a stored frame to a provider on demand (`send_frame_to_provider`): to compare
providers, or to check a frame with a better one. The answer is returned and kept as a
`frame.redetected` event; the frame's own stored detections are never replaced, so each frame keeps
exactly one set of detections."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.cameras.service import get_camera
from framewatch.core.errors import NotFound, ProviderRejected, ProviderUnavailable
from framewatch.detections.schemas import BBox
from framewatch.events.service import EventType, record_event
from framewatch.frames.service import get_frame
from framewatch.providers.base import FoundObject, FrameImage, ProviderError
from framewatch.providers.registry import build_provider
from framewatch.providers.service import get_provider, resolve_provider
from framewatch.runtime import Runtime


class FoundOut(BaseModel):
    type: str
    label: str
    confidence: float
    bbox: BBox
    subject: str | None = None


class RedetectResult(BaseModel):
    frame_id: int
    camera_id: str
    provider: str
    model: str
    latency_ms: float
    detections: list[FoundOut]


async def redetect_frame(
    session: AsyncSession,
    runtime: Runtime,
    frame_id: int,
    provider_id: int | None,
    *,
    actor: str | None,
    camera_scope: frozenset[str] | None = None,
) -> RedetectResult:
    """Run frame `frame_id` through `provider_id` (default: its camera's provider) and record
    the answer as an event (added to the session; the caller commits)."""
    frame = await get_frame(session, frame_id, camera_scope)
    camera = await get_camera(session, frame.camera_id)
    if provider_id is not None:
        await get_provider(session, provider_id)  # an explicit choice must exist: 404 if not
    _, spec = await resolve_provider(session, camera, runtime.secret_box, runtime.settings,
                                     provider_id)
    if frame.image_purged_at is not None:
        raise NotFound(f"frame {frame_id}'s image was deleted by retention")
    data = await runtime.frame_store.read(frame.storage_path)
    image = FrameImage(data, frame.content_type, frame.width, frame.height)
    types = frozenset(frame.requested_types or spec.detection_types)
    try:
        result = await build_provider(spec, runtime.provider_deps).detect(image, types)
    except ProviderError as exc:
        error = ProviderUnavailable if exc.retryable else ProviderRejected
        raise error(f"provider {spec.name!r} failed: {exc.message}", provider=spec.name) from None
    found = [obj for obj in result.objects
             if obj.type in types and obj.confidence >= spec.min_confidence]
    answer = RedetectResult(
        frame_id=frame.id, camera_id=frame.camera_id, provider=spec.name, model=result.model,
        latency_ms=round(result.latency_ms, 2), detections=[_found_out(obj) for obj in found],
    )
    record_event(
        session, EventType.FRAME_REDETECTED,
        f"frame {frame.id} sent to {spec.name}: {len(found)} found",
        camera_id=frame.camera_id, frame_id=frame.id, provider=spec.name, actor=actor,
        payload=answer.model_dump(mode="json"),
    )
    return answer


def _found_out(obj: FoundObject) -> FoundOut:
    box = BBox(x_min=round(obj.box.x_min, 1), y_min=round(obj.box.y_min, 1),
               x_max=round(obj.box.x_max, 1), y_max=round(obj.box.y_max, 1))
    return FoundOut(type=obj.type, label=obj.label, confidence=round(obj.confidence, 4),
                    bbox=box, subject=obj.subject)
