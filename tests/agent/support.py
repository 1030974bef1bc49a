"""A real framewatch API on 127.0.0.1 for the agent to send to, and helpers to run the agent.

The API runs `framewatch.app.create_app` under uvicorn in a thread, with the fast
fake provider of the queue tests as its default, cameras `gate` and `yard`, and an `agent` key
of both (made with framewatch's own service functions before the first start); it can be
stopped and started again on the same port and database.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy import select

from framewatch.agent.config import AgentConfig
from framewatch.agent.runner import Agent
from framewatch.app import create_app
from framewatch.auth.permissions import Role
from framewatch.auth.service import create_key
from framewatch.cameras.schemas import CameraCreate
from framewatch.cameras.service import create_camera
from framewatch.core.config import Settings
from framewatch.core.database import create_engine, create_session_factory
from framewatch.core.secrets import load_secret_box
from framewatch.models import Frame
from framewatch.providers.schemas import ProviderCreate
from framewatch.providers.service import create_provider
from tests.api_fixtures import make_settings
from tests.queue.scenario import flaky_provider_body
from tests.support.servers import free_port

CAMERAS = ("gate", "yard")
# Generous: the whole suite may share two busy cores.
START_SECONDS = 60.0
SHUTDOWN_SECONDS = 5.0


@dataclass(frozen=True)
class StoredFrame:
    id: int
    camera_id: str
    sha256: str
    width: int
    height: int
    captured_at: Any
    received_at: Any
    storage_path: str


class ApiServer:
    """framewatch on 127.0.0.1:`port`; `stop()` and `start()` keep the port and database."""

    def __init__(self, settings: Settings, port: int | None = None) -> None:
        self.settings = settings
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.agent_key = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Serve the app in a thread of its own; return once it listens."""
        config = uvicorn.Config(create_app(self.settings), host="127.0.0.1", port=self.port,
                                log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=SHUTDOWN_SECONDS)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name=f"api {self.port}", daemon=True)
        thread.start()
        deadline = time.monotonic() + START_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                raise AssertionError(f"the API on port {self.port} did not start")
            time.sleep(0.01)
        self._server, self._thread = server, thread

    def stop(self) -> None:
        """Shut the API down (requests in flight get SHUTDOWN_SECONDS) and wait until it has."""
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(SHUTDOWN_SECONDS + 30)
        if thread.is_alive():
            raise AssertionError(f"the API on port {self.port} did not stop")

    async def set_up(self, provider_url: str) -> None:
        """Before the first start: the fake provider as the default (so the built-in detector is
        never set up, nor warmed up at each start), the cameras, and an agent key of them."""
        engine = create_engine(self.settings.resolved_database_url)
        try:
            async with create_session_factory(engine)() as session:
                await create_provider(
                    session, ProviderCreate.model_validate(flaky_provider_body(provider_url)),
                    load_secret_box(self.settings), actor="test",
                )
                for camera_id in CAMERAS:
                    await create_camera(session, CameraCreate(id=camera_id,
                                                              name=camera_id.title()),
                                        actor="test")
                _, self.agent_key = await create_key(session, name="gate-agent",
                                                     role=Role.AGENT, camera_ids=list(CAMERAS))
                await session.commit()
        finally:
            await engine.dispose()

    async def frames(self, camera_id: str | None = None) -> list[StoredFrame]:
        """The `frames` rows (of one camera), in the order they were stored."""
        engine = create_engine(self.settings.resolved_database_url)
        try:
            async with engine.connect() as connection:
                query = select(Frame.id, Frame.camera_id, Frame.sha256, Frame.width,
                               Frame.height, Frame.captured_at, Frame.received_at,
                               Frame.storage_path).order_by(Frame.id)
                if camera_id is not None:
                    query = query.where(Frame.camera_id == camera_id)
                rows = (await connection.execute(query)).all()
        finally:
            await engine.dispose()
        return [StoredFrame(*row) for row in rows]

    def frame_file(self, frame: StoredFrame) -> Path:
        return self.settings.frames_dir / frame.storage_path


def api_settings(tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    # The agent's frames go to the fake provider; the built-in detector is never needed.
    return make_settings(tmp_path, database_url, identify_faces=False, **overrides)


def agent_config(api_url: str, *cameras: dict[str, Any], **values: Any) -> AgentConfig:
    """A configuration with quick reconnects (a test waits seconds, not minutes)."""
    settings: dict[str, Any] = {"api_url": api_url, "reconnect_initial_seconds": 0.2,
                                "reconnect_max_seconds": 1.0, "cameras": list(cameras)}
    settings.update(values)
    return AgentConfig.model_validate(settings)


@contextlib.asynccontextmanager
async def running(agent: Agent) -> AsyncIterator[asyncio.Task[None]]:
    """Run the agent in this loop; cancelled (and awaited) when the block ends."""
    task = asyncio.create_task(agent.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_until(condition: Callable[[], bool], within: float, what: str,
                     status: Callable[[], Any] | None = None) -> None:
    """Poll `condition` every 20 ms; fail after `within` seconds, showing `status()`."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            shown = f"\nstatus: {status()}" if status is not None else ""
            raise AssertionError(f"not {what} after {within} s{shown}")
        await asyncio.sleep(0.02)


def camera_status(agent: Agent, camera_id: str = "gate") -> dict[str, Any]:
    return next(c for c in agent.status()["cameras"] if c["camera_id"] == camera_id)
