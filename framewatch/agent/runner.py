"""The agent: every camera of one configuration in one process, and its status reports."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from framewatch import __version__
from framewatch.agent.camera import BackoffPolicy, CameraAgent
from framewatch.agent.config import AgentConfig
from framewatch.agent.status import iso, summary
from framewatch.agent.status_endpoint import StatusEndpoint
from framewatch.agent.upload import FrameUploader

log = logging.getLogger("framewatch.agent")


class Agent:
    """Runs the cameras of `config`, each as its own task (grabbing in its own thread), sending
    with `key`. `transport` replaces the network (the demo camera talks to its own app)."""

    def __init__(self, config: AgentConfig, key: str, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 read_timeout_seconds: float = 10.0) -> None:
        self.config = config
        self.started_at = datetime.now(UTC)
        self._started = time.monotonic()
        self._client = httpx.AsyncClient(transport=transport, follow_redirects=False,
                                         headers={"User-Agent": f"framewatch-agent/{__version__}"})
        policy = BackoffPolicy(config.reconnect_initial_seconds, config.reconnect_max_seconds)
        self.cameras = [
            CameraAgent(camera, FrameUploader(self._client, config.api_url, key), self._client,
                        policy, read_timeout_seconds)
            for camera in config.cameras
        ]
        self.endpoint = (StatusEndpoint(self.status, config.status_port)
                         if config.status_port is not None else None)

    def status(self) -> dict[str, Any]:
        return {
            "agent": f"framewatch-agent/{__version__}",
            "api_url": self.config.api_url,
            "started_at": iso(self.started_at),
            "uptime_seconds": round(time.monotonic() - self._started, 1),
            "cameras": [camera.snapshot() for camera in self.cameras],
        }

    def log_status(self) -> None:
        for camera in self.status()["cameras"]:
            log.info("%s", summary(camera))

    async def run(self) -> None:
        """Run until cancelled, or until every camera has finished (sources played once)."""
        try:
            if self.endpoint is not None:
                await self.endpoint.start()
                log.info("status on %s", self.endpoint.url)
            reporter = asyncio.create_task(self._report_periodically())
            try:
                async with asyncio.TaskGroup() as tasks:
                    for camera in self.cameras:
                        tasks.create_task(camera.run(), name=f"camera {camera.camera_id}")
            finally:
                reporter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reporter
                self.log_status()
        finally:
            if self.endpoint is not None:
                await self.endpoint.close()
            await self._client.aclose()

    async def _report_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.config.log_interval_seconds)
            self.log_status()
