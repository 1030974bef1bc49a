"""Identification, the "done means": a person registered from ONE photograph is recognised in a
DIFFERENT photograph sent to send-frame — for each of the three men of tests/data — and nobody
else is; through the built-in detector, a remote DeepStack that only finds the face's box
(framewatch encodes it itself), a CompreFace whose subject is linked to the person, and the queue.

Distances observed with the built-in encoder (dlib ResNet, 128-d, Euclidean) on these photos
(the same on SQLite and PostgreSQL, and on every run: the detector is deterministic):

    same man: registered photo vs the other photo     different people
      player_right_1 / player_right_2    0.244          the 12 pairs compared below: 0.62-0.79
      player_left_1  / player_left_2     0.300          (nearest: player_right_1 / desk_left 0.619,
      desk_closeup   / desk_closeup_left 0.339           farthest: grace_hopper / player_right_1
                                                         0.790); all 28 pairs of different
                                                         people among the 8 faces: 0.62-0.81

So one man's photos are 0.24-0.34 apart and different people 0.62-0.81: the default threshold
(0.45) is 0.11 above the farthest same-man pair and 0.17 below the nearest pair of strangers.
The first test measures both sides again on every run and asserts a margin of at least 0.08.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from framewatch.detector.encoder import ENCODING_MODEL
from framewatch.models import Detection
from tests.api.helpers import add_camera, add_provider, post_frame, rows_of
from tests.api_fixtures import Api, make_settings, start_api
from tests.persons.helpers import (
    FACE_BOXES,
    MEN,
    PERSONS,
    STRANGERS,
    distance,
    events_of,
    register,
    send_faces,
    the_face,
)
from tests.providers.wire_servers import COMPREFACE_KEY, compreface_app, deepstack_app, served
from tests.queue.scenario import wait_for_queue

# The least room, each side, the default threshold must leave between the distances observed.
MARGIN = 0.08
# A box DeepStack might return for the face in player_left_2.jpg (the built-in detector's, ±1).
DEEPSTACK_LEFT_FACE = {"confidence": 0.93, "x_min": 70, "y_min": 92, "x_max": 104,
                       "y_max": 135}
# And one on his shirt: no face there, so nobody's.
DEEPSTACK_SHIRT = {"confidence": 0.81, "x_min": 60, "y_min": 200, "x_max": 110, "y_max": 260}


async def gallery_encodings(api: Api, ids: dict[str, int]) -> dict[str, list[float]]:
    encodings = {}
    for name, person_id in ids.items():
        response = await api.client.get(f"{PERSONS}/{person_id}/faces",
                                        params={"include": "encoding"}, headers=api.auth("admin"))
        (face,) = response.json()
        encodings[name] = face["encoding"]
    return encodings


async def stored_encoding(api: Api, detection_id: int) -> bytes | None:
    (row,) = await rows_of(api, Detection, Detection.id == detection_id)
    assert row.encoding_model in (ENCODING_MODEL, None)
    return row.face_encoding


async def test_each_man_is_identified_from_another_photo_and_strangers_are_not(api: Api) -> None:
    await add_camera(api)
    ids = {name: (await register(api, name, first))[0] for name, (first, _) in MEN.items()}
    gallery = await gallery_encodings(api, ids)
    same: list[float] = []
    different: list[float] = []
    identified = []
    for name, (_, second) in MEN.items():
        face = the_face(await send_faces(api, second))
        bbox = face["bbox"]
        assert (bbox["x_min"], bbox["y_min"], bbox["x_max"], bbox["y_max"]) == pytest.approx(
            FACE_BOXES[second], abs=2)
        assert face["person_id"] == ids[name], (name, face)
        assert (face["person"]["id"], face["person"]["name"]) == (ids[name], name)
        encoding = await stored_encoding(api, face["id"])
        same.append(distance(encoding, gallery[name]))
        assert face["person"]["similarity"] == pytest.approx(1 - same[-1], abs=1e-3)
        different += [distance(encoding, gallery[other]) for other in ids if other != name]
        identified.append((ids[name], face["id"]))
    for photo in STRANGERS:
        face = the_face(await send_faces(api, photo))
        assert (face["person_id"], face["person"]) == (None, None), (photo, face)
        encoding = await stored_encoding(api, face["id"])
        different += [distance(encoding, known) for known in gallery.values()]

    threshold = api.settings.face_match_threshold
    assert threshold == 0.45
    assert len(same) == 3 and len(different) == 3 * 2 + 2 * 3
    assert min(same) >= 0.2 and max(same) <= threshold - MARGIN, sorted(same)
    assert min(different) >= threshold + MARGIN and max(different) <= 0.9, sorted(different)

    events = await events_of(api, "person.identified")
    assert [(e.person_id, e.detection_id, e.camera_id) for e in events] == [
        (person_id, detection_id, "gate") for person_id, detection_id in identified]
    for event, similarity in zip(events, same, strict=True):
        assert event.payload["similarity"] == pytest.approx(1 - similarity, abs=1e-3)
        assert event.detection_types == ",face,"


async def test_an_identified_face_is_found_in_sightings_detections_and_events(api_any_db: Api
                                                                              ) -> None:
    api, viewer = api_any_db, api_any_db.auth("viewer")
    await add_camera(api)
    person_id, _ = await register(api, "Righty", "player_right_1.jpg")
    answer = await send_faces(api, "player_right_2.jpg")
    face = the_face(answer)
    assert face["person"]["name"] == "Righty" and face["person"]["similarity"] > 0.6
    stranger = the_face(await send_faces(api, "astronaut.jpg"))
    assert stranger["person_id"] is None

    sightings = await api.client.get(f"{PERSONS}/{person_id}/sightings", headers=viewer)
    assert sightings.status_code == 200, sightings.text
    (sighting,) = sightings.json()["items"]
    assert (sighting["detection_id"], sighting["camera_id"], sighting["frame_id"]) == (
        face["id"], "gate", answer["frame_id"])
    assert sighting["similarity"] == face["person"]["similarity"]
    assert sighting["bbox"] == face["bbox"]

    listed = await api.client.get("/api/v1/detections", params={"person_id": person_id},
                                  headers=viewer)
    assert listed.status_code == 200, listed.text
    assert [(d["id"], d["person"]["name"]) for d in listed.json()["items"]] == [
        (face["id"], "Righty")]
    nobody = await api.client.get("/api/v1/detections", params={"person_id": person_id + 1},
                                  headers=viewer)
    assert nobody.json()["items"] == []

    events = await api.client.get("/api/v1/detections/events", headers=viewer,
                                  params={"person_id": person_id})
    assert [e["event_type"] for e in events.json()["items"]] == [
        "person.identified", "person.face_added", "person.created"]
    identified = events.json()["items"][0]
    assert (identified["detection_id"], identified["frame_id"], identified["camera_id"]) == (
        face["id"], answer["frame_id"], "gate")
    assert identified["payload"]["person_id"] == person_id
    only = await api.client.get("/api/v1/detections/events", headers=viewer, params={
        "person_id": person_id + 1, "event_type": "person.identified"})
    assert only.json()["items"] == []


async def test_a_deepstack_face_box_is_encoded_by_framewatch_and_identified(api: Api) -> None:
    person_id, _ = await register(api, "Lefty", "player_left_1.jpg")
    fake = deepstack_app(faces=(DEEPSTACK_LEFT_FACE, DEEPSTACK_SHIRT))
    async with served(fake) as (url, _):
        provider = await add_provider(api, name="ds", kind="deepstack", base_url=url,
                                      detection_types=["face"], max_retries=0)
        await add_camera(api, "porch", provider_id=provider["id"])
        answer = await send_faces(api, "player_left_2.jpg", camera_id="porch")
    assert fake.paths == ["/v1/vision/face"]
    assert answer["provider"] == "ds"
    by_box = {d["bbox"]["y_min"]: d for d in answer["detections"]}
    face, shirt = by_box[92], by_box[200]
    assert face["bbox"] == {k: DEEPSTACK_LEFT_FACE[k] for k in face["bbox"]}
    assert (face["person_id"], face["person"]["name"]) == (person_id, "Lefty")
    assert (shirt["person_id"], shirt["person"]) == (None, None)
    # DeepStack's /face sends no encoding: both faces were encoded by framewatch.
    rows = await rows_of(api, Detection, Detection.frame_id == answer["frame_id"])
    assert {(r.encoding_model, len(r.face_encoding or b"")) for r in rows} == {
        (ENCODING_MODEL, 512)}
    assert face["person"]["similarity"] >= 1 - api.settings.face_match_threshold


def compreface_face(subject: str = "alice") -> dict[str, Any]:
    # A box over the cup of coffee.jpg: framewatch's encoder finds nobody there.
    return {"box": {"probability": 0.95, "x_min": 200, "y_min": 100, "x_max": 330,
                    "y_max": 250},
            "subjects": [{"subject": subject, "similarity": 0.97}],
            "embedding": [0.12, -0.3, 0.05, 0.4]}


async def test_a_compreface_subject_names_the_person_it_is_linked_to(api: Api) -> None:
    admin = api.auth("admin")
    person_id, _ = await register(api, "Alice", "player_left_1.jpg")
    fake = compreface_app(faces=(compreface_face(),))
    answers = []
    async with served(fake) as (url, _):
        provider = await add_provider(api, name="cf", kind="compreface", base_url=url,
                                      api_key=COMPREFACE_KEY, detection_types=["face"],
                                      max_retries=0)
        await add_camera(api, "hall", provider_id=provider["id"])

        async def send(tag: str) -> dict[str, Any]:
            answer = the_face(await send_faces(api, "coffee.jpg", camera_id="hall", tag=tag))
            answers.append(answer)
            return answer

        unlinked = await send("unlinked")
        link = await api.client.post(f"{PERSONS}/{person_id}/subjects", headers=admin,
                                     json={"provider": "cf", "subject": "alice"})
        assert link.status_code == 201, link.text
        linked = await send("linked")
        removed = await api.client.delete(f"{PERSONS}/{person_id}/subjects/{link.json()['id']}",
                                          headers=admin)
        assert removed.status_code == 204
        for provider_name in ("other", "*"):
            response = await api.client.post(f"{PERSONS}/{person_id}/subjects", headers=admin,
                                             json={"provider": provider_name, "subject": "alice"})
            assert response.status_code == 201, response.text
            await send(f"linked-{provider_name}")
    assert fake.calls == 4

    assert unlinked["subject"] == "alice"
    assert (unlinked["person_id"], unlinked["person"]) == (None, None)
    assert linked["person"] == {"id": person_id, "name": "Alice", "similarity": 0.97}
    other, anyone = answers[2:]
    assert other["person_id"] is None  # linked for another provider only
    assert anyone["person"] == {"id": person_id, "name": "Alice", "similarity": 0.97}
    # framewatch encoded the box itself; CompreFace's own embedding is not comparable.
    (row,) = await rows_of(api, Detection, Detection.id == unlinked["id"])
    assert row.encoding_model == ENCODING_MODEL
    assert row.attributes["provider_encoding_model"] == "compreface:facenet.Calculator"
    registered = (await api.client.get(f"{PERSONS}/{person_id}/faces", headers=admin,
                                       params={"include": "encoding"})).json()[0]["encoding"]
    assert distance(row.face_encoding, registered) > api.settings.face_match_threshold
    events = await events_of(api, "person.identified")
    assert [(e.detection_id, e.provider, e.payload["subject"]) for e in events] == [
        (linked["id"], "cf", "alice"), (anyone["id"], "cf", "alice")]


async def test_frames_sent_async_are_identified_by_the_worker(api: Api) -> None:
    await add_camera(api)
    person_id, _ = await register(api, "Righty", "player_right_1.jpg")
    response = await post_frame(api, "player_right_2.jpg", mode="async", detection_types="face")
    assert response.status_code == 202, response.text
    queued = response.json()
    stats = await wait_for_queue(api.client, api.auth("admin"), within=60)
    assert stats["counts"]["done"] == 1
    listed = await api.client.get("/api/v1/detections", params={"person_id": person_id},
                                  headers=api.auth("viewer"))
    (face,) = listed.json()["items"]
    assert face["frame_id"] == queued["frame_id"]
    assert face["person"]["name"] == "Righty" and face["person"]["similarity"] > 0.6
    (event,) = await events_of(api, "person.identified")
    assert (event.person_id, event.frame_id) == (person_id, queued["frame_id"])


async def test_identification_can_be_turned_off(tmp_path: Path, sqlite_url: str) -> None:
    apps = start_api(make_settings(tmp_path, sqlite_url, identify_faces=False))
    api = await anext(apps)
    try:
        await add_camera(api)
        await register(api, "Lefty", "player_left_1.jpg")
        face = the_face(await send_faces(api, "player_left_2.jpg"))
        assert (face["person_id"], face["person"]) == (None, None)
        # The built-in detector still encodes its faces; nothing is matched.
        assert await stored_encoding(api, face["id"]) is not None
        fake = deepstack_app(faces=(DEEPSTACK_LEFT_FACE,))
        async with served(fake) as (url, _):
            provider = await add_provider(api, name="ds", kind="deepstack", base_url=url,
                                          detection_types=["face"], max_retries=0)
            await add_camera(api, "porch", provider_id=provider["id"])
            remote = the_face(await send_faces(api, "player_left_2.jpg", camera_id="porch"))
        # A remote provider's face is not even encoded.
        assert remote["person_id"] is None
        assert await stored_encoding(api, remote["id"]) is None
        assert await events_of(api, "person.identified") == []
    finally:
        await anext(apps, None)


async def test_the_threshold_is_configurable_and_decides_who_is_known(tmp_path: Path,
                                                                      sqlite_url: str) -> None:
    # 0.27 lies between player_right's two photos (0.244 apart) and player_left's (0.300) and
    # the desk man's (0.339), measured above: only the first man is still recognised.
    apps = start_api(make_settings(tmp_path, sqlite_url, face_match_threshold=0.27))
    api = await anext(apps)
    try:
        await add_camera(api)
        ids = {name: (await register(api, name, first))[0] for name, (first, _) in MEN.items()}
        found = {name: the_face(await send_faces(api, second))
                 for name, (_, second) in MEN.items()}
        assert {name: face["person_id"] for name, face in found.items()} == {
            "player_right": ids["player_right"], "player_left": None, "desk": None}
        assert found["player_right"]["person"]["similarity"] >= 1 - 0.27
        (event,) = await events_of(api, "person.identified")
        assert (event.person_id, event.detection_id) == (ids["player_right"],
                                                         found["player_right"]["id"])
    finally:
        await anext(apps, None)
