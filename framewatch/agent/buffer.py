"""Frames waiting to be sent, oldest first, bounded: past the bound the oldest is dropped."""

from __future__ import annotations

import asyncio
from collections import deque

from framewatch.agent.frames import OutgoingFrame


class FrameBuffer:
    """A camera's frames between grabbing and sending.

    The sender takes the oldest frame out while it sends it; a frame that could not be sent
    goes back to the front, unless newer frames have filled the buffer meanwhile: then it is
    the oldest one beyond the bound, and is dropped like any other.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.dropped = 0
        self._frames: deque[OutgoingFrame] = deque()
        self._in_flight = 0
        self._changed = asyncio.Condition()

    def __len__(self) -> int:
        return len(self._frames)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def put(self, frame: OutgoingFrame) -> None:
        """Add a new frame, dropping the oldest waiting one if the buffer is full."""
        if len(self._frames) >= self.capacity:
            self._frames.popleft()
            self.dropped += 1
        self._frames.append(frame)
        await self._notify()

    async def take(self) -> OutgoingFrame:
        """The oldest frame, waiting for one; call `done` or `put_back` with it afterwards."""
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._frames))
            self._in_flight += 1
            return self._frames.popleft()

    async def done(self) -> None:
        """The frame taken last was dealt with (sent, or refused for good)."""
        self._in_flight -= 1
        await self._notify()

    async def put_back(self, frame: OutgoingFrame) -> None:
        """The frame taken last could not be sent: first in line again, or dropped when newer
        frames filled the buffer meanwhile."""
        self._in_flight -= 1
        if len(self._frames) >= self.capacity:
            self.dropped += 1
        else:
            self._frames.appendleft(frame)
        await self._notify()

    async def drained(self) -> None:
        """Wait until no frame is waiting or being sent."""
        async with self._changed:
            await self._changed.wait_for(lambda: not self._frames and not self._in_flight)
