"""Re-identification reads: a person's sightings in keyset pages (newest first, ties broken by
id), "find faces like this one" over past face detections (nearest first, `limit`, `since`),
and a key scoped to one camera seeing that camera's only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.api.helpers import add_camera, assert_error
from tests.api_fixtures import Api
from tests.persons.helpers import PERSONS, register, search, send_faces, the_face

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def scoped_viewer(api: Api, camera_id: str) -> dict[str, str]:
    response = await api.client.post("/api/v1/keys", headers=api.auth("admin"), json={
        "name": f"{camera_id}-viewer", "role": "viewer", "camera_ids": [camera_id]})
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['key']}"}


async def all_pages(api: Api, url: str, headers: dict[str, str], limit: int
                    ) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = await api.client.get(url, params=params, headers=headers)
        assert response.status_code == 200, response.text
        pages.append(response.json()["items"])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 10


async def test_sightings_come_newest_first_in_keyset_pages_within_the_key_scope(
    api_any_db: Api,
) -> None:
    api = api_any_db
    await add_camera(api, "gate")
    await add_camera(api, "yard")
    person_id, _ = await register(api, "Righty", "player_right_1.jpg")
    # (camera, minutes after T0); two sightings at the same moment, told apart by their ids.
    plan = [("gate", 0), ("yard", 5), ("gate", 5), ("yard", 10), ("gate", 20)]
    seen = []
    for index, (camera, minutes) in enumerate(plan):
        moment = T0 + timedelta(minutes=minutes)
        face = the_face(await send_faces(api, "player_right_2.jpg", camera_id=camera,
                                         tag=f"s{index}", captured_at=moment.isoformat()))
        assert face["person_id"] == person_id
        seen.append((moment, face["id"], camera))
    newest_first = sorted(seen, key=lambda s: (s[0], s[1]), reverse=True)
    url = f"{PERSONS}/{person_id}/sightings"

    pages = await all_pages(api, url, api.auth("viewer"), limit=2)
    assert [len(page) for page in pages] == [2, 2, 1]
    items = [item for page in pages for item in page]
    assert [(datetime.fromisoformat(i["detected_at"]), i["detection_id"], i["camera_id"])
            for i in items] == newest_first
    assert all(i["similarity"] == pytest.approx(items[0]["similarity"]) for i in items)
    whole = await api.client.get(url, params={"limit": 500}, headers=api.auth("viewer"))
    assert whole.json()["items"] == items and whole.json()["next_cursor"] is None

    gate_only = await scoped_viewer(api, "gate")
    gate_pages = await all_pages(api, url, gate_only, limit=2)
    assert [[i["detection_id"] for i in page] for page in gate_pages] == [
        [s[1] for s in newest_first if s[2] == "gate"][:2],
        [s[1] for s in newest_first if s[2] == "gate"][2:]]

    for params, status in (({"cursor": "not-a-cursor"}, 400), ({"limit": 0}, 422),
                           ({"limit": 501}, 422)):
        response = await api.client.get(url, params=params, headers=api.auth("viewer"))
        assert response.status_code == status, (params, response.text)
    assert_error(await api.client.get(url, headers={"Authorization": "Bearer fw_nope_123"}),
                 401, "unauthorized")


async def test_faces_like_this_one_nearest_first_with_limit_since_and_scope(api_any_db: Api
                                                                            ) -> None:
    api = api_any_db
    await add_camera(api, "gate")
    await add_camera(api, "yard")
    # Past faces, none of them registered: the man of the photo (player_left_1), then others.
    sent = {}
    for minutes, (photo, camera) in enumerate([
            ("player_left_1.jpg", "gate"), ("player_right_1.jpg", "yard"),
            ("astronaut.jpg", "gate"), ("desk_closeup.jpg", "yard")]):
        captured = (T0 + timedelta(minutes=minutes)).isoformat()
        sent[photo] = the_face(await send_faces(api, photo, camera_id=camera,
                                                captured_at=captured))["id"]

    response = await search(api, "player_left_2.jpg")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["searched"] == 4
    items = body["items"]
    assert items[0]["detection_id"] == sent["player_left_1.jpg"]
    assert 0.2 < items[0]["distance"] < 0.4  # the same man (0.30)
    assert {i["detection_id"] for i in items} == set(sent.values())
    distances = [i["distance"] for i in items]
    assert distances == sorted(distances) and min(distances[1:]) > 0.6
    for item in items:
        assert item["similarity"] == pytest.approx(max(0.0, 1 - item["distance"]), abs=1e-4)
        assert item["person_id"] is None
    first = items[0]
    assert (first["camera_id"], datetime.fromisoformat(first["detected_at"])) == ("gate", T0)

    limited = (await search(api, "player_left_2.jpg", limit=2)).json()
    assert limited["searched"] == 4 and limited["items"] == items[:2]
    later = (await search(api, "player_left_2.jpg",
                          since=(T0 + timedelta(seconds=30)).isoformat())).json()
    assert later["searched"] == 3
    assert [i["detection_id"] for i in later["items"]] == [i["detection_id"]
                                                          for i in items[1:]]

    yard_only = await scoped_viewer(api, "yard")
    scoped = await search(api, "player_left_2.jpg", headers=yard_only)
    assert scoped.status_code == 200, scoped.text
    assert scoped.json()["searched"] == 2
    assert [i["detection_id"] for i in scoped.json()["items"]] == [
        i["detection_id"] for i in items if i["camera_id"] == "yard"]

    no_face = await search(api, "coffee.jpg")
    assert assert_error(no_face, 422, "validation_error")["faces_found"] == 0
    assert_error(await search(api, b"plain text"), 400, "invalid_frame")
    assert (await search(api, "player_left_2.jpg", limit=101)).status_code == 422

