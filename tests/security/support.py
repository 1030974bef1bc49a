"""Shared pieces of the security tests: the roles as documented, keys of every role and scope,
a world of two cameras with data in every table a scoped key must not see across, a fake
DeepStack provider that records what reaches it, and the audit trail.

The world is built over HTTP only (so that it works in process and against a served app):
cameras `gate` and `yard`, the fast flaky provider as the default, on each camera a frame sent
synchronously (its detection) and one sent with `mode=async` (a queue item, done), and keys of
every role, unscoped (`all`) and scoped to `gate`.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

from framewatch.core.config import Settings
from framewatch.models import DetectionEventLog
from tests.api_fixtures import ADMIN_KEY, Api, start_api
from tests.queue.scenario import flaky_provider_body, small_frame, wait_for_queue

ROLES = ("agent", "viewer", "operator", "admin")
SCOPES: dict[str, list[str] | None] = {"all": None, "gate": ["gate"]}
CAMERAS = ("gate", "yard")
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}

# The roles as docs/security.md describes them (written out here, not read from the code).
READ = frozenset({"detections:read", "frames:read", "events:read", "stats:read", "cameras:read",
                  "providers:read", "persons:read"})
ADMIN_ONLY = frozenset({"cameras:admin", "providers:admin", "queue:admin", "keys:admin",
                        "persons:admin", "retention:admin", "webhooks:admin"})
DOCUMENTED_ROLES: dict[str, frozenset[str]] = {
    "agent": frozenset({"frames:write", "cameras:read"}),
    "viewer": READ,
    "operator": READ | {"frames:write"},
    "admin": READ | {"frames:write"} | ADMIN_ONLY,
}

# Frame images never sent before, for every test of a session.
frame_numbers = itertools.count(10_000)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def fresh_frame() -> bytes:
    return small_frame(next(frame_numbers))


async def new_key(client: httpx.AsyncClient, name: str, role: str,
                  camera_ids: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    """A key made through the API by the admin; the answer (with `key`, shown once)."""
    response = await client.post("/api/v1/keys", headers=ADMIN,
                                 json={"name": name, "role": role, "camera_ids": camera_ids,
                                       **fields})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def send_frame(client: httpx.AsyncClient, headers: dict[str, str], camera_id: str,
                     mode: str = "sync") -> httpx.Response:
    return await client.post(
        "/api/v1/detections/send-frame", headers=headers,
        files={"image": ("f.jpg", fresh_frame(), "image/jpeg")},
        data={"camera_id": camera_id, "mode": mode},
    )


@dataclass
class World:
    keys: dict[tuple[str, str], str]  # (role, scope name) → key
    provider_id: int
    frames: dict[str, int] = field(default_factory=dict)  # camera → a frame processed at once
    detections: dict[str, int] = field(default_factory=dict)  # camera → one of its detections
    items: dict[str, int] = field(default_factory=dict)  # camera → a done queue item

    def auth(self, role: str, scope: str = "all") -> dict[str, str]:
        return bearer(self.keys[(role, scope)])


async def build_world(client: httpx.AsyncClient, provider_url: str) -> World:
    response = await client.post("/api/v1/providers", headers=ADMIN,
                                 json=flaky_provider_body(provider_url))
    assert response.status_code == 201, response.text
    world = World(keys={}, provider_id=response.json()["id"])
    for camera in CAMERAS:
        response = await client.post("/api/v1/cameras", headers=ADMIN,
                                     json={"id": camera, "name": camera.title()})
        assert response.status_code == 201, response.text
    for role in ROLES:
        for scope, cameras in SCOPES.items():
            created = await new_key(client, f"{role}-{scope}", role, cameras)
            world.keys[(role, scope)] = created["key"]
    for camera in CAMERAS:
        sync = await send_frame(client, ADMIN, camera)
        assert sync.status_code == 200, sync.text
        world.frames[camera] = sync.json()["frame_id"]
        world.detections[camera] = sync.json()["detections"][0]["id"]
        queued = await send_frame(client, ADMIN, camera, mode="async")
        assert queued.status_code == 202, queued.text
        world.items[camera] = queued.json()["queue_item_id"]
    await wait_for_queue(client, ADMIN, within=20)
    return world


@asynccontextmanager
async def running_api(settings: Settings) -> AsyncIterator[Api]:
    """The app (as the `api` fixture makes it) with these settings, shut down at the end."""
    apps = start_api(settings)
    api = await anext(apps)
    try:
        yield api
    finally:
        await anext(apps, None)


async def events(api: Api, *types: str) -> list[DetectionEventLog]:
    """The stored events (of `types`, when given), oldest first."""
    async with api.runtime.session_factory() as session:
        query = select(DetectionEventLog).order_by(DetectionEventLog.id)
        if types:
            query = query.where(DetectionEventLog.event_type.in_(types))
        return list(await session.scalars(query))


@dataclass
class RecordingProvider:
    """A DeepStack-format provider that records every request that reaches it.

    `mode`: "ok" (one person), "refuse" (HTTP 401), "fail" (HTTP 500) or "redirect" (307 to
    `redirect_to`); with `echo`, errors quote the API key the request carried."""

    mode: str = "ok"
    echo: bool = False
    redirect_to: str = ""
    requests: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/vision/detection", self._detect, methods=["POST"])])

    async def _detect(self, request: Request) -> JSONResponse | RedirectResponse:
        form = await request.form()
        api_key = form.get("api_key")
        self.requests.append({"api_key": api_key if isinstance(api_key, str) else ""})
        if self.mode == "redirect":
            return RedirectResponse(self.redirect_to, status_code=307)
        if self.mode in ("refuse", "fail"):
            status = 401 if self.mode == "refuse" else 500
            error = f"invalid api key {api_key}" if self.echo else "invalid api key"
            return JSONResponse({"success": False, "error": error}, status_code=status)
        person = {"label": "person", "confidence": 0.9,
                  "x_min": 10, "y_min": 10, "x_max": 30, "y_max": 40}
        return JSONResponse({"success": True, "predictions": [person], "duration": 0})


def deepstack_body(url: str, name: str = "recorded", **overrides: Any) -> dict[str, Any]:
    """A DeepStack provider at `url` that fails at once (no retries)."""
    return {"name": name, "kind": "deepstack", "base_url": url, "max_retries": 0,
            "timeout_seconds": 5, "detection_types": ["person"], "min_confidence": 0.1,
            "options": {"retry_backoff_seconds": 0}, **overrides}
