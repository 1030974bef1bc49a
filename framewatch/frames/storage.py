"""Frames on disk, content-addressed: the same bytes are stored once, under their sha256."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from framewatch.core.errors import NotFound

_EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp"}


class FrameStore:
    """Stores frame bytes under `<root>/<ab>/<cd>/<sha256>.<ext>`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @staticmethod
    def relative_path(sha256: str, content_type: str) -> str:
        return f"{sha256[:2]}/{sha256[2:4]}/{sha256}{_EXTENSIONS.get(content_type, '.bin')}"

    async def save(self, data: bytes, sha256: str, content_type: str) -> str:
        """Store the bytes (once) and return their path relative to the root."""
        relative = self.relative_path(sha256, content_type)
        await asyncio.to_thread(self._write_once, self.root / relative, data)
        return relative

    async def read(self, relative: str) -> bytes:
        path = self._resolve(relative)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise NotFound("the frame's image is no longer stored") from None

    async def delete(self, relative: str) -> None:
        await self.delete_many([relative])

    async def delete_many(self, relatives: list[str]) -> None:
        """Delete the files (those already gone are skipped), all in one worker thread."""
        await asyncio.to_thread(self._delete_all, relatives)

    def _resolve(self, relative: str) -> Path:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise NotFound("no such frame image")
        return path

    def _delete_all(self, relatives: list[str]) -> None:
        for relative in relatives:
            self._resolve(relative).unlink(missing_ok=True)

    @staticmethod
    def _write_once(path: Path, data: bytes) -> None:
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write to a temporary file and rename, so a reader never sees half a frame.
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
