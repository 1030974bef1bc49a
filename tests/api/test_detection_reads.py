"""Reading detections back: filters, keyset pages under inserts, one by id, the live view.

Detections come from real photographs sent through send-frame to the built-in detector; what a
filter should return is worked out in Python from the stored rows, independently of the SQL.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from framewatch.models import Detection
from tests.api.helpers import add_camera, assert_error, jpeg_variant, post_frame, rows_of
from tests.api_fixtures import Api, make_settings, start_api

DETECTIONS = "/api/v1/detections"
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def at(minutes: int) -> str:
    return T0.replace(minute=minutes).isoformat()


async def send(api: Api, image: str | bytes, camera_id: str = "gate",
               **fields: str) -> dict[str, Any]:
    response = await post_frame(api, image, camera_id=camera_id, **fields)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def fetch(api: Api, **params: Any) -> dict[str, Any]:
    response = await api.client.get(DETECTIONS, params=params, headers=api.auth("viewer"))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def seed(api: Api) -> None:
    """gate: astronaut at 10:00, street at 10:05; yard: motorcycle at 10:10, coffee at 10:15."""
    await add_camera(api, "gate")
    await add_camera(api, "yard")
    await send(api, "astronaut.jpg", captured_at=at(0))
    await send(api, "street.jpg", captured_at=at(5))
    await send(api, "motorcycle.jpg", camera_id="yard", captured_at=at(10))
    await send(api, "coffee.jpg", camera_id="yard", captured_at=at(15))


def newest_first(rows: list[Detection]) -> list[int]:
    return [r.id for r in sorted(rows, key=lambda r: (r.detected_at, r.id), reverse=True)]


FILTERS: list[tuple[dict[str, Any], Callable[[Detection], bool]]] = [
    ({}, lambda d: True),
    ({"camera_id": "gate"}, lambda d: d.camera_id == "gate"),
    ({"camera_id": "yard"}, lambda d: d.camera_id == "yard"),
    ({"camera_id": "nowhere"}, lambda d: False),
    ({"types": "vehicle"}, lambda d: d.type == "vehicle"),
    ({"types": "face, vehicle"}, lambda d: d.type in ("face", "vehicle")),
    ({"label": "car"}, lambda d: d.label == "car"),
    ({"label": "motorcycle"}, lambda d: d.label == "motorcycle"),
    ({"min_confidence": 0.9}, lambda d: d.confidence >= 0.9),
    ({"since": at(5)}, lambda d: d.detected_at >= T0.replace(minute=5)),
    ({"until": at(5)}, lambda d: d.detected_at < T0.replace(minute=5)),
    # The same instants in another zone select the same rows.
    ({"since": "2026-03-01T12:05:00+02:00", "until": "2026-03-01T05:10:00-05:00"},
     lambda d: T0.replace(minute=5) <= d.detected_at < T0.replace(minute=10)),
    ({"camera_id": "gate", "types": "person", "min_confidence": 0.85},
     lambda d: d.camera_id == "gate" and d.type == "person" and d.confidence >= 0.85),
]


async def test_filters_select_exactly_the_matching_detections(api_any_db: Api) -> None:
    api = api_any_db
    await seed(api)
    stored = await rows_of(api, Detection)
    assert {d.type for d in stored} == {"person", "face", "vehicle"}
    assert {d.label for d in stored} >= {"car", "motorcycle", "person", "face"}
    for params, matches in FILTERS:
        page = await fetch(api, limit=500, **params)
        expected = newest_first([d for d in stored if matches(d)])
        assert [item["id"] for item in page["items"]] == expected, params
        assert page["next_cursor"] is None
        for item in page["items"]:
            assert item["provider"] == "builtin" and item["model"]
    # The photographs make every filter meaningful: each one finds some rows and leaves others.
    assert all(any(m(d) for d in stored) for p, m in FILTERS if p.get("camera_id") != "nowhere")
    assert all(not all(m(d) for d in stored) for p, m in FILTERS if p)


async def test_a_listed_detection_carries_its_frame_camera_and_provenance(api_any_db: Api) -> None:
    api = api_any_db
    await add_camera(api)
    sent = await send(api, "astronaut.jpg", captured_at=at(0))
    page = await fetch(api)
    assert len(page["items"]) == len(sent["detections"]) >= 2
    for item in page["items"]:
        brief = next(d for d in sent["detections"] if d["id"] == item["id"])
        assert {k: item[k] for k in brief} == brief
        assert item["frame_id"] == sent["frame_id"] and item["camera_id"] == "gate"
        assert datetime.fromisoformat(item["detected_at"]) == T0
        assert item["has_encoding"] is (item["type"] == "face")
        assert (item["encoding_model"] is not None) is (item["type"] == "face")
        assert item["latency_ms"] > 0


@pytest.mark.parametrize(
    "params",
    [{"since": "2026-03-01T10:00:00"}, {"min_confidence": 1.5}, {"min_confidence": -0.1},
     {"types": "Person"}, {"types": "person;face"}, {"limit": 0}, {"limit": 501},
     {"camera_id": "c" * 65}],
    ids=["naive-since", "confidence-over-1", "confidence-negative", "upper-case-type",
         "bad-type-list", "limit-0", "limit-501", "camera-id-too-long"],
)
async def test_invalid_query_parameters_get_422(api: Api, params: dict[str, Any]) -> None:
    response = await api.client.get(DETECTIONS, params=params, headers=api.auth("viewer"))
    assert_error(response, 422, "validation_error")


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [("", {"camera_id": "\x00"}, "camera_id"), ("", {"label": "car\x00"}, "label"),
     ("/live", {"camera_id": "\x00"}, "camera_id"),
     ("", {"since": "9999-12-31T23:00:00-05:00"}, "since"),
     ("", {"until": "0001-01-01T00:00:00+05:00"}, "until")],
    ids=["nul-camera", "nul-label", "nul-live-camera", "since-past-year-9999",
         "until-before-year-1"],
)
async def test_values_no_database_can_compare_get_400(
    api_any_db: Api, path: str, params: dict[str, str], field: str
) -> None:
    api = api_any_db
    response = await api.client.get(DETECTIONS + path, params=params, headers=api.auth("viewer"))
    assert assert_error(response, 400, "bad_request")["field"] == field


async def test_pages_are_stable_while_new_frames_arrive(api_any_db: Api) -> None:
    api = api_any_db
    await add_camera(api, "gate")
    await add_camera(api, "yard")
    await send(api, "astronaut.jpg")
    await send(api, "street.jpg")
    await send(api, "motorcycle.jpg", camera_id="yard")
    before = newest_first(await rows_of(api, Detection))
    assert len(before) >= 10

    for params, where, limit in (({}, True, 3),
                                 ({"camera_id": "gate"}, Detection.camera_id == "gate", 5)):
        expected = newest_first(await rows_of(api, Detection, where))
        seen: list[dict[str, Any]] = []
        cursor: str | None = None
        for page_number in range(50):
            page = await fetch(api, limit=limit, **params,
                               **({"cursor": cursor} if cursor else {}))
            assert len(page["items"]) == limit or page["next_cursor"] is None
            seen.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
            # Newer detections arrive between page fetches (the same pixels, other bytes).
            await send(api, jpeg_variant("street.jpg", f"{params}-{page_number}"))
        assert cursor is None
        ids = [item["id"] for item in seen]
        assert ids == expected, params  # no duplicates, no gaps, newest first
        keys = [(datetime.fromisoformat(i["detected_at"]), i["id"]) for i in seen]
        assert keys == sorted(keys, reverse=True) and len(set(keys)) == len(keys)

    # Reading from the start again shows the new detections first, then the old ones.
    everything = await fetch(api, limit=500)
    all_ids = [item["id"] for item in everything["items"]]
    assert all_ids == newest_first(await rows_of(api, Detection))
    assert len(all_ids) > len(before) and all_ids[-len(before):] == before


async def test_the_last_full_page_has_no_cursor_and_an_exact_fit_ends_cleanly(
    api_any_db: Api,
) -> None:
    api = api_any_db
    await add_camera(api)
    sent = await send(api, "street.jpg")
    total = len(sent["detections"])
    exact = await fetch(api, limit=total)
    assert len(exact["items"]) == total and exact["next_cursor"] is None
    first = await fetch(api, limit=total - 1)
    assert first["next_cursor"] is not None
    rest = await fetch(api, limit=total, cursor=first["next_cursor"])
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    paged = [i["id"] for i in first["items"] + rest["items"]]
    assert sorted(paged) == sorted(d["id"] for d in sent["detections"])


def b64(value: object) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


GARBAGE_CURSORS = {
    "not-base64": "garbage!!",
    "plain-word": "garbage",
    "not-json": b64(b"not json"),
    "object": b64({"a": 1, "b": 2}),
    "numbers": b64([1, 2]),
    "three-items": b64(["2026-03-01T10:00:00+00:00", 5, 6]),
    "naive-time": b64(["2026-03-01T10:00:00", 5]),
    "id-as-text": b64(["2026-03-01T10:00:00+00:00", "5"]),
    "id-as-bool": b64(["2026-03-01T10:00:00+00:00", True]),
    "id-as-float": b64(["2026-03-01T10:00:00+00:00", 5.5]),
    "id-huge": b64(["2026-03-01T10:00:00+00:00", 10**30]),
    "id-just-over-int64": b64(["2026-03-01T10:00:00+00:00", 2**63]),
    "time-out-of-range": b64(["0001-01-01T00:00:00+05:00", 5]),
    "not-utf8": b64(b"\xff\xfe\xfd"),
}


@pytest.mark.parametrize("cursor", GARBAGE_CURSORS.values(), ids=GARBAGE_CURSORS.keys())
async def test_a_garbage_cursor_gets_400(api_any_db: Api, cursor: str) -> None:
    api = api_any_db
    response = await api.client.get(DETECTIONS, params={"cursor": cursor},
                                    headers=api.auth("viewer"))
    body = assert_error(response, 400, "bad_request")
    assert body["field"] == "cursor"


async def test_a_cursor_with_a_large_id_or_another_zone_is_read_correctly(
    api_any_db: Api,
) -> None:
    api = api_any_db
    await add_camera(api)
    await send(api, "astronaut.jpg", captured_at=at(0))
    await send(api, "motorcycle.jpg", captured_at=at(10))
    everything = [item["id"] for item in (await fetch(api))["items"]]
    # Detection ids are 64-bit: a cursor after id 2^40 is valid and passes every row.
    beyond = await fetch(api, cursor=b64(["2026-03-01T10:10:00+00:00", 2**40]))
    assert [item["id"] for item in beyond["items"]] == everything
    # 12:10 at +02:00 is 10:10 UTC: the motorcycle's row with a larger id is still included,
    # the astronaut's rows at 10:00 too; no row is skipped for the zone.
    same_instant = await fetch(api, cursor=b64(["2026-03-01T12:10:00+02:00", 2**40]))
    assert [item["id"] for item in same_instant["items"]] == everything
    before_motorcycle = await fetch(api, cursor=b64(["2026-03-01T12:10:00+02:00", 1]))
    assert before_motorcycle["items"]
    assert {datetime.fromisoformat(i["detected_at"]) for i in before_motorcycle["items"]} == {T0}


async def test_get_one_detection_and_404s(api_any_db: Api) -> None:
    api = api_any_db
    await add_camera(api)
    sent = await send(api, "astronaut.jpg")
    listed = {item["id"]: item for item in (await fetch(api))["items"]}
    for brief in sent["detections"]:
        response = await api.client.get(f"{DETECTIONS}/{brief['id']}", headers=api.auth("viewer"))
        assert response.status_code == 200
        assert response.json() == listed[brief["id"]]
    for missing in (999_999, 0, -1, 2**63, 10**30):
        response = await api.client.get(f"{DETECTIONS}/{missing}", headers=api.auth("viewer"))
        assert_error(response, 404, "not_found")
    assert_error(await api.client.get(f"{DETECTIONS}/abc", headers=api.auth("viewer")), 422,
                 "validation_error")


@pytest.fixture
async def live_api(tmp_path: Path, any_database_url: str) -> AsyncIterator[Api]:
    """The app with a 20 s live window, the detector loaded before any frame arrives."""
    settings = make_settings(tmp_path, any_database_url, live_window_seconds=20)
    async for running in start_api(settings):
        await running.runtime.warm_up_detector()
        yield running


async def live(api: Api, **params: str) -> dict[str, Any]:
    response = await api.client.get(f"{DETECTIONS}/live", params=params,
                                    headers=api.auth("viewer"))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_live_shows_each_cameras_latest_processed_frame_only(live_api: Api) -> None:
    api = live_api
    assert await live(api) == {"window_seconds": 20.0, "cameras": []}
    await add_camera(api, "gate")
    await add_camera(api, "yard")
    await add_camera(api, "silent")
    await send(api, "astronaut.jpg")
    street = await send(api, "street.jpg")
    motorcycle = await send(api, "motorcycle.jpg", camera_id="yard")

    view = await live(api)
    assert view["window_seconds"] == 20.0
    assert [c["camera_id"] for c in view["cameras"]] == ["gate", "yard"]
    gate, yard = view["cameras"]
    assert gate["frame_id"] == street["frame_id"] and gate["provider"] == "builtin"
    assert gate["detections"] == street["detections"]
    assert yard["frame_id"] == motorcycle["frame_id"]
    assert yard["detections"] == motorcycle["detections"]
    assert datetime.fromisoformat(gate["processed_at"]) >= datetime.fromisoformat(
        gate["received_at"])

    # A frame with nothing in it is still the latest: the camera shows it, empty.
    coffee = await send(api, "coffee.jpg", camera_id="yard")
    yard = (await live(api, camera_id="yard"))["cameras"]
    assert yard == [{**yard[0], "frame_id": coffee["frame_id"], "detections": []}]


async def test_live_filters_by_camera_and_type(live_api: Api) -> None:
    api = live_api
    await add_camera(api, "gate")
    await add_camera(api, "yard")
    astronaut = await send(api, "astronaut.jpg")
    motorcycle = await send(api, "motorcycle.jpg", camera_id="yard")

    only_yard = await live(api, camera_id="yard")
    assert [c["camera_id"] for c in only_yard["cameras"]] == ["yard"]
    assert only_yard["cameras"][0]["frame_id"] == motorcycle["frame_id"]
    assert (await live(api, camera_id="nowhere"))["cameras"] == []

    faces = await live(api, types="face")
    by_camera = {c["camera_id"]: c for c in faces["cameras"]}
    expected_faces = [d for d in astronaut["detections"] if d["type"] == "face"]
    assert expected_faces and by_camera["gate"]["detections"] == expected_faces
    assert by_camera["yard"]["detections"] == []
    vehicles = await live(api, types="vehicle,person", camera_id="gate")
    assert [c["camera_id"] for c in vehicles["cameras"]] == ["gate"]
    assert vehicles["cameras"][0]["detections"] == [
        d for d in astronaut["detections"] if d["type"] in ("vehicle", "person")]
    bad = await api.client.get(f"{DETECTIONS}/live", params={"types": "no;sql"},
                               headers=api.auth("viewer"))
    assert_error(bad, 422, "validation_error")


async def test_a_camera_whose_last_frame_left_the_window_is_absent(
    tmp_path: Path, any_database_url: str
) -> None:
    settings = make_settings(tmp_path, any_database_url, live_window_seconds=2)
    async for api in start_api(settings):
        await add_camera(api, "old")
        await add_camera(api, "new")
        await send(api, "motorcycle.jpg", camera_id="old")  # loads every model once
        # Vehicle-only detection on a frame with nothing in it keeps the frames below quick.
        last_old = await send(api, "coffee.jpg", camera_id="old", detection_types="vehicle")
        assert [(c["camera_id"], c["frame_id"]) for c in (await live(api))["cameras"]] == [
            ("old", last_old["frame_id"])]
        await asyncio.sleep(2)
        fresh = await send(api, "coffee.jpg", camera_id="new", detection_types="vehicle")
        view = await live(api)
        assert view["window_seconds"] == 2.0
        assert [(c["camera_id"], c["frame_id"]) for c in view["cameras"]] == [
            ("new", fresh["frame_id"])]
        # Still stored and listed, only no longer live.
        assert {i["camera_id"] for i in (await fetch(api))["items"]} == {"old"}
