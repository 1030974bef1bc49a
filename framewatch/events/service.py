"""Writing audit events. Event types are listed in docs/events.md."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.core.context import current_request
from framewatch.models import DetectionEventLog


class Severity(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class EventType(StrEnum):
    FRAME_PROCESSED = "frame.processed"
    FRAME_QUEUED = "frame.queued"
    PROVIDER_ERROR = "provider.error"
    PROVIDER_CREATED = "provider.created"
    PROVIDER_UPDATED = "provider.updated"
    PROVIDER_DELETED = "provider.deleted"
    PROVIDER_TESTED = "provider.tested"
    PROVIDER_DOWN = "provider.down"
    PROVIDER_RECOVERED = "provider.recovered"
    QUEUE_RETRY = "queue.retry"
    QUEUE_DEAD_LETTER = "queue.dead_letter"
    QUEUE_REQUEUED = "queue.requeued"
    FRAME_REDETECTED = "frame.redetected"
    RETENTION_CLEANUP = "retention.cleanup"
    CAMERA_CREATED = "camera.created"
    CAMERA_UPDATED = "camera.updated"
    CAMERA_DELETED = "camera.deleted"
    KEY_CREATED = "key.created"
    KEY_REVOKED = "key.revoked"
    KEY_ROTATED = "key.rotated"
    KEY_UPDATED = "key.updated"
    AUTH_FAILED = "auth.failed"
    AUTH_DENIED = "auth.denied"
    ADMIN_FAILED = "admin.failed"
    BIOMETRICS_PURGED = "biometrics.purged"
    SECRET_KEY_ROTATED = "secret_key.rotated"
    PERSON_IDENTIFIED = "person.identified"
    PERSON_CREATED = "person.created"
    PERSON_UPDATED = "person.updated"
    PERSON_DELETED = "person.deleted"
    PERSON_FACE_ADDED = "person.face_added"
    PERSON_FACE_REMOVED = "person.face_removed"
    # Webhooks (framewatch/webhooks).
    WEBHOOK_CREATED = "webhook.created"
    WEBHOOK_UPDATED = "webhook.updated"
    WEBHOOK_DELETED = "webhook.deleted"
    WEBHOOK_REDELIVERED = "webhook.redelivered"
    WEBHOOK_DEAD_LETTER = "webhook.dead_letter"


def record_event(
    session: AsyncSession,
    event_type: EventType,
    message: str,
    *,
    severity: Severity = Severity.INFO,
    camera_id: str | None = None,
    frame_id: int | None = None,
    detection_id: int | None = None,
    provider: str | None = None,
    person_id: int | None = None,
    actor: str | None = None,
    payload: dict[str, Any] | None = None,
    detection_types: list[str] | None = None,
) -> DetectionEventLog:
    """Add an event to the session; it is committed with the caller's transaction."""
    payload = _storable(payload or {})
    if detection_types is None and isinstance(payload.get("counts"), dict):
        detection_types = [kind for kind, count in payload["counts"].items() if count]
    context = current_request.get()
    event = DetectionEventLog(
        address=context.address,
        request_id=context.request_id,
        detection_types=f",{','.join(sorted(detection_types))}," if detection_types else None,
        event_type=event_type.value,
        severity=severity.value,
        camera_id=_storable(camera_id),
        frame_id=frame_id,
        detection_id=detection_id,
        provider=_storable(provider),
        person_id=person_id,
        actor=_storable(actor),
        message=_storable(message),
        payload=payload,
    )
    session.add(event)
    return event


def _storable(value: Any) -> Any:
    """`value` with NUL characters escaped: PostgreSQL cannot store them in text or JSON, and
    an event may quote a hostile request (a path, a camera id) that must still be written."""
    if isinstance(value, str):
        return value.replace("\x00", "\\0")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value
