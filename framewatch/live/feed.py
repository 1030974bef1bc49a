"""The live feed of one process: committed messages out (outbox → log), messages in (log → hub),
and the cache entries that new detections make stale."""

from __future__ import annotations

import asyncio
from typing import Any

from framewatch.live.bus import LiveLog, Replay
from framewatch.live.cache import LiveCache
from framewatch.live.hub import Hub
from framewatch.live.outbox import Outbox, Outgoing

CACHE_LIVE = "live"
CACHE_STATE = "state"
ALL_CAMERAS = "*"


class LiveFeed:
    def __init__(self, log: LiveLog, cache: LiveCache) -> None:
        self.log = log
        self.cache = cache
        self.hub = Hub()
        self.outbox = Outbox(self._publish)
        self._started = False

    async def start(self) -> None:
        """Deliver the stream to this process's WebSocket clients (API processes only)."""
        if not self._started:
            await self.log.start(self.hub.deliver)
            self._started = True

    async def replay(self, after_id: int) -> Replay:
        return await self.log.replay(after_id)

    async def close(self) -> None:
        await self.outbox.close()
        await self.log.close()

    def stats(self) -> dict[str, Any]:
        return {**self.hub.stats(), "published": self.log.published,
                "publish_failures": self.log.failed, "backend": self.log.name}

    async def _publish(self, messages: list[Outgoing]) -> None:
        cameras = {m.camera_id for m in messages if m.type == "detection" and m.camera_id}
        # Invalidate first: a client that reacts to the message must not read the old view.
        # Together, not one after the other: under load each Redis round trip also waits for a
        # turn of the event loop (a fan-out to 1,000 clients takes tens of ms), and five of them
        # in a row per frame fell behind 20 frames a second.
        bumps = [self.cache.bump(kind, camera_id)
                 for camera_id in cameras for kind in (CACHE_LIVE, CACHE_STATE)]
        if cameras:
            bumps.append(self.cache.bump(CACHE_LIVE, ALL_CAMERAS))
        await asyncio.gather(*bumps)
        await self.log.publish([(m.type, m.camera_id, m.body) for m in messages])
