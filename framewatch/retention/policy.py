"""Retention policy: how long each kind of data is kept, globally and per camera.

The global windows are `FRAMEWATCH_RETENTION_*_DAYS`; a camera may override each of them
(`retention_*_days` on the camera; 0 keeps forever). Cameras sharing a window are handled
together: one group per distinct override, plus the group of every other camera, which keeps the
global window (and, for events, also covers events that concern no camera).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.core.config import Settings
from framewatch.models import Camera

KINDS = ("detections", "frames", "face_encodings", "events")


@dataclass(frozen=True, slots=True)
class CameraGroup:
    days: int  # 0: keep forever
    # The cameras of the group; None: every camera with no override (the global window).
    cameras: tuple[str, ...] | None
    # All cameras with an override for this kind (what "every other camera" excludes).
    overridden: tuple[str, ...]

    def condition(self, column: Any, *, include_no_camera: bool = False) -> ColumnElement[bool]:
        """SQL selecting rows of this group by their camera column."""
        if self.cameras is not None:
            return column.in_(self.cameras)  # type: ignore[no-any-return]
        others = column.not_in(self.overridden) if self.overridden else column.is_not(None)
        return or_(others, column.is_(None)) if include_no_camera else others


def global_days(settings: Settings, kind: str) -> int:
    return int(getattr(settings, f"retention_{kind}_days"))


async def camera_groups(session: AsyncSession, settings: Settings, kind: str) -> list[CameraGroup]:
    column = getattr(Camera, f"retention_{kind}_days")
    overrides: dict[int, list[str]] = {}
    for camera_id, days in await session.execute(
        select(Camera.id, column).where(column.is_not(None)).order_by(Camera.id)
    ):
        overrides.setdefault(int(days), []).append(camera_id)
    overridden = tuple(sorted(c for cameras in overrides.values() for c in cameras))
    groups = [CameraGroup(days, tuple(cameras), overridden)
              for days, cameras in sorted(overrides.items())]
    groups.append(CameraGroup(global_days(settings, kind), None, overridden))
    return groups


class KindPolicy(BaseModel):
    global_days: int = Field(description="0: kept forever.")
    cameras: dict[str, int] = Field(description="Cameras whose window differs from the global.")


class RetentionPolicy(BaseModel):
    detections: KindPolicy
    frames: KindPolicy = Field(description="Frame images on disk (rows stay with detections).")
    face_encodings: KindPolicy = Field(
        description="Face encodings (biometric) on detections; 0 globally: kept as long as the "
        "detections.")
    events: KindPolicy


async def retention_policy(session: AsyncSession, settings: Settings) -> RetentionPolicy:
    kinds = {}
    for kind in KINDS:
        groups = await camera_groups(session, settings, kind)
        cameras = {c: g.days for g in groups if g.cameras is not None for c in g.cameras}
        kinds[kind] = KindPolicy(global_days=global_days(settings, kind), cameras=cameras)
    return RetentionPolicy(**kinds)
