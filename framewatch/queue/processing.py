"""Running one queue item: the function behind the Celery task and the in-process worker alike.

An item runs in three short transactions and never holds one open while the provider works:
claim (or receive a claimed item), check the provider's circuit breaker, then — after the call —
finish. Finishing marks the item done *and* stores the frame's detections in one transaction, and
only while the worker still holds the lease: however many times an item runs (a duplicate
message, a worker presumed dead that was only slow), its frame's detections are stored once.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.core.context import RequestContext, current_request
from framewatch.core.errors import NotFound, ProviderUnavailable
from framewatch.detections.service import store_detections
from framewatch.models import Camera, DetectionProviderConfig, Frame, QueueItem
from framewatch.models.frame import FRAME_PROCESSED
from framewatch.observability.metrics import record_failed, record_processed
from framewatch.persons.identify import identify_faces
from framewatch.providers import breaker
from framewatch.providers.base import FrameImage, ProviderError, ProviderResult, ProviderSpec
from framewatch.providers.registry import build_provider
from framewatch.providers.service import resolve_provider
from framewatch.queue import service as queue
from framewatch.runtime import Runtime

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    DONE = "done"
    RETRY = "retry"
    DEAD = "dead"
    # The provider's circuit is open: handed back to wait, without spending an attempt.
    DEFERRED = "deferred"
    # Another worker took the item over (our lease had expired); nothing was written.
    LOST_LEASE = "lost_lease"
    # Not due, already finished, leased by someone else, or deleted: nothing to do.
    SKIPPED = "skipped"


async def process_item(runtime: Runtime, item_id: int, worker_id: str) -> Outcome:
    """Claim item `item_id` and run it (the `process_detection_frame` task)."""
    async with runtime.session_factory() as session:
        item = await queue.claim_item(session, item_id, worker_id, runtime.queue_policy.lease)
        await session.commit()
    if item is None:
        return Outcome.SKIPPED
    return await run_claimed_item(runtime, item, worker_id)


async def run_claimed_item(runtime: Runtime, item: QueueItem, worker_id: str) -> Outcome:
    """Run an item this worker has claimed: call its provider and store the answer. Its log
    lines and events carry the id of the request that queued it."""
    token = current_request.set(RequestContext(request_id=item.request_id))
    try:
        return await _run(runtime, item, worker_id)
    finally:
        current_request.reset(token)


async def _run(runtime: Runtime, item: QueueItem, worker_id: str) -> Outcome:
    async with runtime.session_factory() as session:
        frame = await session.get(Frame, item.frame_id)
        camera = await session.get(Camera, item.camera_id)
        if frame is None or camera is None:  # deleted with its camera meanwhile
            return Outcome.SKIPPED
        if frame.status == FRAME_PROCESSED:
            await queue.mark_done(session, item, worker_id)
            await session.commit()
            return Outcome.SKIPPED
        try:
            config, spec = await resolve_provider(
                session, camera, runtime.secret_box, runtime.settings, item.provider_id
            )
        except ProviderUnavailable as exc:  # disabled meanwhile: wait for someone to enable it
            return await _fail(runtime, session, item, worker_id, exc.detail, True, None)
        wait_until = await breaker.permit(session, spec.name, runtime.breaker_policy)
        if wait_until is not None:
            await queue.defer(session, item, worker_id, wait_until)
            await session.commit()
            return Outcome.DEFERRED
        storage_path, content_type = frame.storage_path, frame.content_type
        width, height = frame.width, frame.height
        await session.commit()

    try:
        data = await runtime.frame_store.read(storage_path)
    except NotFound:
        async with runtime.session_factory() as session:
            return await _fail(runtime, session, item, worker_id,
                               "the frame's image is no longer on disk", False, spec.name)
    image = FrameImage(data, content_type, width, height)
    try:
        result = await build_provider(spec, runtime.provider_deps).detect(
            image, frozenset(item.detection_types)
        )
    except ProviderError as exc:
        async with runtime.session_factory() as session:
            return await _fail(runtime, session, item, worker_id, exc.message, exc.retryable,
                               spec.name)
    result = await identify_faces(runtime, spec, image, result)
    return await _finish(runtime, item, worker_id, config, spec, image, result)


async def _finish(
    runtime: Runtime,
    item: QueueItem,
    worker_id: str,
    config: DetectionProviderConfig | None,
    spec: ProviderSpec,
    image: FrameImage,
    result: ProviderResult,
) -> Outcome:
    async with runtime.session_factory() as session:
        if not await queue.mark_done(session, item, worker_id):
            await session.rollback()
            log.info("queue item %s: lease lost to another worker; result dropped", item.id)
            return Outcome.LOST_LEASE
        # The item row is now locked by this transaction, so no other run of it can get here.
        frame = await session.get(Frame, item.frame_id, populate_existing=True)
        if frame is None:
            await session.rollback()
            return Outcome.SKIPPED
        stored = []
        if frame.status != FRAME_PROCESSED:
            stored = await store_detections(session, frame, config, spec, image, result,
                                            item.detection_types)
        await breaker.record_success(session, spec.name)
        await session.commit()
    record_processed(runtime.metrics, item.camera_id, spec.name, result.latency_ms,
                     (d.type for d in stored))
    return Outcome.DONE


async def _fail(
    runtime: Runtime,
    session: AsyncSession,
    item: QueueItem,
    worker_id: str,
    error: str,
    retryable: bool,
    provider: str | None,
) -> Outcome:
    record_failed(runtime.metrics, item.camera_id, provider, retryable)
    status = await queue.mark_failed(
        session, item, worker_id, error, retryable=retryable,
        policy=runtime.queue_policy.retry, provider=provider,
    )
    if status is None:
        await session.rollback()
        return Outcome.LOST_LEASE
    # Only failures that say something about the provider's health count towards its breaker.
    if retryable and provider is not None:
        await breaker.record_failure(session, provider, error, runtime.breaker_policy)
    await session.commit()
    return Outcome.RETRY if status == "pending" else Outcome.DEAD
