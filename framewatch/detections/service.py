"""The send-frame pipeline: accept a frame, ask its provider, store what was found.

The provider is called before anything is written, so no database transaction is held open
during a slow call; the frame, its detections and the event are then written in one
transaction. When the provider fails, the frame is stored and queued instead, never lost.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.cameras.service import get_camera
from framewatch.core.database import utcnow
from framewatch.core.errors import Conflict, ProviderRejected, ProviderUnavailable
from framewatch.detections.schemas import (
    BBox,
    DetectionBrief,
    FrameQueued,
    PersonRef,
    SendFrameResult,
)
from framewatch.events.service import EventType, Severity, record_event
from framewatch.frames.images import inspect_frame
from framewatch.frames.storage import FrameStore
from framewatch.models import Detection, DetectionProviderConfig, Frame, Person
from framewatch.models.frame import FRAME_FAILED, FRAME_PROCESSED, FRAME_QUEUED
from framewatch.observability.metrics import record_failed, record_processed
from framewatch.persons.identify import identify_faces
from framewatch.providers import breaker
from framewatch.providers.base import (
    FACE,
    FoundObject,
    FrameImage,
    ProviderError,
    ProviderResult,
    ProviderSpec,
    ProviderUnreachable,
)
from framewatch.providers.registry import build_provider
from framewatch.providers.service import resolve_provider
from framewatch.queue.service import enqueue_frame, mark_dispatched
from framewatch.runtime import Runtime

log = logging.getLogger(__name__)

CACHE_KIND_FRAME = "frame"


MODE_SYNC = "sync"
MODE_ASYNC = "async"


@dataclass(frozen=True, slots=True)
class FrameSubmission:
    camera_id: str
    data: bytes
    detection_types: list[str] | None = None
    captured_at: datetime | None = None
    actor: str | None = None
    mode: str = MODE_SYNC


def parse_types(value: str | list[str] | None) -> list[str] | None:
    """`"person, face"` or `["person", "face"]` → `["face", "person"]`; empty → None."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    types = sorted({item.strip().lower() for item in items if item.strip()})
    return types or None


async def send_frame(
    session: AsyncSession, runtime: Runtime, submission: FrameSubmission
) -> SendFrameResult | FrameQueued:
    """Run one frame through its camera's provider and store the result (commits).

    In async mode the frame is stored and queued instead, and a worker runs it. In sync mode,
    when the provider fails (or its circuit is open) the frame is kept and queued, never lost.
    """
    image = inspect_frame(submission.data, runtime.settings)
    camera = await get_camera(session, submission.camera_id)
    if not camera.enabled:
        raise Conflict(f"camera {camera.id!r} is disabled", camera_id=camera.id)
    runtime.metrics.frames_received.labels(camera.id).inc()
    config, spec = await resolve_provider(session, camera, runtime.secret_box, runtime.settings)
    types = submission.detection_types or sorted(spec.detection_types)
    sha256 = hashlib.sha256(image.data).hexdigest()
    frame = Frame(
        camera_id=camera.id, sha256=sha256, content_type=image.content_type,
        size_bytes=len(image.data), width=image.width, height=image.height,
        storage_path=FrameStore.relative_path(sha256, image.content_type),
        captured_at=submission.captured_at, received_at=utcnow(), requested_types=types,
        provider_id=config.id if config else None, provider_name=spec.name,
    )
    if submission.mode == MODE_ASYNC:
        return await _queue_frame(session, runtime, frame, image, types)

    # The camera's creation time: a camera deleted and re-created never gets the old answers.
    cache_key = f"{camera.id}:{camera.created_at.timestamp()}:{sha256}:{','.join(types)}"
    cached = await runtime.cache.get(CACHE_KIND_FRAME, cache_key)
    if cached is not None:
        return SendFrameResult.model_validate({**cached, "cached": True})

    wait_until = await breaker.permit(session, spec.name, runtime.breaker_policy)
    await runtime.frame_store.save(image.data, sha256, image.content_type)
    # End the read transaction: nothing stays open while the provider works.
    await session.commit()
    if wait_until is not None:
        await _keep_failed_frame(
            session, runtime, frame, spec, types, _CircuitOpen(spec.name, wait_until),
            not_before=wait_until,
        )
        raise ProviderUnavailable(
            f"provider {spec.name!r} is failing; calls are paused until {wait_until:%H:%M:%S} "
            "UTC and the frame is queued", provider=spec.name, frame_id=frame.id, queued=True,
        )
    try:
        result = await build_provider(spec, runtime.provider_deps).detect(image, frozenset(types))
    except ProviderError as exc:
        record_failed(runtime.metrics, camera.id, spec.name, exc.retryable)
        await _keep_failed_frame(session, runtime, frame, spec, types, exc)
        error_class = ProviderUnavailable if exc.retryable else ProviderRejected
        raise error_class(
            f"provider {spec.name!r} failed: {exc.message}", provider=spec.name,
            frame_id=frame.id, queued=exc.retryable,
        ) from None

    result = await identify_faces(runtime, spec, image, result)
    detections = await store_detections(session, frame, config, spec, image, result, types)
    await breaker.record_success(session, spec.name)
    await session.commit()
    record_processed(runtime.metrics, camera.id, spec.name, result.latency_ms,
                     (d.type for d in detections))
    names = await person_names(session, detections)
    answer = SendFrameResult(
        frame_id=frame.id, camera_id=camera.id, provider=spec.name,
        processed_at=frame.processed_at or utcnow(), latency_ms=round(result.latency_ms, 2),
        cached=False, detections=[brief(d, names) for d in detections],
    )
    await runtime.cache.set(CACHE_KIND_FRAME, cache_key, answer.model_dump(mode="json"),
                            runtime.settings.live_ttl_seconds)
    return answer


async def _queue_frame(
    session: AsyncSession, runtime: Runtime, frame: Frame, image: FrameImage, types: list[str]
) -> FrameQueued:
    await runtime.frame_store.save(image.data, frame.sha256, image.content_type)
    frame.status = FRAME_QUEUED
    session.add(frame)
    await session.flush()
    item = await enqueue_frame(
        session, frame, provider_id=frame.provider_id, detection_types=types,
        max_attempts=runtime.queue_policy.retry.max_attempts,
    )
    await mark_dispatched(session, [item.id])
    await session.commit()
    await runtime.dispatcher.dispatch([item.id])
    return FrameQueued(queue_item_id=item.id, frame_id=frame.id, camera_id=frame.camera_id,
                       status=item.status)


async def store_detections(
    session: AsyncSession,
    frame: Frame,
    config: DetectionProviderConfig | None,
    spec: ProviderSpec,
    image: FrameImage,
    result: ProviderResult,
    types: list[str],
) -> list[Detection]:
    """Add the frame as processed, its detections and a `frame.processed` event (flushes)."""
    now = utcnow()
    frame.status = FRAME_PROCESSED
    frame.provider_id = config.id if config else None
    frame.provider_name = spec.name
    frame.model = result.model
    frame.latency_ms = result.latency_ms
    frame.provider_response = result.raw
    frame.processed_at = now
    session.add(frame)
    await session.flush()
    wanted = set(types)
    detections = [
        _to_detection(found, frame, config, spec, image, result)
        for found in result.objects
        if found.type in wanted and found.confidence >= spec.min_confidence
    ]
    stored = [d for d in detections if d is not None]
    session.add_all(stored)
    await session.flush()
    for detection in stored:
        if detection.person_id is not None:
            record_event(
                session, EventType.PERSON_IDENTIFIED,
                f"person {detection.person_id} seen on camera {frame.camera_id!r}",
                camera_id=frame.camera_id, frame_id=frame.id, detection_id=detection.id,
                provider=spec.name, person_id=detection.person_id, detection_types=[FACE],
                payload={"person_id": detection.person_id,
                         "similarity": detection.person_similarity,
                         "subject": detection.subject},
            )
    counts = Counter(d.type for d in stored)
    record_event(
        session, EventType.FRAME_PROCESSED,
        f"{len(stored)} detection{'' if len(stored) == 1 else 's'} on camera "
        f"{frame.camera_id!r} by {spec.name}",
        camera_id=frame.camera_id, provider=spec.name, frame_id=frame.id,
        payload={"counts": dict(counts), "latency_ms": round(result.latency_ms, 2),
                 "attempts": result.attempts, "model": result.model},
    )
    return stored


def _to_detection(
    found: FoundObject,
    frame: Frame,
    config: DetectionProviderConfig | None,
    spec: ProviderSpec,
    image: FrameImage,
    result: ProviderResult,
) -> Detection | None:
    width, height = image.width, image.height
    x_min = round(min(max(found.box.x_min, 0.0), width))
    y_min = round(min(max(found.box.y_min, 0.0), height))
    x_max = round(min(max(found.box.x_max, 0.0), width))
    y_max = round(min(max(found.box.y_max, 0.0), height))
    if x_max - x_min < 1 or y_max - y_min < 1:
        log.info("dropping a degenerate %s box from %s on frame of %s", found.type, spec.name,
                 frame.camera_id)
        return None
    encoding = None
    if found.encoding is not None:
        encoding = np.asarray(found.encoding, dtype="<f4").tobytes()
    return Detection(
        frame_id=frame.id, camera_id=frame.camera_id, provider_id=config.id if config else None,
        provider_name=spec.name, model=result.model, latency_ms=result.latency_ms,
        type=found.type, label=found.label, confidence=float(found.confidence),
        x_min=x_min, y_min=y_min, x_max=x_max, y_max=y_max,
        x_min_norm=x_min / width, y_min_norm=y_min / height,
        x_max_norm=x_max / width, y_max_norm=y_max / height,
        face_encoding=encoding, encoding_model=found.encoding_model if encoding else None,
        subject=found.subject, attributes=dict(found.attributes),
        person_id=found.person_id, person_similarity=found.person_similarity,
        detected_at=frame.seen_at, created_at=utcnow(),
    )


class _CircuitOpen(ProviderUnreachable):
    def __init__(self, provider: str, until: datetime) -> None:
        super().__init__(f"circuit open: calls to {provider!r} paused until {until.isoformat()}",
                         attempts=0)


async def _keep_failed_frame(
    session: AsyncSession,
    runtime: Runtime,
    frame: Frame,
    spec: ProviderSpec,
    types: list[str],
    exc: ProviderError,
    not_before: datetime | None = None,
) -> None:
    """Store a frame the provider did not process, queued for a retry (or dead-lettered when
    retrying cannot help), with its events; commits, then wakes a worker."""
    frame.status = FRAME_QUEUED if exc.retryable else FRAME_FAILED
    session.add(frame)
    await session.flush()
    called = not isinstance(exc, _CircuitOpen)
    item = await enqueue_frame(
        session, frame, provider_id=frame.provider_id, detection_types=types,
        max_attempts=runtime.queue_policy.retry.max_attempts, last_error=exc.message,
        attempts=1 if called else 0, retryable=exc.retryable,
        not_before=not_before or utcnow() + runtime.queue_policy.retry.delay(1),
    )
    if called:
        record_event(
            session, EventType.PROVIDER_ERROR, f"provider {spec.name!r} failed: {exc.message}",
            severity=Severity.ERROR, camera_id=frame.camera_id, frame_id=frame.id,
            provider=spec.name,
            payload={"attempts": exc.attempts, "status_code": exc.status_code,
                     "retryable": exc.retryable, "queue_item_id": item.id},
        )
        if exc.retryable:
            await breaker.record_failure(session, spec.name, exc.message, runtime.breaker_policy)
    record_event(
        session, EventType.FRAME_QUEUED, f"frame {frame.id} kept and queued ({item.status})",
        severity=Severity.WARNING, camera_id=frame.camera_id, frame_id=frame.id,
        provider=spec.name, payload={"queue_item_id": item.id, "status": item.status},
    )
    await session.commit()


def brief(detection: Detection, names: Mapping[int, str] | None = None) -> DetectionBrief:
    """The API's view of a detection; `names` gives identified persons their names."""
    person = None
    if detection.person_id is not None:
        person = PersonRef(id=detection.person_id,
                           name=(names or {}).get(detection.person_id),
                           similarity=detection.person_similarity)
    return DetectionBrief(
        id=detection.id, type=detection.type, label=detection.label,
        confidence=round(detection.confidence, 4),
        bbox=BBox(x_min=detection.x_min, y_min=detection.y_min,
                  x_max=detection.x_max, y_max=detection.y_max),
        bbox_norm=BBox(x_min=round(detection.x_min_norm, 5), y_min=round(detection.y_min_norm, 5),
                       x_max=round(detection.x_max_norm, 5), y_max=round(detection.y_max_norm, 5)),
        subject=detection.subject, person_id=detection.person_id, person=person,
    )


async def person_names(session: AsyncSession, detections: Iterable[Detection]) -> dict[int, str]:
    """The names of the persons these detections were identified as."""
    ids = {d.person_id for d in detections if d.person_id is not None}
    if not ids:
        return {}
    rows = await session.execute(select(Person.id, Person.name).where(Person.id.in_(ids)))
    return {person_id: name for person_id, name in rows}
