"""The `cleanup_old_detections` job: retention in bounded batches.

- detections older than `retention_detections_days` (by `detected_at`);
- frame images older than `retention_frames_days` are deleted from disk (the frame row and its
  detections stay; the image endpoint then answers 404), content-addressed files only once no
  frame that still keeps its image shares them;
- frame rows older than both windows with no detections left (their queue items go with them);
- events older than `retention_events_days`.
Each batch is its own short transaction; one run does at most `MAX_BATCHES` per kind, and the next
run carries on, so a first run over a huge backlog never holds long locks.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.core.database import utcnow
from framewatch.events.service import EventType, record_event
from framewatch.models import Detection, DetectionEventLog, Frame
from framewatch.models.frame import FRAME_FAILED, FRAME_PROCESSED, FRAME_QUEUED
from framewatch.runtime import Runtime

MAX_BATCHES = 50


def _cutoff(now: datetime, days: int) -> datetime | None:
    return now - timedelta(days=days) if days > 0 else None


async def cleanup_old_data(runtime: Runtime, now: datetime | None = None) -> dict[str, Any]:
    settings = runtime.settings
    now = now or utcnow()
    batch = settings.cleanup_batch_size
    report = {"detections": 0, "frame_images": 0, "frames": 0, "events": 0}

    detections_cutoff = _cutoff(now, settings.retention_detections_days)
    if detections_cutoff is not None:
        report["detections"] = await _delete_in_batches(
            runtime, Detection, Detection.detected_at < detections_cutoff, batch
        )
    frames_cutoff = _cutoff(now, settings.retention_frames_days)
    if frames_cutoff is not None:
        report["frame_images"] = await _purge_images(runtime, frames_cutoff, now, batch)
    if detections_cutoff is not None and frames_cutoff is not None:
        report["frames"] = await _delete_bare_frames(
            runtime, min(detections_cutoff, frames_cutoff), batch
        )
    events_cutoff = _cutoff(now, settings.retention_events_days)
    if events_cutoff is not None:
        report["events"] = await _delete_in_batches(
            runtime, DetectionEventLog, DetectionEventLog.created_at < events_cutoff, batch
        )
    if any(report.values()):
        async with runtime.session_factory() as session:
            record_event(session, EventType.RETENTION_CLEANUP,
                         "retention removed " + ", ".join(f"{v} {k}" for k, v in report.items()),
                         actor="retention", payload=report)
            await session.commit()
    return report


async def _delete_in_batches(
    runtime: Runtime, model: type[Detection] | type[DetectionEventLog],
    older: ColumnElement[bool], batch: int,
) -> int:
    deleted = 0
    for _ in range(MAX_BATCHES):
        async with runtime.session_factory() as session:
            ids = select(model.id).where(older).order_by(model.id).limit(batch)
            result = await session.execute(
                delete(model).where(model.id.in_(ids.scalar_subquery()))
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        count = int(result.rowcount)  # type: ignore[attr-defined]
        deleted += count
        if count < batch:
            break
    return deleted


async def _purge_images(runtime: Runtime, cutoff: datetime, now: datetime, batch: int) -> int:
    purged = 0
    for _ in range(MAX_BATCHES):
        async with runtime.session_factory() as session:
            rows = (
                await session.execute(
                    select(Frame.id, Frame.storage_path)
                    # A frame still queued keeps its image: a worker has yet to read it.
                    .where(Frame.received_at < cutoff, Frame.image_purged_at.is_(None),
                           Frame.status != FRAME_QUEUED)
                    .order_by(Frame.id).limit(batch)
                )
            ).all()
            if not rows:
                break
            await session.execute(
                update(Frame).where(Frame.id.in_([row.id for row in rows]))
                .values(image_purged_at=now).execution_options(synchronize_session=False)
            )
            await session.commit()
            await _delete_unshared_files(session, runtime, {row.storage_path for row in rows})
        purged += len(rows)
        if len(rows) < batch:
            break
    return purged


async def _delete_bare_frames(runtime: Runtime, cutoff: datetime, batch: int) -> int:
    """Frame rows past retention whose detections are all gone (never frames still queued)."""
    deleted = 0
    for _ in range(MAX_BATCHES):
        async with runtime.session_factory() as session:
            rows = (
                await session.execute(
                    select(Frame.id, Frame.storage_path)
                    .where(
                        Frame.received_at < cutoff,
                        Frame.status.in_([FRAME_PROCESSED, FRAME_FAILED]),
                        ~exists().where(Detection.frame_id == Frame.id),
                    )
                    .order_by(Frame.id).limit(batch)
                )
            ).all()
            if not rows:
                break
            await session.execute(
                delete(Frame).where(Frame.id.in_([row.id for row in rows]))
                .execution_options(synchronize_session=False)
            )
            await session.commit()
            await _delete_unshared_files(session, runtime, {row.storage_path for row in rows})
        deleted += len(rows)
        if len(rows) < batch:
            break
    return deleted


async def _delete_unshared_files(session: AsyncSession, runtime: Runtime, paths: set[str]) -> None:
    """Delete the files among `paths` that no frame keeping its image refers to."""
    still_used = set(
        await session.scalars(
            select(Frame.storage_path).where(
                Frame.storage_path.in_(paths), Frame.image_purged_at.is_(None)
            )
        )
    )
    for path in paths - still_used:
        await runtime.frame_store.delete(path)
