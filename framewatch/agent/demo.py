"""The demo camera of `make run` (FRAMEWATCH_DEMO=1): a newcomer sees detections appear
without a camera of their own.

At start, `framewatch serve` makes sure camera `demo` exists, gives itself a fresh `agent` key
scoped to it (rotated at each start, kept in memory only), and runs the camera agent on the
street-scene frames shipped in `framewatch/demo/frames/`, looped. The agent posts through the
app's own ASGI interface rather than a socket: the same send-frame path (authentication, rate
limits, validation) without needing to know the address and port the server listens on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from framewatch.agent.config import AgentConfig, CameraConfig
from framewatch.agent.runner import Agent
from framewatch.auth.permissions import Role
from framewatch.auth.service import create_key, rotate_key
from framewatch.cameras.schemas import CameraCreate
from framewatch.cameras.service import create_camera
from framewatch.models import ApiKey, Camera

log = logging.getLogger(__name__)

DEMO_CAMERA_ID = "demo"
DEMO_KEY_NAME = "demo-camera-agent"
FRAMES_DIR = Path(__file__).resolve().parent.parent / "demo" / "frames"
# The frames are every 5th of a 10 fps video: 2 fps replays the street in real time.
DEMO_FPS = 2.0
# When the detector is slower than 2 fps, a short queue keeps the detections close to what the
# street shows now, instead of a minute behind.
DEMO_BUFFER_FRAMES = 4
STATUS_LOG_SECONDS = 60.0
# The demo is a first look, not a load: left running for days, a looping camera would add about
# 170,000 frames a day to the database and keep a core busy with the detector.
DEMO_RUN_SECONDS = 15 * 60.0


@dataclass
class DemoCamera:
    agent: Agent
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def demo_key(session: AsyncSession) -> str | None:
    """Camera `demo` (created if missing) and a new secret for its agent key; None, with a
    warning, when an administrator disabled the camera or revoked or changed the key."""
    camera = await session.get(Camera, DEMO_CAMERA_ID)
    if camera is None:
        await create_camera(session, CameraCreate(
            id=DEMO_CAMERA_ID, name="Demo street",
            location="OpenCV's vtest.avi street scene, shipped with framewatch",
        ), actor="demo")
    elif not camera.enabled:
        log.warning("camera %r is disabled: the demo camera does not run", DEMO_CAMERA_ID)
        return None
    row = await session.scalar(select(ApiKey).where(ApiKey.name == DEMO_KEY_NAME))
    if row is None:
        _, key = await create_key(session, name=DEMO_KEY_NAME, role=Role.AGENT,
                                  camera_ids=[DEMO_CAMERA_ID], actor="demo")
        return key
    if row.revoked_at is not None or row.role != Role.AGENT or row.camera_ids != [DEMO_CAMERA_ID]:
        log.warning("API key %r is revoked or no longer an agent key of camera %r: the demo "
                    "camera does not run (set FRAMEWATCH_DEMO=0 to stop trying)",
                    DEMO_KEY_NAME, DEMO_CAMERA_ID)
        return None
    # Only the key's hash is stored, so the last start's secret is gone: make a new one.
    _, key = await rotate_key(session, row.id, actor="demo")
    return key


async def start_demo_camera(app: Any, sessions: async_sessionmaker[AsyncSession]
                            ) -> DemoCamera | None:
    """Start the demo camera sending to `app` (the running ASGI app)."""
    async with sessions() as session:
        key = await demo_key(session)
        await session.commit()
    if key is None:
        return None
    camera = CameraConfig(camera_id=DEMO_CAMERA_ID, source=str(FRAMES_DIR), kind="folder",
                          fps=DEMO_FPS, loop=True, buffer_frames=DEMO_BUFFER_FRAMES)
    config = AgentConfig(api_url="http://framewatch.demo", cameras=[camera],
                         log_interval_seconds=STATUS_LOG_SECONDS)
    agent = Agent(config, key, transport=httpx.ASGITransport(app=app))
    task = asyncio.create_task(_run_for(agent, DEMO_RUN_SECONDS), name="demo camera")
    log.info("demo camera %r: sending the street scene in %s at %g fps for %g minutes "
             "(FRAMEWATCH_DEMO=0 turns it off)", DEMO_CAMERA_ID, FRAMES_DIR, DEMO_FPS,
             DEMO_RUN_SECONDS / 60)
    return DemoCamera(agent, task)


async def _run_for(agent: Agent, seconds: float) -> None:
    try:
        await asyncio.wait_for(agent.run(), seconds)
    except TimeoutError:
        log.info("demo camera %r stopped after %g minutes; restart framewatch to replay it",
                 DEMO_CAMERA_ID, seconds / 60)
