"""SIGTERM to `framewatch serve` (a real process, JSON logs): WebSockets are closed with 1012 and
a reason, the request in flight and the queue item in flight both finish, the process ends cleanly,
and every log line it wrote is a JSON object carrying its request's id."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from framewatch.live.ws import SHUTDOWN_CLOSE_CODE, SHUTDOWN_REASON
from tests.api_fixtures import ADMIN_KEY, make_settings
from tests.live.clients import QUIET
from tests.queue.scenario import flaky_provider_body, small_frame
from tests.support.processes import ProcessGroup, framewatch_env
from tests.support.servers import free_port, serve_app

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@dataclass
class HeldProvider:
    """DeepStack's wire format; every call is held until `release` is set."""

    started: int = 0
    release: threading.Event = field(default_factory=threading.Event)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/vision/detection", self._detect, methods=["POST"])])

    async def _detect(self, request: Request) -> JSONResponse:
        await request.form()
        self.started += 1
        await asyncio.to_thread(self.release.wait, 60)
        person = {"label": "person", "confidence": 0.9,
                  "x_min": 10, "y_min": 10, "x_max": 30, "y_max": 40}
        return JSONResponse({"success": True, "predictions": [person], "duration": 0})


@pytest.fixture
def held() -> Iterator[tuple[HeldProvider, str]]:
    provider = HeldProvider()
    with serve_app(provider.app()) as url:
        try:
            yield provider, url
        finally:
            provider.release.set()  # before the server stops: it waits for open calls


async def wait_until(condition: object, what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_sigterm_finishes_what_is_in_flight_and_closes_websockets_with_a_reason(
    tmp_path: Path, sqlite_url: str, held: tuple[HeldProvider, str]
) -> None:
    provider, provider_url = held
    settings = make_settings(tmp_path, sqlite_url, log_format="json", log_level="INFO",
                             shutdown_grace_seconds=30, **QUIET)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    processes = ProcessGroup(tmp_path / "logs", framewatch_env(settings, port=port))
    serve = processes.start("serve", "serve")
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
            await wait_until(lambda: _answers(base_url), "the server to start", within=60)
            created = await http.post("/api/v1/providers", headers=ADMIN,
                                      json=flaky_provider_body(provider_url))
            assert created.status_code == 201, created.text
            camera = await http.post("/api/v1/cameras", headers=ADMIN,
                                     json={"id": "gate", "name": "Gate"})
            assert camera.status_code == 201, camera.text

            ws_url = f"ws://127.0.0.1:{port}/api/v1/detections/ws?token={ADMIN_KEY}"
            async with connect(ws_url, open_timeout=10) as ws:
                await ws.send(json.dumps({"type": "subscribe"}))
                assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "subscribed"

                in_flight = asyncio.create_task(http.post(
                    "/api/v1/detections/send-frame",
                    files={"image": ("a.jpg", small_frame(1), "image/jpeg")},
                    data={"camera_id": "gate"}, headers={**ADMIN, "X-Request-ID": "sync-1"}))
                queued = await http.post(
                    "/api/v1/detections/send-frame",
                    files={"image": ("b.jpg", small_frame(2), "image/jpeg")},
                    data={"camera_id": "gate", "mode": "async"},
                    headers={**ADMIN, "X-Request-ID": "async-1"})
                assert queued.status_code == 202, queued.text
                item_id = queued.json()["queue_item_id"]
                # Both provider calls are in flight: the request's and the worker's.
                await wait_until(lambda: provider.started == 2, "both provider calls")

                serve.kill(signal.SIGTERM)
                with pytest.raises(ConnectionClosed) as closed:
                    async with asyncio.timeout(20):
                        while True:
                            await ws.recv()
                assert closed.value.rcvd is not None
                assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
                    SHUTDOWN_CLOSE_CODE, SHUTDOWN_REASON)

            # The server is draining, not gone: release the provider and the request finishes.
            await asyncio.sleep(0.5)
            assert serve.alive()
            provider.release.set()
            answer = await asyncio.wait_for(in_flight, 30)
            assert answer.status_code == 200, answer.text
            assert [d["label"] for d in answer.json()["detections"]] == ["person"]
        # uvicorn shuts down cleanly, then ends by the signal it caught (as process managers
        # expect of a process they sent SIGTERM).
        assert await asyncio.to_thread(serve.popen.wait, 40) in (0, -signal.SIGTERM)
    finally:
        processes.stop_all()

    database = Path(settings.resolved_database_url.split("///", 1)[1])
    with sqlite3.connect(database) as connection:
        status, owner = connection.execute(
            "SELECT status, lease_owner FROM detection_processing_queue WHERE id = ?",
            (item_id,)).fetchone()
    assert (status, owner) == ("done", None)  # the worker finished it within the grace

    lines = [line for line in serve.log_path.read_text().splitlines() if line.strip()]
    # Standard output has the two lines `serve` announces itself with; the rest is the log.
    announced = [line for line in lines if not line.startswith("{")]
    assert [line.split(" ")[0] for line in announced] == ["framewatch", "admin"], announced
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert records, serve.output()
    assert all({"time", "level", "logger", "message", "request_id"} <= set(r) for r in records)
    access = [r for r in records if r["logger"] == "uvicorn.access"
              and r["request_id"] == "sync-1"]
    assert access and "send-frame" in access[0]["message"], records
    messages = [r["message"] for r in records]
    assert "Application shutdown complete." in messages
    assert all("color_message" not in r for r in records)


def _answers(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
