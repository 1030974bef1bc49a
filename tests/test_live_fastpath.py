"""The live view's fast path (framewatch/detections/live_fastpath.py): a common poll is answered
before the middleware and the router, with the same answer the route gives, the same headers,
one rate-limit token and the same metrics; everything else reaches the route and gets its
answers (401, 403, 422, 429, 503). Which way a request went is seen by counting what reaches
the layers below the fast path."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from starlette.types import ASGIApp, Receive, Scope, Send

from framewatch.detections.live_fastpath import LiveFastPath
from tests.api_fixtures import Api
from tests.support.flaky_provider import FlakyProvider
from tests.support.servers import serve_app
from tests.test_live_cache import LIVE, cache_url, live_api, send

ADMIN_KEYS = "/api/v1/keys"
__all__ = ["cache_url"]  # a fixture: memory and Redis


@pytest.fixture
def flaky_url() -> Iterator[str]:
    with serve_app(FlakyProvider().app()) as url:
        yield url


@contextmanager
def below_fast_path(app: FastAPI) -> Iterator[list[str]]:
    """The paths of the requests the fast path passed down, while in the block."""
    layer: ASGIApp | None = app.middleware_stack
    while layer is not None and not isinstance(layer, LiveFastPath):
        layer = getattr(layer, "app", None)
    assert isinstance(layer, LiveFastPath), "the fast path is not in the middleware stack"
    fast_path, below = layer, layer.app
    passed: list[str] = []

    async def counting(scope: Scope, receive: Receive, send: Send) -> None:
        passed.append(scope["path"])
        await below(scope, receive, send)

    fast_path.app = counting
    try:
        yield passed
    finally:
        fast_path.app = below


def live_requests(api: Api, status: int) -> float:
    value = api.runtime.metrics.registry.get_sample_value(
        "framewatch_http_requests_total",
        {"route": LIVE, "method": "GET", "status": str(status)})
    return value or 0.0


async def test_a_common_poll_gets_the_routes_answer_without_the_stack(
    tmp_path: Path, sqlite_url: str, flaky_url: str, cache_url: str | None
) -> None:
    async with live_api(tmp_path, sqlite_url, flaky_url, redis_url=cache_url,
                        live_ttl_seconds=3600) as api:
        await send(api, 1)
        await api.runtime.live.outbox.drain()
        viewer = api.auth("viewer")
        await api.client.get(LIVE, headers=viewer)  # the key is now in the key cache
        before = live_requests(api, 200)
        with below_fast_path(api.app) as passed:
            fast = await api.client.get(LIVE, headers={**viewer, "X-Request-ID": "poll-1"})
            # An Origin header sends the poll down the stack (CORS answers it when configured;
            # it is not configured here, so the route's answer is the same).
            routed = await api.client.get(LIVE, headers={**viewer, "Origin": "http://x.test"})
        assert passed == [LIVE]  # only the second
        assert fast.status_code == routed.status_code == 200
        assert fast.content == routed.content
        assert fast.json()["cameras"][0]["camera_id"] == "gate"
        assert fast.headers["x-request-id"] == "poll-1"
        assert routed.headers["x-request-id"] not in ("", "poll-1")
        assert {name: value for name, value in fast.headers.items() if name != "x-request-id"} \
            == {name: value for name, value in routed.headers.items() if name != "x-request-id"}
        assert "content-security-policy" in fast.headers
        assert fast.headers["x-frame-options"] == "DENY"
        assert live_requests(api, 200) == before + 2  # both counted, under the route's name


async def test_a_filtered_poll_is_validated_the_same_way(
    tmp_path: Path, sqlite_url: str, flaky_url: str
) -> None:
    async with live_api(tmp_path, sqlite_url, flaky_url, live_ttl_seconds=3600) as api:
        await send(api, 1, "gate")
        await send(api, 2, "yard")
        await api.runtime.live.outbox.drain()
        viewer = api.auth("viewer")
        await api.client.get(LIVE, headers=viewer)
        with below_fast_path(api.app) as passed:
            yard = await api.client.get(LIVE, params={"camera_id": "yard", "types": "person"},
                                        headers=viewer)
            assert passed == []
            assert [c["camera_id"] for c in yard.json()["cameras"]] == ["yard"]
            invalid = await api.client.get(LIVE, params={"camera_id": "x" * 65},
                                           headers=viewer)
            assert passed == [LIVE]
        assert invalid.status_code == 422
        assert [f["loc"] for f in invalid.json()["fields"]] == [["query", "camera_id"]]


async def test_keys_the_fast_path_cannot_vouch_for_go_to_the_route(
    tmp_path: Path, sqlite_url: str, flaky_url: str
) -> None:
    async with live_api(tmp_path, sqlite_url, flaky_url, live_ttl_seconds=3600) as api:
        await send(api, 1)
        admin = api.auth("admin")
        created = await api.client.post(ADMIN_KEYS, headers=admin, json={
            "name": "gate-only", "role": "viewer", "camera_ids": ["gate"]})
        assert created.status_code == 201, created.text
        scoped = {"Authorization": f"Bearer {created.json()['key']}"}
        agent_key = await api.client.post(ADMIN_KEYS, headers=admin, json={
            "name": "door-agent", "role": "agent"})
        agent = {"Authorization": f"Bearer {agent_key.json()['key']}"}
        with below_fast_path(api.app) as passed:
            # Not yet in the key cache: the route checks it in the database.
            first = await api.client.get(LIVE, headers=scoped)
            assert first.status_code == 200 and passed == [LIVE]
            again = await api.client.get(LIVE, headers=scoped)
            assert again.content == first.content and passed == [LIVE]
            assert [c["camera_id"] for c in again.json()["cameras"]] == ["gate"]
            # A camera outside the key's scope: the route refuses it.
            yard = await api.client.get(LIVE, params={"camera_id": "yard"}, headers=scoped)
            assert yard.status_code == 403 and yard.json()["error"] == "forbidden"
            assert passed == [LIVE, LIVE]
            # A role without detections:read, an unknown key, no key at all.
            for headers, status in ((agent, 403), (agent, 403),
                                    ({"Authorization": "Bearer nope"}, 401), ({}, 401)):
                refused = await api.client.get(LIVE, headers=headers)
                assert refused.status_code == status, (headers, refused.text)
            assert passed == [LIVE] * 6
            # A revoked key is forgotten by the key cache at once, so the route refuses it.
            revoked = await api.client.delete(f"{ADMIN_KEYS}/{created.json()['id']}",
                                              headers=admin)
            assert revoked.status_code in (200, 204), revoked.text
            gone = await api.client.get(LIVE, headers=scoped)
            assert gone.status_code == 401 and passed[-1] == LIVE and len(passed) == 8


async def test_a_fast_poll_takes_one_rate_limit_token(
    tmp_path: Path, sqlite_url: str, flaky_url: str
) -> None:
    """A burst of 5 (12 a minute, 25 s of burst; refilled slowly enough not to matter here):
    five polls pass, the sixth is refused with the rate limiter's own answer (below the fast
    path, which did not take a token a second time)."""
    async with live_api(tmp_path, sqlite_url, flaky_url, live_ttl_seconds=3600,
                        rate_limit_per_key_per_minute=12, rate_limit_burst_seconds=25,
                        rate_limit_per_address_per_minute=0) as api:
        viewer = api.auth("viewer")
        assert (await api.client.get(LIVE, headers=viewer)).status_code == 200  # 1: cached key
        with below_fast_path(api.app) as passed:
            statuses = [(await api.client.get(LIVE, headers=viewer)).status_code
                        for _ in range(5)]
        assert statuses == [200] * 4 + [429]
        assert passed == [LIVE]  # the refusal
        refused = await api.client.get(LIVE, headers=viewer)
        assert refused.status_code == 429
        assert refused.json()["error"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
        assert api.runtime.rate_limiter.refused == 2


async def test_a_view_that_cannot_be_built_gets_the_routes_error(
    tmp_path: Path, sqlite_url: str, flaky_url: str
) -> None:
    """A miss while every database connection is busy: the fast path lets the route try, and
    the route answers 503 `database_busy`, as any endpoint would."""
    async with live_api(tmp_path, sqlite_url, flaky_url, live_ttl_seconds=3600,
                        database_pool_size=1, database_pool_timeout_seconds=0.3) as api:
        viewer = api.auth("viewer")
        assert (await api.client.get(LIVE, headers=viewer)).status_code == 200
        with below_fast_path(api.app) as passed:
            async with AsyncExitStack() as held:
                for _ in range(2):  # the pool's connection and its one overflow
                    connection = await held.enter_async_context(api.runtime.engine.connect())
                    await connection.execute(text("SELECT 1"))
                # Another filter: not cached, so it must be built from the database.
                busy = await api.client.get(LIVE, params={"camera_id": "yard"}, headers=viewer)
            assert passed == [LIVE]
        assert busy.status_code == 503, busy.text
        assert busy.json()["error"] == "database_busy"
        assert live_requests(api, 503) == 1
        assert (await api.client.get(LIVE, params={"camera_id": "yard"}, headers=viewer)
                ).status_code == 200
