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


class LocalDispatcher:
    """Wakes the in-process worker of this process (the embedded default)."""

    name = "inprocess"

    def __init__(self) -> None:
        self.wake = asyncio.Event()

    async def dispatch(self, item_ids: list[int]) -> None:
        if item_ids:
            self.wake.set()


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

    def _send(self, item_ids: list[int]) -> None:
        with self.app.producer_or_acquire() as producer:
            for item_id in item_ids:
                self.app.send_task(PROCESS_TASK, args=[item_id], producer=producer)
