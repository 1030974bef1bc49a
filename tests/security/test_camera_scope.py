"""Keys scoped to camera `gate`, on SQLite and PostgreSQL, with data on `gate` and `yard`: every
list holds only the key's camera's rows, the other camera named in a path is 404 and in a filter
or in send-frame 403, a scoped queue admin requeues only its camera's dead letters, a scoped
camera admin deletes its own camera only, and the WebSocket sends a scoped key only its camera's
messages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from framewatch.models import QueueItem
from framewatch.stats.rollup import aggregate_stats
from tests.api_fixtures import Api
from tests.live.clients import live_server
from tests.security.support import ADMIN, World, build_world, new_key, send_frame
from tests.support.flaky_provider import FlakyProvider
from tests.support.servers import serve_app


@pytest.fixture
def flaky_url() -> Iterator[str]:
    with serve_app(FlakyProvider().app()) as url:
        yield url


@pytest.fixture
async def world(api_any_db: Api, flaky_url: str) -> AsyncIterator[World]:
    built = await build_world(api_any_db.client, flaky_url)
    await aggregate_stats(api_any_db.runtime)
    yield built


async def get(api: Api, url: str, headers: dict[str, str], **params: Any) -> Any:
    response = await api.client.get(url, headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def cameras_seen(api: Api, headers: dict[str, str]) -> dict[str, set[str | None]]:
    """The cameras each list shows rows of."""
    d = "/api/v1/detections"
    events = await get(api, d + "/events", headers, limit=500)
    statistics = await get(api, d + "/statistics", headers)
    return {
        "detections": {i["camera_id"] for i in (await get(api, d, headers))["items"]},
        "events": {i["camera_id"] for i in events["items"]},
        "queue": {i["camera_id"] for i in (await get(api, d + "/queue", headers))["items"]},
        "cameras": {c["id"] for c in await get(api, "/api/v1/cameras", headers)},
        "live": {c["camera_id"] for c in (await get(api, d + "/live", headers))["cameras"]},
        "statistics": {c["camera_id"] for c in statistics["by_camera"]},
    }


async def test_a_scoped_key_lists_only_its_cameras_rows(api_any_db: Api, world: World) -> None:
    api = api_any_db
    everything = await cameras_seen(api, world.auth("viewer"))
    assert everything == {"detections": {"gate", "yard"}, "events": {"gate", "yard", None},
                          "queue": {"gate", "yard"}, "cameras": {"gate", "yard"},
                          "live": {"gate", "yard"}, "statistics": {"gate", "yard"}}
    for role in ("viewer", "operator", "admin"):
        assert await cameras_seen(api, world.auth(role, "gate")) == {
            kind: {"gate"} for kind in everything}, role
    # The same rows as the unscoped key filtered on `gate`: nothing of gate's is hidden either.
    d = "/api/v1/detections"
    for url in (d, d + "/events", d + "/queue"):
        scoped = await get(api, url, world.auth("viewer", "gate"))
        filtered = await get(api, url, world.auth("viewer"), camera_id="gate")
        assert scoped["items"] == filtered["items"] and scoped["items"], url
    scoped = await get(api, d + "/statistics", world.auth("viewer", "gate"))
    filtered = await get(api, d + "/statistics", world.auth("viewer"), camera_id="gate")
    assert scoped["detections"] == filtered["detections"] == 2
    assert scoped["by_camera"] == filtered["by_camera"]
    # An agent (cameras:read only) sees its camera too.
    agent = await get(api, "/api/v1/cameras", world.auth("agent", "gate"))
    assert [c["id"] for c in agent] == ["gate"]


async def test_the_other_camera_is_absent_in_paths_and_forbidden_in_filters(
    api_any_db: Api, world: World,
) -> None:
    api, d = api_any_db, "/api/v1/detections"
    yard = {"camera": "/api/v1/cameras/yard", "state": "/api/v1/cameras/yard/state",
            "detection": f"{d}/{world.detections['yard']}",
            "frame image": f"/api/v1/frames/{world.frames['yard']}/image",
            "queue item": f"{d}/queue/{world.items['yard']}"}
    headers = world.auth("admin", "gate")
    for what, url in yard.items():
        response = await api.client.get(url, headers=headers)
        assert response.status_code == 404 and response.json()["error"] == "not_found", what
        assert (await api.client.get(url, headers=world.auth("admin"))).status_code == 200
    for method, url in [("PATCH", "/api/v1/cameras/yard"), ("DELETE", "/api/v1/cameras/yard"),
                        ("POST", "/api/v1/cameras/yard/purge-biometrics"),
                        ("POST", f"/api/v1/frames/{world.frames['yard']}/redetect"),
                        ("POST", f"{d}/queue/{world.items['yard']}/retry")]:
        body = {"name": "Mine"} if method == "PATCH" else None
        response = await api.client.request(method, url, json=body, headers=headers)
        assert response.status_code == 404, (method, url, response.text)
    for url in (d, d + "/events", d + "/live", d + "/statistics", d + "/queue"):
        response = await api.client.get(url, params={"camera_id": "yard"}, headers=headers)
        assert response.status_code == 403, url
        assert response.json() == {"error": "forbidden", "camera_id": "yard",
                                   "detail": "this key is not allowed camera 'yard'"}
    retry = await api.client.post(f"{d}/queue/retry-dead", params={"camera_id": "yard"},
                                  headers=headers)
    assert retry.status_code == 403
    for role in ("agent", "operator", "admin"):
        refused = await send_frame(api.client, world.auth(role, "gate"), "yard")
        assert (refused.status_code, refused.json().get("camera_id")) == (403, "yard"), role
        accepted = await send_frame(api.client, world.auth(role, "gate"), "gate")
        assert accepted.status_code == 200, (role, accepted.text)
    created = await api.client.post("/api/v1/cameras", headers=headers,
                                    json={"id": "annex", "name": "Annex"})
    assert (created.status_code, created.json()["camera_id"]) == (403, "annex")
    # Nothing of yard's changed.
    camera = await get(api, "/api/v1/cameras/yard", ADMIN)
    assert camera["name"] == "Yard"


async def test_scoped_admins_act_on_their_camera_only(api_any_db: Api, world: World) -> None:
    api = api_any_db
    async with api.runtime.session_factory() as session:
        await session.execute(update(QueueItem).values(status="dead"))
        await session.commit()
    requeued = await api.client.post("/api/v1/detections/queue/retry-dead",
                                     headers=world.auth("admin", "gate"))
    assert requeued.status_code == 200
    assert requeued.json() == {"requeued": [world.items["gate"]]}
    yard_items = await get(api, "/api/v1/detections/queue", ADMIN, camera_id="yard")
    assert {i["status"] for i in yard_items["items"]} == {"dead"}

    deleted = await api.client.delete("/api/v1/cameras/gate", headers=world.auth("admin", "gate"))
    assert deleted.status_code == 204
    assert [c["id"] for c in await get(api, "/api/v1/cameras", ADMIN)] == ["yard"]
    assert (await get(api, f"/api/v1/detections/{world.detections['yard']}", ADMIN))["id"]
    # A scoped admin cannot give itself (or anyone) more cameras: keys need an unscoped key.
    key = await api.client.post("/api/v1/keys", headers=world.auth("admin", "gate"),
                                json={"name": "escape", "role": "admin"})
    assert key.status_code == 403 and key.json()["reason"] == "camera_scope"


async def test_the_websocket_sends_a_scoped_key_its_cameras_messages_only(
    tmp_path: Path, any_database_url: str,
) -> None:
    async with live_server(tmp_path, any_database_url) as server:
        scoped = await new_key(server.http, "scoped-viewer", "viewer", ["gate"])
        server.keys["scoped"] = scoped["key"]
        server.expected += 1  # its key.created event is a live message too
        async with server.ws("scoped") as mine, server.ws("viewer") as everyone:
            await mine.subscribe(events=True)
            await everyone.subscribe(events=True)
            sent = [(camera, (await server.post_frame(camera, mode))["frame_id"])
                    for camera, mode in [("gate", "sync"), ("yard", "sync"),
                                         ("yard", "async"), ("gate", "async")]]
            got_mine = await mine.until_published(server.expected)
            got_all = await everyone.until_published(server.expected)

    def seen(messages: list[dict[str, Any]]) -> set[tuple[str, str, int]]:
        rows = set()
        for m in messages:
            if m["type"] == "detection":
                rows.add(("detection", m["camera_id"], m["frame_id"]))
            elif m["event"]["frame_id"] is not None:
                event = m["event"]
                rows.add((event["event_type"], event["camera_id"], event["frame_id"]))
        return rows

    frames = {("detection", camera, frame) for camera, frame in sent} | {
        ("frame.processed", camera, frame) for camera, frame in sent}
    assert seen(got_all) >= frames
    assert seen(got_mine) == {row for row in frames if row[1] == "gate"}
    # Not even events about no camera (keys, providers) reach a scoped key.
    cameras = {m.get("camera_id") if m["type"] == "detection" else m["event"]["camera_id"]
               for m in got_mine}
    assert cameras == {"gate"}
