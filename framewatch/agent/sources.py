"""Where frames come from: what every source offers, folders of images and snapshot URLs.

Streams and video files (read through OpenCV's FFmpeg backend) are in `capture.py`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx

from framewatch.agent.config import CameraConfig
from framewatch.agent.frames import GrabbedFrame, decode_image
from framewatch.frames.images import sniff_content_type

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
SNAPSHOT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class SourceError(Exception):
    """The source gives no frames now (unreachable, dropped, unreadable); the camera reconnects
    after a back-off."""


class FrameSource(Protocol):
    """A camera's frames. `read` returns the next frame, or None once a source played once has
    ended; it raises SourceError when the source fails."""

    description: str

    async def open(self) -> None: ...

    async def read(self) -> GrabbedFrame | None: ...

    async def close(self) -> None: ...


def redact(source: str) -> str:
    """The source without the password a camera URL often carries (for logs and status)."""
    parts = urlsplit(source)
    if parts.password is None:
        return source
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def now() -> datetime:
    return datetime.now(UTC)


def open_source(config: CameraConfig, http: httpx.AsyncClient,
                read_timeout_seconds: float = 10.0) -> FrameSource:
    """The source a camera's configuration names (not opened yet)."""
    kind = config.source_kind
    if kind == "folder":
        return FolderSource(Path(config.source), loop=config.loop)
    if kind == "snapshot":
        return SnapshotSource(config.source, http)
    from framewatch.agent.capture import CaptureSource

    return CaptureSource(config.source, is_file=kind == "file", loop=config.loop,
                         read_timeout_seconds=read_timeout_seconds)


class FolderSource:
    """The images of a folder in name order, one per read; from the start again at the end when
    `loop`, else the source ends. The folder is listed anew at each pass, so images added to it
    are picked up."""

    def __init__(self, folder: Path, *, loop: bool) -> None:
        self.folder = folder
        self.loop = loop
        self.description = str(folder)
        self._pending: list[Path] = []
        self._passes = 0

    def _list(self) -> list[Path]:
        try:
            return sorted(p for p in self.folder.iterdir()
                          if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        except OSError as exc:
            raise SourceError(f"cannot list the folder {self.folder}: {exc.strerror}") from None

    async def open(self) -> None:
        self._pending = await asyncio.to_thread(self._list)
        if not self._pending:
            raise SourceError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {self.folder}")
        self._passes = 1

    async def read(self) -> GrabbedFrame | None:
        while True:
            if not self._pending:
                if not self.loop:
                    return None
                self._pending = await asyncio.to_thread(self._list)
                self._passes += 1
                if not self._pending:
                    raise SourceError(f"the folder {self.folder} has no images any more")
            path = self._pending.pop(0)
            frame = await asyncio.to_thread(_read_image_file, path)
            if frame is not None:
                return frame
            # An unreadable file (half written, not an image) is passed over, not fatal.

    async def close(self) -> None:
        self._pending = []


def _read_image_file(path: Path) -> GrabbedFrame | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    image = decode_image(data)
    if image is None:
        return None
    content_type = sniff_content_type(data)
    return GrabbedFrame(image, now(), data if content_type else None,
                        content_type or "image/jpeg")


class SnapshotSource:
    """A URL that answers each GET with one picture (a camera's snapshot.jpg); credentials in
    the URL are sent as HTTP basic auth.

    Opening fetches the first picture (and `read` hands it out first): a camera that does not
    answer is not "connected", and a reconnect is only counted once it answers again.
    """

    def __init__(self, url: str, http: httpx.AsyncClient) -> None:
        self.url = url
        self.http = http
        self.description = redact(url)
        self._first: GrabbedFrame | None = None

    async def open(self) -> None:
        self._first = await self._fetch()

    async def read(self) -> GrabbedFrame | None:
        first, self._first = self._first, None
        return first if first is not None else await self._fetch()

    async def _fetch(self) -> GrabbedFrame:
        try:
            response = await self.http.get(self.url, timeout=SNAPSHOT_TIMEOUT)
        except httpx.HTTPError as exc:
            raise SourceError(f"snapshot {self.description}: {describe_http_error(exc)}") from None
        if response.status_code != 200:
            raise SourceError(f"snapshot {self.description}: HTTP {response.status_code}")
        data = response.content
        image = await asyncio.to_thread(decode_image, data)
        if image is None:
            raise SourceError(f"snapshot {self.description}: the answer is not an image "
                              f"({response.headers.get('content-type', 'no content type')})")
        content_type = sniff_content_type(data)
        return GrabbedFrame(image, now(), data if content_type else None,
                            content_type or "image/jpeg")

    async def close(self) -> None:
        self._first = None


def describe_http_error(exc: httpx.HTTPError) -> str:
    """`connection refused`-style text: httpx's own message, or the exception's name when
    it has none (timeouts often do not)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
