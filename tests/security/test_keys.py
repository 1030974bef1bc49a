"""API keys through their lifetime — created with a scope and an expiry, expired, rotated with
and without a grace period, re-scoped, revoked — and WebSocket tokens: they work, carry the key's
scope, expire, die with their key and cannot be forged."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tests.api.helpers import add_camera
from tests.api_fixtures import Api
from tests.live.clients import live_server
from tests.security.support import ADMIN, bearer, events, new_key


async def status(api: Api, key: str, url: str = "/api/v1/cameras/gate") -> int:
    return (await api.client.get(url, headers=bearer(key))).status_code


async def until(check: Callable[[], Awaitable[bool]], within: float) -> float:
    """Seconds until `check()` holds, polling every 50 ms; fails after `within` seconds."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < within, f"not within {within} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


async def test_a_key_with_a_scope_and_an_expiry(api: Api) -> None:
    await add_camera(api, "gate")
    await add_camera(api, "yard")
    expires = datetime.now(UTC) + timedelta(hours=1)
    created = await new_key(api.client, "gate-agent", "agent", ["gate", "gate"],
                            expires_at=iso(expires))
    assert created["camera_ids"] == ["gate"] and created["role"] == "agent"
    assert created["permissions"] == ["cameras:read", "frames:write"]
    assert abs(datetime.fromisoformat(created["expires_at"]) - expires) < timedelta(seconds=1)
    assert created["prefix"] == created["key"][:8] and created["key"].startswith("fw_")
    listing = await api.client.get("/api/v1/keys", headers=ADMIN)
    listed = {k["name"]: k for k in listing.json()}
    assert listed["gate-agent"]["camera_ids"] == ["gate"]
    # Never a secret or its digest, of any key.
    assert all("key" not in k and "key_hash" not in k for k in listed.values())
    assert not [key for key in (created["key"], *api.keys.values()) if key in listing.text]
    assert await status(api, created["key"]) == 200
    assert await status(api, created["key"], "/api/v1/cameras/yard") == 404


async def test_expired_keys_are_refused(api: Api) -> None:
    await add_camera(api, "gate")
    old = await new_key(api.client, "old", "viewer", expires_at="2020-01-01T00:00:00Z")
    assert await status(api, old["key"]) == 401
    soon = datetime.now(UTC) + timedelta(seconds=1.5)
    short = await new_key(api.client, "short", "viewer", expires_at=iso(soon))
    assert await status(api, short["key"]) == 200

    async def refused() -> bool:
        return await status(api, short["key"]) == 401

    # Its expiry, plus at most the time this process trusts a check it made.
    await until(refused, within=1.5 + api.settings.auth_cache_seconds + 1.0)
    assert datetime.now(UTC) >= soon
    failed = await events(api, "auth.failed")
    reasons = {(e.payload["key_name"], e.payload["reason"]) for e in failed}
    assert reasons == {("old", "expired"), ("short", "expired")}


async def test_rotation_with_a_grace_period(api: Api) -> None:
    await add_camera(api, "gate")
    created = await new_key(api.client, "agent", "agent")
    old = created["key"]
    assert await status(api, old) == 200
    rotated = await api.client.post(f"/api/v1/keys/{created['id']}/rotate", headers=ADMIN,
                                    json={"grace_seconds": 2})
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["key"]
    assert new != old and rotated.json()["rotated_at"] and rotated.json()["prefix"] == new[:8]
    ended = time.monotonic() + 2
    assert await status(api, new) == 200
    assert await status(api, old) == 200  # still in its grace period

    async def old_refused() -> bool:
        return await status(api, old) == 401

    await until(old_refused, within=2 + api.settings.auth_cache_seconds + 1.0)
    assert time.monotonic() >= ended - 0.1  # not before the grace period ended
    assert await status(api, new) == 200
    failed = [e.payload for e in await events(api, "auth.failed")]
    assert [(p["key_name"], p["reason"], p["outcome"]) for p in failed] == [
        ("agent", "rotated", "refused")]
    rotations = await events(api, "key.rotated")
    assert [(e.actor, e.payload["grace_seconds"]) for e in rotations] == [("key:admin", 2.0)]


async def test_rotation_without_grace_refuses_the_old_secret_at_once(api: Api) -> None:
    await add_camera(api, "gate")
    created = await new_key(api.client, "agent", "agent")
    assert await status(api, created["key"]) == 200  # cached by this process now
    rotated = await api.client.post(f"/api/v1/keys/{created['id']}/rotate", headers=ADMIN)
    assert rotated.status_code == 200
    assert await status(api, created["key"]) == 401
    assert await status(api, rotated.json()["key"]) == 200
    # A revoked key cannot be rotated back to life.
    await api.client.delete(f"/api/v1/keys/{created['id']}", headers=ADMIN)
    again = await api.client.post(f"/api/v1/keys/{created['id']}/rotate", headers=ADMIN)
    assert again.status_code == 409
    assert await status(api, rotated.json()["key"]) == 401


async def test_changing_scope_and_expiry_takes_effect_at_once(api: Api) -> None:
    await add_camera(api, "gate")
    await add_camera(api, "yard")
    created = await new_key(api.client, "watcher", "viewer")
    key, url = created["key"], f"/api/v1/keys/{created['id']}"
    assert await status(api, key, "/api/v1/cameras/yard") == 200
    patched = await api.client.patch(url, headers=ADMIN, json={"camera_ids": ["gate"]})
    assert patched.status_code == 200 and patched.json()["camera_ids"] == ["gate"]
    assert await status(api, key, "/api/v1/cameras/yard") == 404
    cameras = (await api.client.get("/api/v1/cameras", headers=bearer(key))).json()
    assert [c["id"] for c in cameras] == ["gate"]
    # Leaving camera_ids out keeps the scope; null widens it again.
    await api.client.patch(url, headers=ADMIN, json={"expires_at": None})
    assert await status(api, key, "/api/v1/cameras/yard") == 404
    await api.client.patch(url, headers=ADMIN, json={"camera_ids": None})
    assert await status(api, key, "/api/v1/cameras/yard") == 200
    await api.client.patch(url, headers=ADMIN, json={"expires_at": "2021-01-01T00:00:00Z"})
    assert await status(api, key) == 401
    changes = [e.payload["changed"] for e in await events(api, "key.updated")]
    assert changes == [["camera_ids"], ["expires_at"], ["camera_ids"], ["expires_at"]]


async def test_a_revoked_key_is_refused_at_once(api: Api) -> None:
    await add_camera(api, "gate")
    created = await new_key(api.client, "leaked", "operator")
    assert await status(api, created["key"]) == 200
    revoked = await api.client.delete(f"/api/v1/keys/{created['id']}", headers=ADMIN)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    refused = await api.client.get("/api/v1/cameras/gate", headers=bearer(created["key"]))
    assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
    assert refused.headers["www-authenticate"] == "Bearer"
    failed = (await events(api, "auth.failed"))[-1].payload
    assert (failed["key_name"], failed["reason"]) == ("leaked", "revoked")
    revocations = await events(api, "key.revoked")
    assert [(e.actor, e.payload["key_id"]) for e in revocations] == [("key:admin", created["id"])]


async def ws_token(http: httpx.AsyncClient, key: str) -> dict[str, object]:
    response = await http.post("/api/v1/auth/ws-token", headers=bearer(key))
    assert response.status_code == 200, response.text
    answer: dict[str, object] = response.json()
    return answer


async def test_websocket_tokens(tmp_path: Path, sqlite_url: str) -> None:
    async with live_server(tmp_path, sqlite_url, ws_token_seconds=2) as server:
        scoped = await new_key(server.http, "wall", "viewer", ["gate"])
        doomed = await new_key(server.http, "doomed", "viewer")
        server.expected += 2  # their key.created events
        token = await ws_token(server.http, scoped["key"])
        assert token["camera_ids"] == ["gate"] and "events:read" in token["permissions"]
        assert str(token["token"]).startswith("gAAAAA") and scoped["key"] not in str(token)
        # Widening the key later does not widen a token issued before.
        widened = await server.http.patch(f"/api/v1/keys/{scoped['id']}", headers=ADMIN,
                                          json={"camera_ids": None})
        assert widened.status_code == 200
        server.expected += 1
        server.keys["token"] = str(token["token"])
        async with server.ws("token") as ws:
            await ws.subscribe(events=True)
            gate = await server.post_frame("gate")
            await server.post_frame("yard")
            got = await ws.until_published(server.expected)
        assert {(m["type"], m.get("camera_id") or m["event"]["camera_id"]) for m in got} == {
            ("detection", "gate"), ("event", "gate")}
        assert {m["frame_id"] for m in got if m["type"] == "detection"} == {gate["frame_id"]}

        # Tampered: one character of the ciphertext changed.
        text = str(token["token"])
        middle = len(text) // 2
        server.keys["tampered"] = text[:middle] + ("A" if text[middle] != "A" else "B") + \
            text[middle + 1:]
        # Its key revoked.
        server.keys["revoked"] = str((await ws_token(server.http, doomed["key"]))["token"])
        assert (await server.http.delete(f"/api/v1/keys/{doomed['id']}",
                                         headers=ADMIN)).status_code == 200
        for case in ("tampered", "revoked"):
            async with server.ws(case) as ws:
                assert (await ws.expect("error"))["error"] == "unauthorized", case
                assert (await ws.closed())[0] == 4401, case
        # Expired: valid for 2 s (Fernet counts whole seconds, so up to 3).
        await asyncio.sleep(3.2)
        async with server.ws("token") as ws:
            assert (await ws.expect("error"))["error"] == "unauthorized"
            assert (await ws.closed())[0] == 4401
        fresh = await ws_token(server.http, scoped["key"])
        server.keys["fresh"] = str(fresh["token"])
        async with server.ws("fresh") as ws:
            assert (await ws.subscribe())["type"] == "subscribed"
