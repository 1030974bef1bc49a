"""The `cleanup_old_detections` job: retention in bounded batches, per camera and per kind.

- detections older than their camera's detections window (by `detected_at`);
- face encodings (biometric data) older than the face-encodings window are erased from their
  detections, which stay;
- frame images older than the frames window are deleted from disk (the frame row and its
  detections stay; the image endpoint then answers 404), content-addressed files only once no
  frame that still keeps its image shares them; frames still queued keep theirs;
- frame rows past both windows with no detections left (their queue items go with them);
- events older than the events window (events of no camera follow the global window).
Windows come from `framewatch.retention.policy`. Each batch is its own short transaction; one run
does at most `MAX_BATCHES` per kind and group, and the next run carries on. A dry run counts what
a run would remove, and removes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.core.database import utcnow
from framewatch.events.service import EventType, record_event
from framewatch.models import Detection, DetectionEventLog, Frame
from framewatch.models.frame import FRAME_FAILED, FRAME_PROCESSED, FRAME_QUEUED
from framewatch.retention.policy import CameraGroup, camera_groups
from framewatch.runtime import Runtime

MAX_BATCHES = 50
REPORT_KEYS = ("detections", "face_encodings", "frame_images", "frames", "events")


def _cutoff(now: datetime, days: int) -> datetime | None:
    return now - timedelta(days=days) if days > 0 else None


async def cleanup_old_data(
    runtime: Runtime, now: datetime | None = None, *, dry_run: bool = False
) -> dict[str, Any]:
    """Apply the retention policy; returns how many of each kind were (or, dry, would be)
    removed."""
    settings = runtime.settings
    now = now or utcnow()
    batch = settings.cleanup_batch_size
    report = dict.fromkeys(REPORT_KEYS, 0)
    async with runtime.session_factory() as session:
        groups = {kind: await camera_groups(session, settings, kind)
                  for kind in ("detections", "frames", "face_encodings", "events")}

    for group in groups["detections"]:
        cutoff = _cutoff(now, group.days)
        if cutoff is not None:
            older = (Detection.detected_at < cutoff) & group.condition(Detection.camera_id)
            report["detections"] += await _delete_rows(runtime, Detection, older, batch, dry_run)
    for group in groups["face_encodings"]:
        cutoff = _cutoff(now, group.days)
        if cutoff is not None:
            report["face_encodings"] += await _erase_encodings(
                runtime, (Detection.detected_at < cutoff) & group.condition(Detection.camera_id),
                batch, dry_run)
    for group in groups["frames"]:
        cutoff = _cutoff(now, group.days)
        if cutoff is not None:
            report["frame_images"] += await _purge_images(
                runtime, (Frame.received_at < cutoff) & group.condition(Frame.camera_id),
                now, batch, dry_run)
    for frames, detections in _pairs(groups["frames"], groups["detections"]):
        frames_cutoff, detections_cutoff = _cutoff(now, frames), _cutoff(now, detections)
        if frames_cutoff is not None and detections_cutoff is not None:
            report["frames"] += await _delete_bare_frames(
                runtime, min(frames_cutoff, detections_cutoff), batch, dry_run,
                _camera_pair_condition(groups, frames, detections))
    for group in groups["events"]:
        cutoff = _cutoff(now, group.days)
        if cutoff is not None:
            older = (DetectionEventLog.created_at < cutoff) & group.condition(
                DetectionEventLog.camera_id, include_no_camera=True)
            report["events"] += await _delete_rows(runtime, DetectionEventLog, older, batch,
                                                   dry_run)
    if any(report.values()) and not dry_run:
        async with runtime.session_factory() as session:
            record_event(session, EventType.RETENTION_CLEANUP,
                         "retention removed " + ", ".join(f"{v} {k}" for k, v in report.items()
                                                          if v),
                         actor="retention", payload=report)
            await session.commit()
    return report


def _pairs(frames: list[CameraGroup], detections: list[CameraGroup]) -> set[tuple[int, int]]:
    """The distinct (frames days, detections days) combinations cameras have."""
    return {(f.days, d.days) for f in frames for d in detections}


def _camera_pair_condition(
    groups: dict[str, list[CameraGroup]], frames_days: int, detections_days: int
) -> ColumnElement[bool]:
    frames = [g for g in groups["frames"] if g.days == frames_days]
    detections = [g for g in groups["detections"] if g.days == detections_days]
    in_frames = _any(g.condition(Frame.camera_id) for g in frames)
    in_detections = _any(g.condition(Frame.camera_id) for g in detections)
    return in_frames & in_detections


def _any(conditions: Any) -> ColumnElement[bool]:
    return or_(*conditions)


async def _count(runtime: Runtime, model: Any, condition: ColumnElement[bool]) -> int:
    async with runtime.session_factory() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(condition))
                   or 0)


async def _delete_rows(
    runtime: Runtime, model: type[Detection] | type[DetectionEventLog],
    older: ColumnElement[bool], batch: int, dry_run: bool,
) -> int:
    if dry_run:
        return await _count(runtime, model, older)
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


async def _erase_encodings(
    runtime: Runtime, older: ColumnElement[bool], batch: int, dry_run: bool
) -> int:
    encoded = older & Detection.face_encoding.is_not(None)
    if dry_run:
        return await _count(runtime, Detection, encoded)
    erased = 0
    for _ in range(MAX_BATCHES):
        async with runtime.session_factory() as session:
            ids = select(Detection.id).where(encoded).order_by(Detection.id).limit(batch)
            result = await session.execute(
                update(Detection).where(Detection.id.in_(ids.scalar_subquery()))
                .values(face_encoding=None, encoding_model=None)
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        count = int(result.rowcount)  # type: ignore[attr-defined]
        erased += count
        if count < batch:
            break
    return erased


async def _purge_images(
    runtime: Runtime, older: ColumnElement[bool], now: datetime, batch: int, dry_run: bool
) -> int:
    # A frame still queued keeps its image: a worker has yet to read it.
    due = older & Frame.image_purged_at.is_(None) & (Frame.status != FRAME_QUEUED)
    if dry_run:
        return await _count(runtime, Frame, due)
    purged = 0
    for _ in range(MAX_BATCHES):
        async with runtime.session_factory() as session:
            rows = (await session.execute(
                select(Frame.id, Frame.storage_path).where(due).order_by(Frame.id).limit(batch)
            )).all()
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


async def _delete_bare_frames(
    runtime: Runtime, cutoff: datetime, batch: int, dry_run: bool, cameras: ColumnElement[bool]
) -> int:
    """Frame rows past retention whose detections are all gone (never frames still queued)."""
    bare = (
        (Frame.received_at < cutoff) & cameras
        & Frame.status.in_([FRAME_PROCESSED, FRAME_FAILED])
        & ~exists().where(Detection.frame_id == Frame.id)
    )
    if dry_run:
        return await _count(runtime, Frame, bare)
    deleted = 0
    for _ in range(MAX_BATCHES):
        async with runtime.session_factory() as session:
            rows = (await session.execute(
                select(Frame.id, Frame.storage_path).where(bare).order_by(Frame.id).limit(batch)
            )).all()
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
