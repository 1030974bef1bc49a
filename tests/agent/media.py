"""Things for the agent to read: videos made from the demo frames, a camera-like HTTP server
(MJPEG stream and snapshot), and a GStreamer RTSP server, all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from framewatch.agent.demo import FRAMES_DIR
from tests.support.servers import free_port, serve_app

Image = npt.NDArray[np.uint8]
DEMO_FRAMES = sorted(FRAMES_DIR.glob("street-*.jpg"))
SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SCRIPT = Path(__file__).with_name("rtsp_server.py")
RTSP_PACKAGES = ("python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base "
                 "gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly")


def demo_image(index: int) -> Image:
    return np.asarray(cv2.imread(str(DEMO_FRAMES[index])), dtype=np.uint8)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_video(path: Path, images: list[Image], fps: float = 10.0) -> Path:
    """A Motion-JPEG AVI (the codec every OpenCV build can write)."""
    height, width = images[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for image in images:
        writer.write(image)
    writer.release()
    return path


def nearest_demo_frame(image: Image) -> int:
    """The index of the demo frame `image` shows (after re-encodings)."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.int16)
    distances = [float(np.abs(grey - cv2.cvtColor(demo_image(i), cv2.COLOR_BGR2GRAY)
                              .astype(np.int16)).mean()) for i in range(len(DEMO_FRAMES))]
    return int(np.argmin(distances))


def noisy_copies(image: Image, count: int, sigma: float, seed: int = 7) -> list[Image]:
    """`count` copies of one picture with sensor-like noise: a static scene as a camera films it."""
    rng = np.random.default_rng(seed)
    copies = []
    for _ in range(count):
        noise = rng.normal(0, sigma, image.shape).round()
        copies.append(np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    return copies


class CameraServer:
    """An IP camera's HTTP side: `/video.mjpg`, an endless MJPEG stream of the demo frames at
    10 fps, and `/snapshot.jpg`, the picture in `snapshot`. `stop()` ends the streams and the
    server (the camera goes away); `start()` brings it back on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.snapshot = DEMO_FRAMES[0].read_bytes()
        self._frames = [path.read_bytes() for path in DEMO_FRAMES]
        self._stopping = threading.Event()
        self._server: AbstractContextManager[str] | None = None
        self.app = Starlette(routes=[Route("/video.mjpg", self._stream),
                                     Route("/snapshot.jpg", self._snapshot)])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._stopping.clear()
        self._server = serve_app(self.app, self.port)
        self._server.__enter__()

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.__exit__(None, None, None)
            self._server = None

    async def _snapshot(self, request: Request) -> Response:
        return Response(self.snapshot, media_type="image/jpeg")

    async def _stream(self, request: Request) -> StreamingResponse:
        async def parts() -> AsyncIterator[bytes]:
            index = 0
            while not self._stopping.is_set():
                frame = self._frames[index % len(self._frames)]
                yield (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                       + str(len(frame)).encode() + b"\r\n\r\n" + frame + b"\r\n")
                index += 1
                await asyncio.sleep(0.1)

        return StreamingResponse(parts(), media_type="multipart/x-mixed-replace; boundary=frame")


@contextlib.contextmanager
def camera_server() -> Iterator[CameraServer]:
    server = CameraServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def require_rtsp_server() -> None:
    """Skip without GStreamer's RTSP server, or fail when FRAMEWATCH_TEST_RTSP is set (CI sets
    it, and its `.ci/run` installs the packages)."""
    probe = ("import gi; gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
             "assert Gst.ElementFactory.find('x264enc') and Gst.ElementFactory.find('avidemux')")
    missing = not Path(SYSTEM_PYTHON).exists() or subprocess.run(
        [SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=60, check=False
    ).returncode != 0
    if missing:
        message = (f"the RTSP tests need GStreamer's RTSP server, run by {SYSTEM_PYTHON}: "
                   f"apt-get install {RTSP_PACKAGES}")
        if os.environ.get("FRAMEWATCH_TEST_RTSP"):
            pytest.fail(f"FRAMEWATCH_TEST_RTSP is set but {message}")
        pytest.skip(message)


class RtspServer:
    """tests/agent/rtsp_server.py in a process of its own, stopped and started at will."""

    def __init__(self, video: Path, log_dir: Path) -> None:
        self.video = video
        self.port = free_port()
        self.log_path = log_dir / f"rtsp-{self.port}.log"
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/street"

    def start(self, timeout: float = 60.0) -> None:
        log = self.log_path.open("a")
        process = subprocess.Popen(
            [SYSTEM_PYTHON, str(RTSP_SCRIPT), str(self.port), str(self.video)],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
        )
        log.close()
        self.process = process
        stdout = process.stdout
        assert stdout is not None
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not ready or not ready[0].startswith("ready"):
            self.stop()
            raise AssertionError(f"the RTSP server did not start:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        """Kill it: to the agent, the camera is gone at once."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None


def copy_frames(target: Path, indexes: range) -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(DEMO_FRAMES[i], target / DEMO_FRAMES[i].name)) for i in indexes]
