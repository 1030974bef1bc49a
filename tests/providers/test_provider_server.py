"""The DeepStack-compatible server around the built-in detector, over real HTTP on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from framewatch.providers.server import create_provider_server_app
from tests.detector_fixtures import (
    ASTRONAUT_FACE_CENTRE,
    STREET_PERSON_NEAR_CAMERA,
    frame_bytes,
    shared_detector,
)
from tests.support.servers import serve_app

PREDICTION_KEYS = {"label", "confidence", "x_min", "y_min", "x_max", "y_max"}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve_app(create_provider_server_app(shared_detector)) as url:
        yield url


def post(url: str, path: str, image: bytes | None, **form: str) -> tuple[int, dict[str, Any]]:
    files = {"image": ("frame.jpg", image, "image/jpeg")} if image is not None else None
    response = httpx.post(url + path, files=files, data=form or None, timeout=30)
    body: dict[str, Any] = response.json()
    return response.status_code, body


def check_shape(body: dict[str, Any], width: int, height: int) -> list[dict[str, Any]]:
    assert body["success"] is True
    assert isinstance(body["duration"], int) and body["duration"] >= 0
    predictions: list[dict[str, Any]] = body["predictions"]
    for prediction in predictions:
        assert set(prediction) == PREDICTION_KEYS
        for key in ("x_min", "y_min", "x_max", "y_max"):
            assert isinstance(prediction[key], int)
        assert 0 <= prediction["x_min"] < prediction["x_max"] <= width
        assert 0 <= prediction["y_min"] < prediction["y_max"] <= height
        assert 0 < prediction["confidence"] <= 1
    return predictions


def test_detection_finds_the_astronaut(server: str) -> None:
    status, body = post(server, "/v1/vision/detection", frame_bytes("astronaut.jpg"))

    assert status == 200
    predictions = check_shape(body, 512, 512)
    persons = [p for p in predictions if p["label"] == "person"]
    assert len(persons) >= 1
    # Her body covers the frame top to bottom, around her face.
    face_x, face_y = ASTRONAUT_FACE_CENTRE
    person = persons[0]
    assert person["x_min"] < face_x - 40 and person["x_max"] > face_x + 40
    assert person["y_min"] < face_y - 50 and person["y_max"] > 450
    assert "face" not in {p["label"] for p in predictions}


def test_detection_on_a_street(server: str) -> None:
    status, body = post(server, "/v1/vision/detection", frame_bytes("street.jpg"))

    assert status == 200
    predictions = check_shape(body, 640, 480)
    persons = [p for p in predictions if p["label"] == "person"]
    assert len(persons) >= 5
    near = STREET_PERSON_NEAR_CAMERA
    assert any(
        abs(p["x_min"] - near.x_min) < 10 and abs(p["y_max"] - near.y_max) < 10 for p in persons
    )
    assert {"car", "truck"} & {p["label"] for p in predictions}
    confidences = [p["confidence"] for p in predictions]
    assert confidences == sorted(confidences, reverse=True)


def test_detection_reports_any_coco_object_and_the_threshold(server: str) -> None:
    status, body = post(server, "/v1/vision/detection", frame_bytes("coffee.jpg"))
    assert status == 200
    assert {p["label"] for p in check_shape(body, 600, 400)} == {"cup"}

    status, body = post(server, "/v1/vision/detection", frame_bytes("motorcycle.jpg"))
    assert [p["label"] for p in check_shape(body, 640, 432)] == ["motorcycle"]

    status, strict = post(
        server, "/v1/vision/detection", frame_bytes("street.jpg"), min_confidence="0.85"
    )
    status, loose = post(
        server, "/v1/vision/detection", frame_bytes("street.jpg"), min_confidence="0.3"
    )
    assert status == 200
    assert 0 < len(strict["predictions"]) < len(loose["predictions"])
    assert all(p["confidence"] >= 0.85 for p in strict["predictions"])


def test_face_endpoint(server: str) -> None:
    status, body = post(server, "/v1/vision/face", frame_bytes("astronaut.jpg"))

    assert status == 200
    (face,) = check_shape(body, 512, 512)
    assert face["label"] == "face" and face["confidence"] > 0.85
    assert abs((face["x_min"] + face["x_max"]) / 2 - ASTRONAUT_FACE_CENTRE[0]) < 15
    assert abs((face["y_min"] + face["y_max"]) / 2 - ASTRONAUT_FACE_CENTRE[1]) < 15

    status, body = post(server, "/v1/vision/face", frame_bytes("coffee.jpg"))
    assert status == 200 and body["success"] is True and body["predictions"] == []


@pytest.mark.parametrize("path", ["/v1/vision/detection", "/v1/vision/face"])
def test_missing_image(server: str, path: str) -> None:
    status, body = post(server, path, None, min_confidence="0.5")
    assert status == 400
    assert body == {"success": False, "error": "No valid image file found", "duration": 0}

    # A JSON body is not a multipart form: no image either.
    response = httpx.post(server + path, json={"image": "astronaut.jpg"})
    assert response.status_code == 400 and response.json()["success"] is False


@pytest.mark.parametrize(
    ("path", "error"),
    [("/v1/vision/detection", "invalid image file"), ("/v1/vision/face", "invalid image")],
)
def test_undecodable_image(server: str, path: str, error: str) -> None:
    status, body = post(server, path, b"\xff\xd8\xff\xe0 this is not a jpeg")
    assert status == 400
    assert body == {"success": False, "error": error, "duration": 0}


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("high", "Invalid value for min_confidence"),
        ("1.5", "min_confidence cannot be greater than 1"),
    ],
)
def test_bad_min_confidence(server: str, value: str, error: str) -> None:
    status, body = post(
        server, "/v1/vision/detection", frame_bytes("coffee.jpg"), min_confidence=value
    )
    assert status == 400
    assert body == {"success": False, "error": error, "duration": 0}


@pytest.mark.parametrize("path", ["/", "/v1/status"])
def test_status(server: str, path: str) -> None:
    response = httpx.get(server + path)
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["model"] == "yolov3-tiny+centerface+dlib_resnet_v1"
    assert body["endpoints"] == ["/v1/vision/detection", "/v1/vision/face"]


def test_api_key() -> None:
    calls = 0

    def factory() -> Any:
        nonlocal calls
        calls += 1
        return shared_detector()

    app = create_provider_server_app(factory, api_key="s3cret", min_confidence=0.5)
    with serve_app(app) as url:
        status, body = post(url, "/v1/vision/face", frame_bytes("astronaut.jpg"))
        assert status == 401
        assert body == {"success": False, "error": "Incorrect api key", "duration": 0}

        status, body = post(url, "/v1/vision/face", frame_bytes("astronaut.jpg"), api_key="s3cret")
        assert status == 200 and len(body["predictions"]) == 1
        post(url, "/v1/vision/detection", frame_bytes("street.jpg"), api_key="s3cret")
    # Created once, at start-up, however many requests.
    assert calls == 1
