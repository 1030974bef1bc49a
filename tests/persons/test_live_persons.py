"""WebSocket subscriptions by person (`"person_ids": [id]`): the API served by uvicorn, real
`websockets` clients (tests/live/clients.py), the built-in detector identifying real faces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.api.helpers import jpeg_variant
from tests.conftest import frame_bytes
from tests.live.clients import LiveServer, Ws, live_server
from tests.persons.helpers import PERSONS


async def add_person(server: LiveServer, name: str, photo: str) -> int:
    admin = {"Authorization": f"Bearer {server.keys['admin']}"}
    created = await server.http.post(PERSONS, json={"name": name}, headers=admin)
    assert created.status_code == 201, created.text
    person_id: int = created.json()["id"]
    face = await server.http.post(f"{PERSONS}/{person_id}/faces", headers=admin,
                                  files={"image": ("p.jpg", frame_bytes(photo), "image/jpeg")})
    assert face.status_code == 201, face.text
    return person_id


async def send(server: LiveServer, data: bytes) -> dict[str, Any]:
    response = await server.http.post(
        "/api/v1/detections/send-frame", files={"image": ("f.jpg", data, "image/jpeg")},
        data={"camera_id": "door", "detection_types": "face"},
        headers={"Authorization": f"Bearer {server.keys['operator']}"})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def next_messages(ws: Ws, count: int) -> list[tuple[str, int, int | None]]:
    """The next `count` messages as (kind, frame id, person id)."""
    found = []
    for _ in range(count):
        message = await ws.recv(within=20)
        if message["type"] == "detection":
            (detection,) = message["detections"]
            found.append(("detection", message["frame_id"], detection["person_id"]))
        else:
            event = message["event"]
            found.append((event["event_type"], event["frame_id"], event["person_id"]))
    return found


async def test_a_person_subscription_gets_that_person_and_nobody_else(tmp_path: Path,
                                                                     sqlite_url: str) -> None:
    async with live_server(tmp_path, sqlite_url) as server:
        admin = {"Authorization": f"Bearer {server.keys['admin']}"}
        providers = (await server.http.get("/api/v1/providers", headers=admin)).json()
        builtin = next(p["id"] for p in providers if p["kind"] == "builtin")
        camera = await server.http.post("/api/v1/cameras", headers=admin, json={
            "id": "door", "name": "Door", "provider_id": builtin})
        assert camera.status_code == 201, camera.text
        left = await add_person(server, "Lefty", "player_left_1.jpg")
        right = await add_person(server, "Righty", "player_right_1.jpg")

        async with server.ws() as lefty, server.ws() as righty:
            subscribed = await lefty.subscribe(person_ids=[left], events=True)
            assert subscribed["filters"]["person_ids"] == [left]
            await righty.subscribe(person_ids=[right])
            frames = []
            for data in (frame_bytes("player_left_2.jpg"), frame_bytes("player_right_2.jpg"),
                         frame_bytes("astronaut.jpg"), jpeg_variant("player_left_2.jpg", "2"),
                         jpeg_variant("player_right_2.jpg", "2")):
                answer = await send(server, data)
                (face,) = answer["detections"]
                frames.append((answer["frame_id"], face["person_id"]))
            assert [person for _, person in frames] == [left, right, None, left, right]
            ids = [frame_id for frame_id, _ in frames]

            # Messages come in order: the next ones after frame 1 being frame 4's shows that
            # frames 2 and 3 (someone else, a stranger) were not sent to this client.
            assert await next_messages(lefty, 4) == [
                ("detection", ids[0], left), ("person.identified", ids[0], left),
                ("detection", ids[3], left), ("person.identified", ids[3], left)]
            assert await next_messages(righty, 2) == [
                ("detection", ids[1], right), ("detection", ids[4], right)]
