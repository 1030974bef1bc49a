"""Putting frames on the processing queue. (Claiming and running items: the workers.)"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.core.database import utcnow
from framewatch.models import Frame, QueueItem
from framewatch.models.queue_item import QUEUE_DEAD, QUEUE_PENDING

DEFAULT_MAX_ATTEMPTS = 5


async def enqueue_frame(
    session: AsyncSession,
    frame: Frame,
    *,
    provider_id: int | None,
    detection_types: list[str],
    last_error: str | None = None,
    attempts: int = 0,
    retryable: bool = True,
) -> QueueItem:
    """Queue `frame` for processing. A frame the provider refused outright is dead-lettered
    at once: retrying cannot help until someone fixes the cause and requeues it."""
    item = QueueItem(
        frame_id=frame.id,
        camera_id=frame.camera_id,
        provider_id=provider_id,
        detection_types=detection_types,
        status=QUEUE_PENDING if retryable else QUEUE_DEAD,
        attempts=attempts,
        max_attempts=DEFAULT_MAX_ATTEMPTS,
        next_attempt_at=utcnow(),
        last_error=last_error,
    )
    session.add(item)
    await session.flush()
    return item
