"""What each transaction committed, turned into live messages once it has committed.

`outbox_session_class(outbox)` makes a SQLAlchemy session class that collects, at every flush,
the frames that became processed, the detections and the events that were added; when the
transaction commits they become messages in `outbox`, and a rollback forgets them. So every path
that stores detections or writes events — an API request, the in-process worker, a Celery task —
feeds the live stream without calling it, and nothing uncommitted is ever shown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, UOWTransaction

from framewatch.models import Detection, DetectionEventLog, Frame
from framewatch.models.frame import FRAME_PROCESSED

log = logging.getLogger(__name__)

_KEY = "framewatch_live_outbox"


@dataclass(frozen=True, slots=True)
class Outgoing:
    type: str  # "detection" or "event"
    camera_id: str | None
    body: dict[str, Any]


@dataclass
class Collected:
    frames: dict[int, Frame] = field(default_factory=dict)
    detections: list[Detection] = field(default_factory=list)
    events: list[DetectionEventLog] = field(default_factory=list)


class Outbox:
    """Committed messages waiting to be published, in commit order, by one background task."""

    def __init__(self, publish: Callable[[list[Outgoing]], Awaitable[None]]) -> None:
        self._publish = publish
        # Names of identified persons, as this process knows them (set by the runtime).
        self.person_names: Callable[[], Mapping[int, str]] = dict
        self._queue: asyncio.Queue[list[Outgoing]] | None = None
        self._task: asyncio.Task[None] | None = None

    def put(self, messages: list[Outgoing]) -> None:
        if not messages:
            return
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(self._queue))
        self._queue.put_nowait(messages)

    async def drain(self) -> None:
        """Wait until everything committed so far is published."""
        if self._queue is not None and self._task is not None and not self._task.done():
            await self._queue.join()

    async def close(self) -> None:
        await self.drain()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self, queue: asyncio.Queue[list[Outgoing]]) -> None:
        while True:
            messages = await queue.get()
            taken = 1
            # Everything committed meanwhile goes out together, in commit order: a publisher
            # that fell behind catches up in one round of invalidations and one of publishing.
            while not queue.empty():
                messages = messages + queue.get_nowait()
                taken += 1
            try:
                await self._publish(messages)
            except Exception:  # the live view is best effort; the database has everything
                log.exception("publishing %d live messages failed", len(messages))
            finally:
                for _ in range(taken):
                    queue.task_done()


def outbox_session_class(outbox: Outbox) -> type[Session]:
    class OutboxSession(Session):
        """A session whose commits feed the live stream."""

    def collect(session: Session, _: UOWTransaction) -> None:
        collect_flushed(session, session.info.setdefault(_KEY, Collected()))

    def send(session: Session) -> None:
        collected: Collected | None = session.info.pop(_KEY, None)
        if collected is not None:
            outbox.put(messages_for(collected, outbox.person_names()))

    def forget(session: Session) -> None:
        session.info.pop(_KEY, None)

    event.listen(OutboxSession, "after_flush", collect)
    event.listen(OutboxSession, "after_commit", send)
    event.listen(OutboxSession, "after_rollback", forget)
    return OutboxSession


def collect_flushed(session: Session, collected: Collected) -> None:
    """Add to `collected` what this flush wrote that the live stream tells: new detections and
    events, and frames that became processed."""
    for obj in session.new:
        if isinstance(obj, Detection):
            collected.detections.append(obj)
        elif isinstance(obj, DetectionEventLog):
            collected.events.append(obj)
        elif isinstance(obj, Frame) and obj.status == FRAME_PROCESSED:
            collected.frames[id(obj)] = obj
    for obj in session.dirty:
        if (isinstance(obj, Frame) and obj.status == FRAME_PROCESSED
                and inspect(obj).attrs.status.history.has_changes()):
            collected.frames[id(obj)] = obj


def messages_for(collected: Collected, names: Mapping[int, str]) -> list[Outgoing]:
    from framewatch.detections.service import brief

    by_frame: dict[int, list[Detection]] = {}
    for detection in collected.detections:
        by_frame.setdefault(detection.frame_id, []).append(detection)
    messages = []
    for frame in collected.frames.values():
        detections = sorted(by_frame.get(frame.id, []), key=lambda d: d.id)
        messages.append(Outgoing("detection", frame.camera_id, {
            "camera_id": frame.camera_id,
            "frame_id": frame.id,
            "provider": frame.provider_name,
            "width": frame.width,
            "height": frame.height,
            "seen_at": frame.seen_at.isoformat(),
            "processed_at": frame.processed_at.isoformat() if frame.processed_at else None,
            "detections": [brief(d, names).model_dump(mode="json") for d in detections],
        }))
    for event_row in collected.events:
        messages.append(Outgoing("event", event_row.camera_id, {"event": event_json(event_row)}))
    return messages


def event_json(row: DetectionEventLog) -> dict[str, Any]:
    return {
        "id": row.id,
        "event_type": row.event_type,
        "severity": row.severity,
        "camera_id": row.camera_id,
        "frame_id": row.frame_id,
        "detection_id": row.detection_id,
        "person_id": row.person_id,
        "provider": row.provider,
        "message": row.message,
        "payload": row.payload,
        "actor": row.actor,
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "detection_types": [t for t in (row.detection_types or "").split(",") if t],
    }
