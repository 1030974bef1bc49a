"""The gallery over the API: persons, registering faces from photographs (exactly one face),
encodings shown to admins only, face crops on disk (0600), removing faces, deleting persons with
what they leave behind; every change bumps the gallery version and writes an event with the
actor and the client's address."""

from __future__ import annotations

import os
import stat

import cv2
import numpy as np
import pytest

from framewatch.detector.encoder import ENCODING_MODEL
from framewatch.models import Detection, PersonFace, PersonSubject
from tests.api.helpers import add_camera, assert_error, count_rows, rows_of
from tests.api_fixtures import Api
from tests.conftest import frame_bytes
from tests.persons.helpers import (
    PERSONS,
    create_person,
    events_of,
    gallery_version,
    register,
    send_faces,
    the_face,
    two_faces_photo,
    upload_face,
)

ADDRESS = "127.0.0.1"  # httpx's ASGI transport connects from here
# Where the built-in detector finds the face in player_left_1.jpg (240×320), and how sure it is.
LEFT_1_BOX = (71.2, 93.7, 103.5, 134.3)
LEFT_1_CONFIDENCE = 0.80


async def test_persons_are_created_renamed_listed_and_refused_when_invalid(api_any_db: Api
                                                                           ) -> None:
    api, admin = api_any_db, api_any_db.auth("admin")
    version = await gallery_version(api)
    alice = await create_person(api, "Alice", notes="front door")
    assert (alice["name"], alice["notes"], alice["faces"]) == ("Alice", "front door", 0)
    bob = await create_person(api, "Bob")

    duplicate = await api.client.post(PERSONS, json={"name": "Alice"}, headers=admin)
    assert_error(duplicate, 409, "conflict")
    taken = await api.client.patch(f"{PERSONS}/{bob['id']}", json={"name": "Alice"},
                                   headers=admin)
    assert_error(taken, 409, "conflict")
    renamed = await api.client.patch(f"{PERSONS}/{alice['id']}",
                                     json={"name": "Alice B.", "notes": None}, headers=admin)
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["name"], renamed.json()["notes"]) == ("Alice B.", None)

    listed = await api.client.get(PERSONS, headers=api.auth("viewer"))
    assert listed.status_code == 200
    assert [(p["id"], p["name"], p["faces"]) for p in listed.json()] == [
        (alice["id"], "Alice B.", 0), (bob["id"], "Bob", 0)]
    one = await api.client.get(f"{PERSONS}/{bob['id']}", headers=api.auth("viewer"))
    assert one.status_code == 200 and one.json()["name"] == "Bob"

    missing = [f"{PERSONS}/999", f"{PERSONS}/0", f"{PERSONS}/{2**31}", f"{PERSONS}/{2**40}"]
    for path in missing:
        assert_error(await api.client.get(path, headers=admin), 404, "not_found")
    for method, path in [("PATCH", f"{PERSONS}/999"), ("DELETE", f"{PERSONS}/999"),
                         ("GET", f"{PERSONS}/999/faces"), ("GET", f"{PERSONS}/999/subjects"),
                         ("GET", f"{PERSONS}/999/sightings"),
                         ("GET", f"{PERSONS}/{bob['id']}/faces/7/crop"),
                         ("DELETE", f"{PERSONS}/{bob['id']}/faces/7"),
                         ("DELETE", f"{PERSONS}/{bob['id']}/subjects/7")]:
        body = {"notes": "x"} if method == "PATCH" else None
        response = await api.client.request(method, path, json=body, headers=admin)
        assert_error(response, 404, "not_found")

    for invalid in ({}, {"name": ""}, {"name": "x" * 201}, {"name": "a\x00b"},
                    {"name": "Carol", "age": 40}, {"name": "Carol", "notes": "n" * 2001},
                    {"name": 12}):
        response = await api.client.post(PERSONS, json=invalid, headers=admin)
        assert_error(response, 422, "validation_error")
    assert_error(await api.client.patch(f"{PERSONS}/{bob['id']}", json={"name": ""},
                                        headers=admin), 422, "validation_error")
    for role in ("viewer", "operator"):
        refused = await api.client.post(PERSONS, json={"name": "Carol"}, headers=api.auth(role))
        assert_error(refused, 403, "forbidden")
    assert [p["name"] for p in (await api.client.get(PERSONS, headers=admin)).json()] == [
        "Alice B.", "Bob"]

    # Two creations and one update changed the gallery; the refusals did not.
    assert await gallery_version(api) == version + 3
    events = await events_of(api, "person.created", "person.updated")
    assert [(e.event_type, e.person_id) for e in events] == [
        ("person.created", alice["id"]), ("person.created", bob["id"]),
        ("person.updated", alice["id"])]
    assert {(e.actor, e.address) for e in events} == {("key:admin", ADDRESS)}
    assert events[2].payload == {"changed": ["name", "notes"]}


async def test_a_face_is_registered_from_a_photo_with_one_face(api_any_db: Api) -> None:
    api = api_any_db
    person = await create_person(api, "Lefty")
    version = await gallery_version(api)
    response = await upload_face(api, person["id"], "player_left_1.jpg")
    assert response.status_code == 201, response.text
    face = response.json()
    box = face["box"]
    for found, expected in zip((box["x_min"], box["y_min"], box["x_max"], box["y_max"]),
                               LEFT_1_BOX, strict=True):
        assert found == pytest.approx(expected, abs=2)
    # Quality: the detector's confidence, scaled down for a face 40 px tall (under 80 px).
    height = box["y_max"] - box["y_min"]
    assert face["quality"] == pytest.approx(LEFT_1_CONFIDENCE * height / 80, abs=0.02)
    assert (face["person_id"], face["encoding_model"]) == (person["id"], ENCODING_MODEL)
    assert face["source_frame_id"] is None and face["encoding"] is None
    assert await gallery_version(api) == version + 1
    got = await api.client.get(f"{PERSONS}/{person['id']}", headers=api.auth("viewer"))
    assert got.json()["faces"] == 1

    # Encodings: hidden, unless an admin asks for them.
    faces_url = f"{PERSONS}/{person['id']}/faces"
    for role in ("viewer", "admin"):
        listed = await api.client.get(faces_url, headers=api.auth(role))
        assert [(f["id"], f["encoding"]) for f in listed.json()] == [(face["id"], None)]
    for role in ("viewer", "operator"):
        refused = await api.client.get(faces_url, params={"include": "encoding"},
                                       headers=api.auth(role))
        body = assert_error(refused, 403, "forbidden")
        assert body["required_permission"] == "persons:admin"
    shown = await api.client.get(faces_url, params={"include": "encoding"},
                                 headers=api.auth("admin"))
    (row,) = await rows_of(api, PersonFace)
    stored = np.frombuffer(row.encoding, dtype="<f4")
    assert stored.shape == (128,) and 1.2 < float(np.linalg.norm(stored)) < 1.6
    assert shown.json()[0]["encoding"] == pytest.approx(stored.tolist(), abs=1e-6)

    # The crop: the face with a quarter of its size as margin, a JPEG readable by its owner only.
    crop = await api.client.get(f"{faces_url}/{face['id']}/crop", headers=api.auth("viewer"))
    assert crop.status_code == 200
    assert crop.headers["content-type"] == "image/jpeg"
    assert crop.headers["cache-control"] == "private, no-store"
    assert row.crop_path is not None
    path = api.settings.data_dir / "faces" / row.crop_path
    assert path.read_bytes() == crop.content
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    pixels = cv2.imdecode(np.frombuffer(crop.content, np.uint8), cv2.IMREAD_COLOR)
    assert pixels is not None
    width = box["x_max"] - box["x_min"]
    x0, y0 = int(box["x_min"] - width / 4), int(box["y_min"] - height / 4)
    assert pixels.shape[1] == pytest.approx(width * 1.5, abs=2)
    assert pixels.shape[0] == pytest.approx(height * 1.5, abs=2)
    photo = cv2.imdecode(np.frombuffer(frame_bytes("player_left_1.jpg"), np.uint8),
                         cv2.IMREAD_COLOR)
    assert photo is not None
    region = photo[y0:y0 + pixels.shape[0], x0:x0 + pixels.shape[1]]
    assert float(np.mean(np.abs(region.astype(int) - pixels.astype(int)))) < 6
    elsewhere = photo[0:pixels.shape[0], 0:pixels.shape[1]]
    assert float(np.mean(np.abs(elsewhere.astype(int) - pixels.astype(int)))) > 20

    (event,) = await events_of(api, "person.face_added")
    assert (event.person_id, event.actor, event.address) == (person["id"], "key:admin", ADDRESS)
    assert event.payload == {"face_id": face["id"], "quality": face["quality"],
                             "source_frame_id": None}


async def test_photos_without_exactly_one_face_are_refused(api: Api) -> None:
    person = await create_person(api, "Nobody")
    version = await gallery_version(api)
    no_face = await upload_face(api, person["id"], "coffee.jpg")
    assert assert_error(no_face, 422, "validation_error")["faces_found"] == 0
    two = await upload_face(api, person["id"], two_faces_photo())
    assert assert_error(two, 422, "validation_error")["faces_found"] == 2
    assert_error(await upload_face(api, person["id"], b"GIF89a not really"), 400,
                 "invalid_frame")
    assert_error(await upload_face(api, person["id"], b""), 400, "invalid_frame")
    as_json = await api.client.post(f"{PERSONS}/{person['id']}/faces", json={"image": "x"},
                                    headers=api.auth("admin"))
    assert_error(as_json, 415, "unsupported_media_type")
    wrong_field = await api.client.post(
        f"{PERSONS}/{person['id']}/faces", headers=api.auth("admin"),
        files={"file": ("p.jpg", frame_bytes("player_left_1.jpg"), "image/jpeg")})
    assert_error(wrong_field, 400, "bad_request")
    assert_error(await upload_face(api, 999, "player_left_1.jpg"), 404, "not_found")
    assert_error(await upload_face(api, person["id"], "player_left_1.jpg", role="operator"),
                 403, "forbidden")

    assert await count_rows(api, PersonFace) == 0
    faces_dir = api.settings.data_dir / "faces"
    assert not faces_dir.exists() or not any(faces_dir.rglob("*.jpg"))
    assert await gallery_version(api) == version
    failed = await events_of(api, "admin.failed")
    assert [e.payload["error"] for e in failed] == [
        "validation_error", "validation_error", "invalid_frame", "invalid_frame",
        "unsupported_media_type", "bad_request", "not_found"]


async def test_removing_a_face_deletes_its_crop(api: Api) -> None:
    person_id, first = await register(api, "Lefty", "player_left_1.jpg")
    second = (await upload_face(api, person_id, "player_left_2.jpg")).json()
    other = await create_person(api, "Other")
    rows = {row.id: row for row in await rows_of(api, PersonFace)}
    paths = {i: api.settings.data_dir / "faces" / str(rows[i].crop_path) for i in rows}
    assert sorted(paths) == [first["id"], second["id"]]
    assert all(path.is_file() for path in paths.values())
    version = await gallery_version(api)

    # A face is removed only through its own person.
    wrong = await api.client.delete(f"{PERSONS}/{other['id']}/faces/{first['id']}",
                                    headers=api.auth("admin"))
    assert_error(wrong, 404, "not_found")
    assert paths[first["id"]].is_file()
    url = f"{PERSONS}/{person_id}/faces/{first['id']}"
    assert_error(await api.client.delete(url, headers=api.auth("viewer")), 403, "forbidden")
    removed = await api.client.delete(url, headers=api.auth("admin"))
    assert removed.status_code == 204, removed.text
    assert not paths[first["id"]].exists() and paths[second["id"]].is_file()
    assert_error(await api.client.get(f"{url}/crop", headers=api.auth("admin")), 404,
                 "not_found")
    assert_error(await api.client.delete(url, headers=api.auth("admin")), 404, "not_found")
    assert [r.id for r in await rows_of(api, PersonFace)] == [second["id"]]
    assert await gallery_version(api) == version + 1
    snapshot = await api.runtime.gallery.snapshot()
    assert snapshot.matrices[ENCODING_MODEL].face_ids.tolist() == [second["id"]]

    (event,) = await events_of(api, "person.face_removed")
    assert (event.person_id, event.actor, event.address) == (person_id, "key:admin", ADDRESS)
    assert event.payload == {"face_id": first["id"]}


async def test_deleting_a_person_deletes_faces_and_crops_and_unlinks_sightings(
    api_any_db: Api,
) -> None:
    api, admin = api_any_db, api_any_db.auth("admin")
    await add_camera(api)
    left, _ = await register(api, "Lefty", "player_left_1.jpg")
    right, _ = await register(api, "Righty", "player_right_1.jpg")
    link = await api.client.post(f"{PERSONS}/{left}/subjects", headers=admin,
                                 json={"provider": "*", "subject": "lefty"})
    assert link.status_code == 201, link.text
    seen_left = the_face(await send_faces(api, "player_left_2.jpg"))
    seen_right = the_face(await send_faces(api, "player_right_2.jpg"))
    assert (seen_left["person_id"], seen_right["person_id"]) == (left, right)
    crops = {row.person_id: api.settings.data_dir / "faces" / str(row.crop_path)
             for row in await rows_of(api, PersonFace)}
    assert all(path.is_file() for path in crops.values())

    # Without erase_sightings: the sighting stays, unlinked, with its face encoding.
    version = await gallery_version(api)
    deleted = await api.client.delete(f"{PERSONS}/{left}", headers=admin)
    assert deleted.status_code == 204, deleted.text
    assert_error(await api.client.get(f"{PERSONS}/{left}", headers=admin), 404, "not_found")
    assert await count_rows(api, PersonFace, person_id=left) == 0
    assert await count_rows(api, PersonSubject) == 0
    assert not crops[left].exists() and crops[right].is_file()
    (kept,) = await rows_of(api, Detection, Detection.id == seen_left["id"])
    assert (kept.person_id, kept.person_similarity) == (None, None)
    assert kept.face_encoding is not None and len(kept.face_encoding) == 512
    assert await gallery_version(api) == version + 1
    detail = await api.client.get(f"/api/v1/detections/{seen_left['id']}", headers=admin)
    assert (detail.json()["person_id"], detail.json()["person"]) == (None, None)

    # With erase_sightings: the sighting's face encoding goes too.
    deleted = await api.client.delete(f"{PERSONS}/{right}", params={"erase_sightings": "true"},
                                      headers=admin)
    assert deleted.status_code == 204, deleted.text
    assert not crops[right].exists()
    assert await count_rows(api, PersonFace) == 0
    (erased,) = await rows_of(api, Detection, Detection.id == seen_right["id"])
    assert (erased.person_id, erased.face_encoding, erased.encoding_model) == (None, None, None)
    assert (erased.x_min, erased.type) == (seen_right["bbox"]["x_min"], "face")
    assert await gallery_version(api) == version + 2
    snapshot = await api.runtime.gallery.snapshot()
    assert (snapshot.matrices, snapshot.names, snapshot.subjects) == ({}, {}, {})

    events = await events_of(api, "person.deleted")
    assert [(e.person_id, e.payload, e.actor, e.address, e.severity) for e in events] == [
        (left, {"faces": 1, "sightings": 1, "erase_sightings": False}, "key:admin", ADDRESS,
         "warning"),
        (right, {"faces": 1, "sightings": 1, "erase_sightings": True}, "key:admin", ADDRESS,
         "warning")]
    assert_error(await api.client.delete(f"{PERSONS}/{right}", headers=admin), 404, "not_found")
