"""Every endpoint × every role × unscoped and scoped-to-`gate` keys, against one served app (SQLite)
holding two cameras' data: a role without the permission gets 403 with the permission it lacks,
an allowed key the status `matrix_examples.EXAMPLES` gives (scope: 404 in a path, 403 in a
filter or send-frame); no key, an unknown key or another scheme get 401.

The list of endpoints comes from `endpoint_permissions` (the app itself): an endpoint without an
example fails `test_every_endpoint_has_an_example`, so none can ship with its access untested.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from framewatch.app import create_app
from framewatch.auth.catalogue import OPEN, endpoint_permissions
from framewatch.core.config import Settings
from tests.api_fixtures import make_settings
from tests.conftest import frame_bytes
from tests.live.clients import QUIET, Ws
from tests.security.matrix_examples import EXAMPLES, WEBSOCKET_ROUTE, Ctx, Example, Req
from tests.security.support import (
    ADMIN,
    DOCUMENTED_ROLES,
    ROLES,
    SCOPES,
    World,
    bearer,
    build_world,
)
from tests.support.flaky_provider import FlakyProvider
from tests.support.servers import serve_app
from tests.webhooks.support import receiving

ENDPOINTS = endpoint_permissions(create_app(Settings(data_dir=Path("/nonexistent"))))
HTTP_ENDPOINTS = [row for row in ENDPOINTS if row[0] != "WEBSOCKET"]
UNAUTHENTICATED = {"no key": {}, "unknown key": bearer("fw_not_a_key_0123456789abcdef"),
                   "basic": {"Authorization": "Basic YWRtaW46YWRtaW4="}}
# The rate limits are tested elsewhere; here they would only get in the way.
UNLIMITED = {"rate_limit_per_key_per_minute": 0, "rate_limit_per_address_per_minute": 0,
             "rate_limit_send_frame_per_minute": 0, "rate_limit_auth_failures_per_minute": 0}


@dataclass
class Served:
    base_url: str
    provider_url: str
    world: World
    person_id: int
    face_id: int
    receiver_url: str
    webhook_id: int


async def populate(base_url: str, provider_url: str,
                   receiver_url: str) -> tuple[World, int, int, int]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        world = await build_world(client, provider_url)
        person = await client.post("/api/v1/persons", headers=ADMIN, json={"name": "Grace"})
        assert person.status_code == 201, person.text
        person_id = person.json()["id"]
        face = await client.post(
            f"/api/v1/persons/{person_id}/faces", headers=ADMIN,
            files={"image": ("face.jpg", frame_bytes("grace_hopper.jpg"), "image/jpeg")})
        assert face.status_code == 201, face.text
        hook = await client.post("/api/v1/webhooks", headers=ADMIN, json={
            "name": "matrix", "url": receiver_url, "enabled": False})
        assert hook.status_code == 201, hook.text
        return world, person_id, face.json()["id"], hook.json()["id"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("matrix")
    shutil.copy(sqlite_template, tmp / "framewatch.db")
    settings = make_settings(tmp, f"sqlite+aiosqlite:///{tmp / 'framewatch.db'}",
                             log_level="WARNING", **QUIET, **UNLIMITED)
    with serve_app(FlakyProvider().app()) as provider_url, receiving() as (_, receiver_url), \
            serve_app(create_app(settings)) as base_url:
        world, person_id, face_id, webhook_id = asyncio.run(
            populate(base_url, provider_url, receiver_url))
        yield Served(base_url, provider_url, world, person_id, face_id, receiver_url, webhook_id)


@pytest.fixture
async def ctx(served: Served) -> AsyncIterator[Ctx]:
    async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as client:
        yield Ctx(client, served.world, served.provider_url, served.person_id, served.face_id,
                  served.receiver_url, served.webhook_id)


async def call(ctx: Ctx, method: str, path: str, example: Example,
               headers: dict[str, str]) -> httpx.Response:
    built = example.build(ctx)
    request: Req = await built if inspect.isawaitable(built) else built  # type: ignore[assignment]
    return await ctx.client.request(
        method, path.format(**request.path), params=request.params, json=request.json,
        files=request.files, data=request.data, headers=headers)


def test_every_endpoint_has_an_example() -> None:
    served = {(method, path) for method, path, _ in ENDPOINTS}
    assert sorted(served - {*EXAMPLES, WEBSOCKET_ROUTE}) == [], "endpoints without an example"
    assert sorted(set(EXAMPLES) - served) == [], "examples of endpoints that do not exist"
    assert WEBSOCKET_ROUTE in served


@pytest.mark.parametrize(("method", "path", "permission"), HTTP_ENDPOINTS,
                         ids=[f"{m} {p}" for m, p, _ in HTTP_ENDPOINTS])
async def test_access(ctx: Ctx, method: str, path: str, permission: str) -> None:
    examples = EXAMPLES[(method, path)]
    if permission == OPEN:
        for headers in [*UNAUTHENTICATED.values(), ctx.world.auth("agent", "gate")]:
            assert (await call(ctx, method, path, examples[0], headers)).status_code == 200
        return
    for case, headers in UNAUTHENTICATED.items():
        ctx.allowed = False
        response = await call(ctx, method, path, examples[0], headers)
        assert response.status_code == 401, (case, response.text)
        assert response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    outcomes: dict[tuple[str, str, str], int] = {}
    for role in ROLES:
        allowed = permission in DOCUMENTED_ROLES[role]
        for scope in SCOPES:
            for example in examples:
                ctx.allowed = allowed
                response = await call(ctx, method, path, example, ctx.world.auth(role, scope))
                outcomes[(role, scope, example.name)] = response.status_code
                where = (role, scope, example.name, response.text)
                if not allowed:
                    check_denied(response, permission, where)
                    continue
                expected = example.scoped if scope == "gate" else example.unscoped
                assert response.status_code == expected, where
                if expected == 403:
                    check_out_of_scope(response, permission, where)
    # Not vacuous: some role was let through, and every role without the permission was not.
    assert any(DOCUMENTED_ROLES[role] >= {permission} for role in ROLES)
    assert all(status == 403 for (role, _, _), status in outcomes.items()
               if permission not in DOCUMENTED_ROLES[role])


def check_denied(response: httpx.Response, permission: str, where: Any) -> None:
    assert response.status_code == 403, where
    body = response.json()
    assert body["error"] == "forbidden" and body["required_permission"] == permission, where
    assert "reason" not in body and permission in body["detail"], where


def check_out_of_scope(response: httpx.Response, permission: str, where: Any) -> None:
    """A scoped key refused: either a camera it may not name, or a power it may not use."""
    body = response.json()
    assert body["error"] == "forbidden", where
    if "camera_id" in body:
        assert body["camera_id"] != "gate" and "required_permission" not in body, where
    else:
        assert body == {"error": "forbidden", "detail": body["detail"], "reason": "camera_scope",
                        "required_permission": permission}, where


async def ws_outcome(served: Served, query: dict[str, str]) -> tuple[int | None, dict[str, Any]]:
    """(close code or None if the connection stays, first message) for a WebSocket client that
    sends a subscribe first."""
    url = served.base_url.replace("http://", "ws://") + WEBSOCKET_ROUTE[1]
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    async with connect(url, open_timeout=5, close_timeout=2) as connection:
        ws = Ws(connection)
        await ws.send({"type": "subscribe", "events": True})
        first = await ws.recv()
        if first["type"] == "error":
            code, rest = await ws.closed()
            assert rest == []
            return code, first
        return None, first


async def test_websocket_access(served: Served) -> None:
    for role in ROLES:
        for scope in SCOPES:
            code, first = await ws_outcome(served, {"token": served.world.keys[(role, scope)]})
            if "detections:read" in DOCUMENTED_ROLES[role]:
                assert code is None and first["type"] == "subscribed", (role, scope, first)
                assert first["filters"]["events"] is True
            else:
                assert code == 4403, (role, scope)
                assert (first["error"], first["detail"]) == (
                    "forbidden", "this needs the detections:read permission")
    for query in ({}, {"token": "fw_not_a_key_0123456789abcdef"}):
        code, first = await ws_outcome(served, query)
        assert (code, first["error"]) == (4401, "unauthorized"), query
    assert json.dumps(first)  # the refusal is JSON like every other message
