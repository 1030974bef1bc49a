"""Registering a face that a camera saw (from a past detection), and linking providers'
subjects to persons."""

from __future__ import annotations

import os
import stat

import pytest
from sqlalchemy import update

from framewatch.core.database import utcnow
from framewatch.models import Detection, Frame, PersonFace
from tests.api.helpers import add_camera, assert_error, rows_of
from tests.api_fixtures import Api
from tests.persons.helpers import (
    PERSONS,
    create_person,
    distance,
    events_of,
    gallery_version,
    send_faces,
)


async def test_a_face_seen_by_a_camera_is_registered_from_its_detection(api: Api) -> None:
    admin = api.auth("admin")
    await add_camera(api)
    answer = await send_faces(api, "player_right_1.jpg")
    (seen,) = answer["detections"]
    person = await create_person(api, "Righty")
    url = f"{PERSONS}/{person['id']}/faces/from-detection"
    version = await gallery_version(api)

    response = await api.client.post(url, json={"detection_id": seen["id"]}, headers=admin)
    assert response.status_code == 201, response.text
    face = response.json()
    assert face["source_frame_id"] == answer["frame_id"]
    assert face["box"] == seen["bbox"]
    height = seen["bbox"]["y_max"] - seen["bbox"]["y_min"]
    assert face["quality"] == pytest.approx(seen["confidence"] * min(1, height / 80), abs=1e-3)
    assert await gallery_version(api) == version + 1
    # The same face of the same frame, encoded again from the stored box, which is rounded to
    # whole pixels: on this 37 px face that alone moves the encoding by 0.146 (the detector's
    # box is 36.6 px wide; dlib's landmark square becomes 36 px instead of 37).
    (row,) = await rows_of(api, PersonFace)
    (detection,) = await rows_of(api, Detection, Detection.id == seen["id"])
    assert distance(row.encoding, detection.face_encoding) < 0.2
    crop = api.settings.data_dir / "faces" / str(row.crop_path)
    assert stat.S_IMODE(os.stat(crop).st_mode) == 0o600
    (event,) = await events_of(api, "person.face_added")
    assert event.payload["source_frame_id"] == answer["frame_id"]

    # Not a face, not a detection, a frame no longer stored: refused, nothing registered.
    body = await send_faces(api, "player_right_2.jpg", detection_types="face,person")
    (not_a_face,) = [d for d in body["detections"] if d["type"] == "person"]
    (his_face,) = [d for d in body["detections"] if d["type"] == "face"]
    assert his_face["person"]["name"] == "Righty"  # recognised from the registered sighting
    refused = await api.client.post(url, json={"detection_id": not_a_face["id"]}, headers=admin)
    assert_error(refused, 422, "validation_error")
    for detection_id, status in ((999_999, 404), (2**63 - 1, 404), (0, 422), ("x", 422)):
        response = await api.client.post(url, json={"detection_id": detection_id},
                                         headers=admin)
        assert response.status_code == status, (detection_id, response.text)
    async with api.runtime.session_factory() as session:
        await session.execute(update(Frame).values(image_purged_at=utcnow()))
        await session.commit()
    purged = await api.client.post(url, json={"detection_id": seen["id"]}, headers=admin)
    assert_error(purged, 422, "validation_error")
    other = await api.client.post(f"{PERSONS}/999/faces/from-detection", headers=admin,
                                  json={"detection_id": seen["id"]})
    assert_error(other, 404, "not_found")
    assert [r.id for r in await rows_of(api, PersonFace)] == [face["id"]]


async def test_subjects_are_linked_to_one_person_per_provider(api_any_db: Api) -> None:
    api, admin = api_any_db, api_any_db.auth("admin")
    ann = (await create_person(api, "Ann"))["id"]
    ben = (await create_person(api, "Ben"))["id"]
    version = await gallery_version(api)

    async def link(person_id: int, **body: str) -> dict[str, object]:
        response = await api.client.post(f"{PERSONS}/{person_id}/subjects", json=body,
                                         headers=admin)
        assert response.status_code == 201, response.text
        created: dict[str, object] = response.json()
        return created

    alice = await link(ann, provider="cf", subject="alice")
    assert (alice["person_id"], alice["provider"], alice["subject"]) == (ann, "cf", "alice")
    ally = await link(ann, subject="ally")
    assert ally["provider"] == "*"
    assert (await link(ann, provider="cf", subject="alice"))["id"] == alice["id"]
    taken = await api.client.post(f"{PERSONS}/{ben}/subjects", headers=admin,
                                  json={"provider": "cf", "subject": "alice"})
    assert_error(taken, 409, "conflict")
    elsewhere = await link(ben, provider="ds", subject="alice")
    for invalid in ({"provider": "bad/name", "subject": "x"}, {"subject": ""},
                    {"subject": "x", "person": 1}, {"provider": "cf"}):
        response = await api.client.post(f"{PERSONS}/{ann}/subjects", json=invalid,
                                         headers=admin)
        assert_error(response, 422, "validation_error")
    refused = await api.client.post(f"{PERSONS}/{ann}/subjects", headers=api.auth("operator"),
                                    json={"subject": "x"})
    assert_error(refused, 403, "forbidden")

    listed = await api.client.get(f"{PERSONS}/{ann}/subjects", headers=api.auth("viewer"))
    assert [(s["id"], s["provider"], s["subject"]) for s in listed.json()] == [
        (alice["id"], "cf", "alice"), (ally["id"], "*", "ally")]
    wrong = await api.client.delete(f"{PERSONS}/{ben}/subjects/{alice['id']}", headers=admin)
    assert_error(wrong, 404, "not_found")
    gone = await api.client.delete(f"{PERSONS}/{ann}/subjects/{alice['id']}", headers=admin)
    assert gone.status_code == 204
    listed = await api.client.get(f"{PERSONS}/{ben}/subjects", headers=admin)
    assert [s["id"] for s in listed.json()] == [elsewhere["id"]]
    snapshot = await api.runtime.gallery.snapshot()
    assert snapshot.subjects == {("*", "ally"): ann, ("ds", "alice"): ben}

    # Four links (one of them again) and one unlink changed the gallery.
    assert await gallery_version(api) == version + 5
    events = await events_of(api, "person.updated")
    assert [(e.person_id, e.payload["provider"], e.payload["subject"]) for e in events] == [
        (ann, "cf", "alice"), (ann, "*", "ally"), (ann, "cf", "alice"), (ben, "ds", "alice"),
        (ann, "cf", "alice")]
    assert {e.actor for e in events} == {"key:admin"}
