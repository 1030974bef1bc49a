"""Streams (RTSP, HTTP/MJPEG…) and video files through OpenCV's FFmpeg backend.

OpenCV's reads block, so each capture is read by a thread of its own that keeps grabbing (a
live stream must be drained, or FFmpeg's buffer fills and frames arrive late) and decodes to
pixels only the frames the camera asks for. The asyncio side never waits on OpenCV.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable

import cv2
import numpy as np

from framewatch.agent.frames import GrabbedFrame
from framewatch.agent.sources import SourceError, now, redact

log = logging.getLogger(__name__)

OPEN_TIMEOUT_SECONDS = 10.0
# Applied to every capture unless OPENCV_FFMPEG_CAPTURE_OPTIONS is already set: RTSP over TCP
# (UDP loses packets on busy or wireless links and rarely crosses a firewall), and one second
# of stream probing before the first frame instead of FFmpeg's five.
FFMPEG_CAPTURE_OPTIONS = "rtsp_transport;tcp|analyzeduration;1000000"
FALLBACK_FPS = 25.0

Outcome = GrabbedFrame | SourceError | None
Deliver = Callable[[Outcome], None]


class CaptureSource:
    """A stream (`is_file=False`) or a video file played at its own frame rate, replayed from
    the start when it ends if `loop`."""

    def __init__(self, url: str, *, is_file: bool, loop: bool,
                 read_timeout_seconds: float = 10.0) -> None:
        self.url = url
        self.is_file = is_file
        self.loop = loop
        self.read_timeout = read_timeout_seconds
        self.description = redact(url)
        self._reader: _Reader | None = None

    async def open(self) -> None:
        reader = _Reader(self.url, self.description, self.is_file, self.loop, self.read_timeout)
        await asyncio.to_thread(reader.open)
        self._reader = reader
        reader.start()

    async def read(self) -> GrabbedFrame | None:
        if self._reader is None:
            raise SourceError(f"{self.description} is not open")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Outcome] = loop.create_future()

        def deliver(outcome: Outcome) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, waiter, outcome)

        self._reader.request(deliver)
        # The reader gives up on a silent stream after read_timeout; this is a second guard.
        try:
            outcome = await asyncio.wait_for(waiter, self.read_timeout + 5.0)
        except TimeoutError:
            raise SourceError(f"no frame from {self.description} in "
                              f"{self.read_timeout + 5.0:g} s") from None
        if isinstance(outcome, SourceError):
            raise outcome
        return outcome

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.stop()
            await asyncio.to_thread(reader.join, self.read_timeout + 1.0)


def _settle(waiter: asyncio.Future[Outcome], outcome: Outcome) -> None:
    if not waiter.done():
        waiter.set_result(outcome)


class _Reader:
    """The thread that owns one cv2.VideoCapture: opens it, grabs, and releases it."""

    def __init__(self, url: str, description: str, is_file: bool, loop: bool,
                 read_timeout: float) -> None:
        self.url = url
        self.description = description
        self.is_file = is_file
        self.loop = loop
        self.read_timeout = read_timeout
        self._capture: cv2.VideoCapture | None = None
        self._interval = 1.0 / FALLBACK_FPS
        self._lock = threading.Lock()
        self._waiters: list[Deliver] = []
        self._ended = False
        self._end_outcome: Outcome = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"grab {description}",
                                        daemon=True)

    def _new_capture(self) -> cv2.VideoCapture:
        os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", FFMPEG_CAPTURE_OPTIONS)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(OPEN_TIMEOUT_SECONDS * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout * 1000)]
        capture = cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)
        if not capture.isOpened():
            capture.release()
            what = "the video file" if self.is_file else "the stream"
            raise SourceError(f"cannot open {what} {self.description}")
        return capture

    def open(self) -> None:
        """Open the capture (blocks up to the open timeout); SourceError when it cannot."""
        capture = self._new_capture()
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self._interval = 1.0 / (fps if 0.5 <= fps <= 240 else FALLBACK_FPS)
        self._capture = capture

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the reader of %s is still blocked in OpenCV", self.description)
        elif self._capture is not None and not self._thread.ident:
            self._capture.release()  # opened, never started

    def request(self, deliver: Deliver) -> None:
        """Have the next grabbed frame (or how the capture ended) passed to `deliver`."""
        with self._lock:
            if not self._ended:
                self._waiters.append(deliver)
                return
        deliver(self._end_outcome)

    def _end(self, outcome: Outcome) -> None:
        with self._lock:
            self._ended, self._end_outcome = True, outcome
            waiters, self._waiters = self._waiters, []
        for deliver in waiters:
            deliver(outcome)

    def _run(self) -> None:
        try:
            self._end(self._grab_until_done())
        except Exception as exc:  # cv2.error and the like: this capture is done for
            log.exception("reading %s failed", self.description)
            self._end(SourceError(f"reading {self.description} failed: {exc}"))
        finally:
            if self._capture is not None:
                self._capture.release()

    def _grab_until_done(self) -> Outcome:
        capture = self._capture
        assert capture is not None
        started, index = time.monotonic(), 0
        while not self._stopping.is_set():
            if self.is_file:
                # A file is played at its own frame rate, as a camera would deliver it.
                delay = started + index * self._interval - time.monotonic()
                if delay > 0 and self._stopping.wait(delay):
                    break
            if not capture.grab():
                if not self.is_file:
                    return SourceError(f"the stream {self.description} stopped sending frames")
                if index == 0:
                    return SourceError(f"the video file {self.description} has no frames")
                if not self.loop:
                    return None
                # Reopening is the one rewind every container and codec supports.
                capture.release()
                capture = self._capture = self._new_capture()
                started, index = time.monotonic(), 0
                continue
            index += 1
            self._hand_out(capture)
        return SourceError(f"{self.description} was closed")

    def _hand_out(self, capture: cv2.VideoCapture) -> None:
        with self._lock:
            waiters, self._waiters = self._waiters, []
        if not waiters:
            return
        ok, image = capture.retrieve()
        if not ok or image is None:
            with self._lock:  # a frame that does not decode: they get the next one
                self._waiters[:0] = waiters
            return
        frame = GrabbedFrame(np.asarray(image, dtype=np.uint8), now())
        for deliver in waiters:
            deliver(frame)
