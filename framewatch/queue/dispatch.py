"""Telling a worker that queue items are waiting: a Celery message, or a nudge to the in-process
worker. A lost hint costs only time: the database holds the items, and the sweeper (Celery) or the
worker's own polling (in process) finds them again."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)

PROCESS_TASK = "framewatch.process_detection_frame"


class Dispatcher(Protocol):
    name: str

    async def dispatch(self, item_ids: list[int]) -> None:
        """Ask a worker to run these items; never raises (a lost hint is recovered later)."""
        ...

    async def backlog(self) -> int | None:
        """Hints sent but not yet taken by a worker; None when unknown."""
        ...


class LocalDispatcher:
    """Wakes the in-process worker of this process (the embedded default)."""

    name = "inprocess"

    def __init__(self) -> None:
        self.wake = asyncio.Event()

    async def dispatch(self, item_ids: list[int]) -> None:
        if item_ids:
            self.wake.set()

    async def backlog(self) -> int | None:
        return 0


class CeleryDispatcher:
    """Sends one `process_detection_frame` message per item through the Celery broker."""

    name = "celery"

    def __init__(self, app: Celery) -> None:
        self.app = app

    async def dispatch(self, item_ids: list[int]) -> None:
        if not item_ids:
            return
        try:
            await asyncio.to_thread(self._send, item_ids)
        except Exception as exc:  # the broker's client raises many kinds; all mean "not sent"
            log.warning("could not send %d queue items to the broker (%s: %s); the sweeper "
                        "will dispatch them again", len(item_ids), type(exc).__name__, exc)

    async def backlog(self) -> int | None:
        from kombu.exceptions import ChannelError

        try:
            return await asyncio.to_thread(self._queue_length)
        except ChannelError:  # no such queue: Redis drops a list once it is empty
            return 0
        except Exception as exc:  # broker unreachable: unknown
            log.warning("cannot read the broker's queue length (%s: %s)", type(exc).__name__, exc)
            return None

    def _queue_length(self) -> int:
        from framewatch.queue.celery_app import QUEUE_NAME

        with self.app.connection_for_read() as connection:
            declared = connection.default_channel.queue_declare(queue=QUEUE_NAME, passive=True)
            return int(declared.message_count)

    def _send(self, item_ids: list[int]) -> None:
        with self.app.producer_or_acquire() as producer:
            for item_id in item_ids:
                self.app.send_task(PROCESS_TASK, args=[item_id], producer=producer)
