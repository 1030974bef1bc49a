"""Shared pieces of the webhook tests: a real receiver (a Starlette app served on 127.0.0.1)
whose answers can be scripted, a DeepStack-format provider that finds a person and a car, the
app with short delivery timings, and helpers to wait for and read deliveries."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from framewatch.models import DetectionEventLog
from tests.api.helpers import add_camera
from tests.api_fixtures import Api, make_settings, start_api
from tests.queue.scenario import flaky_provider_body, small_frame
from tests.support.servers import serve_app

T = TypeVar("T")

# Deliveries are looked for 10 times a second and retried after 0.1–0.4 s.
FAST: dict[str, Any] = {
    "webhook_poll_seconds": 0.1,
    "webhook_retry_base_seconds": 0.2,
    "webhook_retry_max_seconds": 0.4,
    "webhook_max_attempts": 4,
    "webhook_timeout_seconds": 5,
    "worker_poll_seconds": 0.1,
    # The other periodic jobs would only race the scenarios.
    "provider_check_seconds": 3600,
    "stats_interval_seconds": 3600,
    "cleanup_interval_seconds": 3600,
}


@dataclass
class Hit:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    """Records every POST to `/hook` and answers `status` — or the next of `script` first."""

    status: int = 200
    script: deque[int] = field(default_factory=deque)
    hits: list[Hit] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        with self._lock:
            self.hits.append(Hit({k.lower(): v for k, v in request.headers.items()}, body,
                                 time.monotonic()))
            status = self.script.popleft() if self.script else self.status
        if status >= 300:
            return JSONResponse({"error": "receiver says no"}, status_code=status)
        return JSONResponse({"ok": True}, status_code=status)

    def of_type(self, event_type: str) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.headers["x-framewatch-event"] == event_type]


@contextmanager
def receiving(receiver: Receiver | None = None, port: int | None = None
              ) -> Iterator[tuple[Receiver, str]]:
    receiver = receiver or Receiver()
    with serve_app(receiver.app(), port) as base:
        yield receiver, f"{base}/hook"


@dataclass
class TwoThings:
    """A DeepStack-format provider that finds a person and a car in every frame."""

    calls: int = 0

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/vision/detection", self._detect, methods=["POST"])])

    async def _detect(self, request: Request) -> JSONResponse:
        await request.form()
        self.calls += 1
        person = {"label": "person", "confidence": 0.9,
                  "x_min": 10, "y_min": 10, "x_max": 30, "y_max": 40}
        car = {"label": "car", "confidence": 0.6, "x_min": 32, "y_min": 20, "x_max": 60,
               "y_max": 44}
        return JSONResponse({"success": True, "predictions": [person, car], "duration": 0})


@asynccontextmanager
async def webhook_api(tmp_path: Path, database_url: str, **overrides: Any
                      ) -> AsyncIterator[Api]:
    """The app with FAST timings, a provider finding a person and a car as the default, and
    cameras `gate` and `yard`."""
    provider = TwoThings()
    with serve_app(provider.app()) as provider_url:
        settings = make_settings(tmp_path, database_url, **{**FAST, **overrides})
        async for api in start_api(settings):
            response = await api.client.post(
                "/api/v1/providers", headers=api.auth("admin"),
                json=flaky_provider_body(provider_url, detection_types=["person", "vehicle"]))
            assert response.status_code == 201, response.text
            await add_camera(api, "gate")
            await add_camera(api, "yard")
            yield api


async def create_webhook(api: Api, url: str, **fields: Any) -> dict[str, Any]:
    body = {"name": f"hook-{time.monotonic_ns()}", "url": url, **fields}
    response = await api.client.post("/api/v1/webhooks", json=body, headers=api.auth("admin"))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def send(api: Api, camera_id: str, index: int, mode: str = "sync") -> dict[str, Any]:
    """Send distinct frame `index`; the answer (sync: with the detections)."""
    response = await api.client.post(
        "/api/v1/detections/send-frame", headers=api.auth("operator"),
        files={"image": (f"f{index}.jpg", small_frame(index), "image/jpeg")},
        data={"camera_id": camera_id, "mode": mode},
    )
    assert response.status_code in (200, 202), response.text
    answer: dict[str, Any] = response.json()
    return answer


async def deliveries(api: Api, webhook_id: int, **params: Any) -> list[dict[str, Any]]:
    response = await api.client.get(f"/api/v1/webhooks/{webhook_id}/deliveries",
                                    params={"limit": 100, **params}, headers=api.auth("admin"))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def until(check: Callable[[], Awaitable[T | None]], within: float,
                what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {within} s")
        await asyncio.sleep(0.05)


async def settled(api: Api, webhook_id: int, count: int, within: float = 15
                  ) -> list[dict[str, Any]]:
    """The webhook's deliveries once there are `count` and none is pending or processing."""
    async def check() -> list[dict[str, Any]] | None:
        rows = await deliveries(api, webhook_id)
        done = all(r["status"] in ("delivered", "dead") for r in rows)
        return rows if len(rows) == count and done else None

    return await until(check, within, f"{count} settled deliveries of webhook {webhook_id}")


async def events_of(api: Api, event_type: str) -> list[DetectionEventLog]:
    async with api.runtime.session_factory() as session:
        return list(await session.scalars(
            select(DetectionEventLog).where(DetectionEventLog.event_type == event_type)
            .order_by(DetectionEventLog.id)))


def admin_get(api: Api, path: str, **params: Any) -> Awaitable[httpx.Response]:
    return api.client.get(path, params=params or None, headers=api.auth("admin"))
