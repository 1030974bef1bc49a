"""One camera: grab at its rate, keep the frames that changed, send them, and keep going."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Any

import httpx

from framewatch.agent.buffer import FrameBuffer
from framewatch.agent.config import CameraConfig
from framewatch.agent.frames import ChangeDetector, GrabbedFrame, OutgoingFrame, to_outgoing
from framewatch.agent.sources import FrameSource, SourceError, open_source, redact
from framewatch.agent.status import CameraStatus
from framewatch.agent.upload import Delivery, FrameUploader

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    initial_seconds: float = 1.0
    max_seconds: float = 30.0


class Backoff:
    """Delays that double from `initial_seconds` up to `max_seconds`, each shortened by up to a
    fifth at random so that cameras that failed together do not all come back at once."""

    def __init__(self, policy: BackoffPolicy) -> None:
        self.policy = policy
        self.failures = 0

    def next_delay(self) -> float:
        base = min(self.policy.max_seconds, self.policy.initial_seconds * 2.0 ** self.failures)
        self.failures += 1
        return base * random.uniform(0.8, 1.0)

    def reset(self) -> None:
        self.failures = 0


class CameraAgent:
    """Runs one camera until it is cancelled or, for a source played once, until its last
    frame is sent."""

    def __init__(self, config: CameraConfig, uploader: FrameUploader, http: httpx.AsyncClient,
                 backoff: BackoffPolicy | None = None, read_timeout_seconds: float = 10.0) -> None:
        self.config = config
        self.uploader = uploader
        self.http = http
        self.backoff = backoff or BackoffPolicy()
        self.read_timeout = read_timeout_seconds
        self.buffer = FrameBuffer(config.buffer_frames)
        self.changes = ChangeDetector(config.change_threshold)
        self.status = CameraStatus(config.camera_id, redact(config.source), config.source_kind)

    @property
    def camera_id(self) -> str:
        return self.config.camera_id

    def snapshot(self) -> dict[str, Any]:
        return self.status.snapshot(len(self.buffer), self.buffer.dropped)

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                sender = tasks.create_task(self._send_forever())
                await self._grab_until_finished()
                await self.buffer.drained()
                sender.cancel()
        finally:
            if self.status.state != "finished":
                self.status.state, self.status.connected = "stopped", False

    # --- grabbing -----------------------------------------------------------------------------

    async def _grab_until_finished(self) -> None:
        """Open the source, stream from it, and after a failure open it again after a back-off;
        return when a source played once has ended."""
        backoff = Backoff(self.backoff)
        while True:
            source = open_source(self.config, self.http, self.read_timeout)
            try:
                await source.open()
                self.status.source_connected()
                log.info("camera %s: reading %s", self.camera_id, source.description)
                if await self._stream(source, backoff):
                    self.status.state, self.status.connected = "finished", False
                    log.info("camera %s: %s has ended", self.camera_id, source.description)
                    return
            except SourceError as exc:
                message = str(exc)
            except Exception as exc:  # a bug or an OpenCV error must not end the other cameras
                log.exception("camera %s: unexpected error", self.camera_id)
                message = f"unexpected error: {exc!r}"
            finally:
                await source.close()
            delay = backoff.next_delay()
            self.status.source_failed(message, delay)
            log.warning("camera %s: %s; reconnecting in %.1f s", self.camera_id, message, delay)
            await asyncio.sleep(delay)

    async def _stream(self, source: FrameSource, backoff: Backoff) -> bool:
        """Read a frame per tick until the source fails (SourceError) or ends (True)."""
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.config.fps
        next_tick = loop.time()
        while True:
            frame = await source.read()
            if frame is None:
                return True
            backoff.reset()
            outgoing = await asyncio.to_thread(self._keep_if_changed, frame)
            self.status.grabbed_frame(changed=outgoing is not None)
            if outgoing is not None:
                await self.buffer.put(outgoing)
            next_tick += interval
            delay = next_tick - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_tick = loop.time()  # behind (a slow source): no burst to catch up

    def _keep_if_changed(self, frame: GrabbedFrame) -> OutgoingFrame | None:
        """In a worker thread: the change test, then the JPEG encoding of frames to send."""
        if not self.changes.admit(frame.image):
            return None
        return to_outgoing(frame, self.config.jpeg_quality)

    # --- sending ------------------------------------------------------------------------------

    async def _send_forever(self) -> None:
        backoff = Backoff(self.backoff)
        while True:
            frame = await self.buffer.take()
            try:
                delivery = await self.uploader.send(self.camera_id, frame, self.config.mode)
            except Exception as exc:  # never lose the frame to a bug in an answer's handling
                log.exception("camera %s: sending a frame failed", self.camera_id)
                delivery = Delivery("retry", f"unexpected error: {exc!r}")
            wait = await self._settle(frame, delivery, backoff)
            if wait:
                await asyncio.sleep(wait)

    async def _settle(self, frame: OutgoingFrame, delivery: Delivery, backoff: Backoff) -> float:
        """Count the outcome, return or drop the frame; the seconds to wait before the next."""
        if delivery.outcome == "sent":
            await self.buffer.done()
            self.status.delivered()
            backoff.reset()
            return 0.0
        self.status.api_reachable = delivery.reachable
        self.status.error(delivery.error or delivery.outcome)
        if delivery.outcome == "rejected":
            await self.buffer.done()
            self.status.rejected += 1
            log.warning("camera %s: frame refused: %s", self.camera_id, delivery.error)
            return backoff.next_delay() if delivery.back_off else 0.0
        await self.buffer.put_back(frame)
        if delivery.rate_limited:
            self.status.rate_limited += 1
        wait = delivery.wait if delivery.wait is not None else backoff.next_delay()
        log.warning("camera %s: %s; retrying in %.1f s (%d frames buffered)", self.camera_id,
                    delivery.error, wait, len(self.buffer))
        return wait
