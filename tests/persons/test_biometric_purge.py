"""Biometric care beyond deleting a person: the face encodings kept with detections are erased by
retention once older than their window (globally and per camera) and, at once, by a camera's
`purge-biometrics`. The detections and their link to the person stay; the gallery's own faces
are untouched (the man is still recognised); "find faces like this one" no longer sees what was
erased."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from framewatch.detector.encoder import ENCODING_MODEL
from framewatch.models import Detection, PersonFace
from tests.api.helpers import add_camera, assert_error, rows_of
from tests.api_fixtures import Api, make_settings, start_api
from tests.persons.helpers import events_of, register, search, send_faces, the_face

ENCODINGS_DAYS = 14


async def encodings_by_detection(api: Api) -> dict[int, tuple[bool, str | None, int | None]]:
    """Every detection: (holds a face encoding, its model, the person it names)."""
    return {d.id: (d.face_encoding is not None, d.encoding_model, d.person_id)
            for d in await rows_of(api, Detection)}


async def searched_ids(api: Api) -> tuple[int, set[int]]:
    """How many past faces a search with the man's registered photo looked at, and which."""
    response = await search(api, "player_left_1.jpg")
    assert response.status_code == 200, response.text
    body = response.json()
    return body["searched"], {item["detection_id"] for item in body["items"]}


async def run_retention(api: Api, dry_run: bool) -> dict[str, object]:
    response = await api.client.post("/api/v1/retention/run", json={"dry_run": dry_run},
                                     headers=api.auth("admin"))
    assert response.status_code == 200, response.text
    report: dict[str, object] = response.json()
    return report


async def test_retention_erases_old_face_encodings_but_keeps_sightings_and_gallery(
    tmp_path: Path, any_database_url: str,
) -> None:
    # Detections and frame images kept (0 / a year): only the encodings' window applies here.
    apps = start_api(make_settings(tmp_path, any_database_url,
                                   retention_face_encodings_days=ENCODINGS_DAYS,
                                   retention_detections_days=365, retention_frames_days=0))
    api = await anext(apps)
    try:
        await add_camera(api, "gate")
        await add_camera(api, "yard", retention_face_encodings_days=0)  # keeps them forever
        person_id, _ = await register(api, "Lefty", "player_left_1.jpg")
        (registered,) = await rows_of(api, PersonFace)
        now = datetime.now(UTC)
        old, recent = (now - timedelta(days=ENCODINGS_DAYS + 6)), (now - timedelta(days=1))
        seen = {}
        for tag, camera, when in (("old-gate", "gate", old), ("recent-gate", "gate", recent),
                                  ("old-yard", "yard", old)):
            face = the_face(await send_faces(api, "player_left_2.jpg", camera_id=camera,
                                             tag=tag, captured_at=when.isoformat()))
            assert face["person_id"] == person_id, (tag, face)
            seen[tag] = face["id"]
        assert await searched_ids(api) == (3, set(seen.values()))

        dry = await run_retention(api, dry_run=True)
        assert (dry["dry_run"], dry["face_encodings"], dry["detections"]) == (True, 1, 0)
        assert all(has for has, _, _ in (await encodings_by_detection(api)).values())
        done = await run_retention(api, dry_run=False)
        assert (done["dry_run"], done["face_encodings"], done["detections"]) == (False, 1, 0)

        # Only the old gate sighting lost its encoding; it still names the man.
        assert await encodings_by_detection(api) == {
            seen["old-gate"]: (False, None, person_id),
            seen["recent-gate"]: (True, ENCODING_MODEL, person_id),
            seen["old-yard"]: (True, ENCODING_MODEL, person_id)}
        sightings = await api.client.get(f"/api/v1/persons/{person_id}/sightings",
                                         headers=api.auth("viewer"))
        assert {s["detection_id"] for s in sightings.json()["items"]} == set(seen.values())
        assert await searched_ids(api) == (2, {seen["recent-gate"], seen["old-yard"]})

        # The gallery is not subject to retention: its face is intact and still matches.
        (kept,) = await rows_of(api, PersonFace)
        assert (kept.id, kept.encoding) == (registered.id, registered.encoding)
        again = the_face(await send_faces(api, "player_left_2.jpg", tag="after"))
        assert again["person_id"] == person_id
        assert (await run_retention(api, dry_run=False))["face_encodings"] == 0
    finally:
        await anext(apps, None)


async def test_purging_a_cameras_biometrics_erases_its_face_encodings_at_once(
    api_any_db: Api,
) -> None:
    api, admin = api_any_db, api_any_db.auth("admin")
    await add_camera(api, "gate")
    await add_camera(api, "yard")
    person_id, _ = await register(api, "Lefty", "player_left_1.jpg")
    at_gate = the_face(await send_faces(api, "player_left_2.jpg", camera_id="gate"))
    stranger = the_face(await send_faces(api, "astronaut.jpg", camera_id="gate"))
    at_yard = the_face(await send_faces(api, "player_left_2.jpg", camera_id="yard", tag="y"))
    assert (at_gate["person_id"], stranger["person_id"], at_yard["person_id"]) == (
        person_id, None, person_id)
    assert (await searched_ids(api))[0] == 3

    purged = await api.client.post("/api/v1/cameras/gate/purge-biometrics", headers=admin)
    assert purged.status_code == 200, purged.text
    assert purged.json() == {"face_encodings": 2}
    stored = await encodings_by_detection(api)
    assert (stored[at_gate["id"]], stored[stranger["id"]]) == ((False, None, person_id),
                                                               (False, None, None))
    assert stored[at_yard["id"]][:2] == (True, ENCODING_MODEL)
    assert await searched_ids(api) == (1, {at_yard["id"]})
    (event,) = await events_of(api, "biometrics.purged")
    assert (event.camera_id, event.actor, event.severity, event.payload) == (
        "gate", "key:admin", "warning", {"face_encodings": 2})

    again = await api.client.post("/api/v1/cameras/gate/purge-biometrics", headers=admin)
    assert again.json() == {"face_encodings": 0}
    assert_error(await api.client.post("/api/v1/cameras/nowhere/purge-biometrics",
                                       headers=admin), 404, "not_found")
    # The registered face is not the camera's: the man is still recognised there.
    assert len(await rows_of(api, PersonFace)) == 1
    later = the_face(await send_faces(api, "player_left_2.jpg", camera_id="gate", tag="later"))
    assert later["person_id"] == person_id
