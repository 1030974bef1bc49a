"""Queue endpoints under /api/v1/detections: follow an item, list, requeue, statistics."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from sqlalchemy import select

from framewatch.auth.dependencies import DetectionsReader, QueueAdmin, StatsReader
from framewatch.core.dependencies import RuntimeDep, Session
from framewatch.core.errors import NotFound
from framewatch.core.openapi import AUTH_ERRORS, error_responses
from framewatch.detections.service import brief, person_names
from framewatch.models import Detection
from framewatch.models.queue_item import QUEUE_DONE
from framewatch.queue import service
from framewatch.queue.schemas import QueueItemOut, QueuePage, QueueStats, Requeued
from framewatch.queue.stats import queue_stats

router = APIRouter(prefix="/api/v1/detections", tags=["queue"])

Status = Literal["pending", "processing", "done", "dead"]


@router.get("/queue-stats", response_model=QueueStats, responses=AUTH_ERRORS)
async def get_queue_stats(
    session: Session, runtime: RuntimeDep, _: StatsReader
) -> QueueStats:
    """Counts by status, recent throughput, retries, dead letters, live workers and breakers."""
    return await queue_stats(session, runtime.dispatcher.name)


@router.get("/queue", response_model=QueuePage, responses=AUTH_ERRORS)
async def list_queue(
    session: Session,
    principal: DetectionsReader,
    status: Status | None = None,
    camera_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> QueuePage:
    """Queue items, newest first (e.g. `status=dead` for the dead letters)."""
    if camera_id is not None:
        principal.check_camera(camera_id)
    rows, next_cursor = await service.list_items(
        session, status=status, camera_id=camera_id, camera_scope=principal.camera_scope,
        limit=limit, before_id=before_id,
    )
    return QueuePage(items=[QueueItemOut.model_validate(r) for r in rows],
                     next_cursor=next_cursor)


@router.get("/queue/{item_id}", response_model=QueueItemOut,
            responses={**AUTH_ERRORS, **error_responses(404)})
async def get_queue_item(
    session: Session, principal: DetectionsReader, item_id: int
) -> QueueItemOut:
    """An item's status, attempts, next attempt and last error; once done, its detections."""
    item = await service.get_item(session, item_id)
    if not principal.sees_camera(item.camera_id):
        raise NotFound(f"no queue item with id {item_id}")
    answer = QueueItemOut.model_validate(item)
    if item.status == QUEUE_DONE:
        detections = await session.scalars(
            select(Detection).where(Detection.frame_id == item.frame_id).order_by(Detection.id)
        )
        rows = list(detections)
        names = await person_names(session, rows)
        answer.detections = [brief(d, names) for d in rows]
    return answer


@router.post("/queue/{item_id}/retry", response_model=QueueItemOut,
             responses={**AUTH_ERRORS, **error_responses(404, 409)})
async def retry_queue_item(
    session: Session, runtime: RuntimeDep, principal: QueueAdmin, item_id: int
) -> QueueItemOut:
    """Requeue a dead-lettered item with a fresh set of attempts."""
    if not principal.sees_camera((await service.get_item(session, item_id)).camera_id):
        raise NotFound(f"no queue item with id {item_id}")
    item = await service.requeue(session, item_id, actor=principal.actor)
    await service.mark_dispatched(session, [item.id])
    await session.commit()
    await runtime.dispatcher.dispatch([item.id])
    return QueueItemOut.model_validate(item)


@router.post("/queue/retry-dead", response_model=Requeued, responses=AUTH_ERRORS)
async def retry_dead_items(
    session: Session,
    runtime: RuntimeDep,
    principal: QueueAdmin,
    camera_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Requeued:
    """Requeue every dead-lettered item (optionally of one camera)."""
    if camera_id is not None:
        principal.check_camera(camera_id)
    ids = await service.requeue_dead(session, actor=principal.actor, camera_id=camera_id,
                                     camera_scope=principal.camera_scope)
    await service.mark_dispatched(session, ids)
    await session.commit()
    await runtime.dispatcher.dispatch(ids)
    return Requeued(requeued=ids)
