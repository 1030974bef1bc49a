"""DeepStackProvider against a fake DeepStack speaking its real wire format over real HTTP."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest

from framewatch.providers.base import (
    BoundingBox,
    ProviderResponseError,
    ProviderSpec,
    ProviderUnreachable,
)
from framewatch.providers.deepstack import DeepStackProvider
from tests.providers.wire_servers import (
    Script,
    deepstack_app,
    jpeg_frame,
    malformed,
    not_json,
    ok,
    served,
    sleep,
    status,
)
from tests.support.servers import free_port

FRAME = jpeg_frame(320, 240)
ALL = frozenset({"person", "vehicle", "face"})
PERSON = {"label": "person", "confidence": 0.9, "x_min": 1, "y_min": 2, "x_max": 30, "y_max": 40}


def spec(url: str, **changes: Any) -> ProviderSpec:
    values: dict[str, Any] = {
        "name": "ds-test", "kind": "deepstack", "base_url": url, "timeout_seconds": 2.0,
        "max_retries": 2, "retry_backoff_seconds": 0.01, **changes,
    }  # fmt: skip
    return ProviderSpec(**values)


def answer(*predictions: dict[str, Any]) -> dict[str, Any]:
    return {"success": True, "predictions": list(predictions), "duration": 0}


async def test_objects_and_faces_come_back_in_pixels_with_types() -> None:
    fake = deepstack_app()
    async with served(fake) as (url, deps):
        result = await DeepStackProvider(spec(url), deps).detect(FRAME, ALL)

    found = [(o.type, o.label, o.confidence, o.box, o.subject) for o in result.objects]
    assert found == [
        ("person", "person", 0.91, BoundingBox(10, 20, 110, 220), None),
        ("vehicle", "car", 0.75, BoundingBox(150, 100, 300, 200), None),
        ("face", "face", 0.97, BoundingBox(40, 30, 80, 90), None),
        ("face", "face", 0.88, BoundingBox(200, 40, 240, 95), None),
    ]
    assert result.model == "deepstack:detection+face"
    assert result.attempts == 1
    assert result.latency_ms > 0
    assert set(result.raw) == {"/v1/vision/detection", "/v1/vision/face"}
    assert result.raw["/v1/vision/detection"]["predictions"][0]["label"] == "person"
    assert result.objects[0].attributes == {"endpoint": "/v1/vision/detection"}


async def test_the_request_carries_the_image_and_threshold_like_deepstack_expects() -> None:
    fake = deepstack_app()
    async with served(fake) as (url, deps):
        await DeepStackProvider(spec(url, min_confidence=0.45), deps).detect(FRAME, ALL)

    assert fake.paths == ["/v1/vision/detection", "/v1/vision/face"]
    for request in fake.received:
        assert request.method == "POST"
        assert request.form == {"min_confidence": "0.45"}
        image = request.files["image"]
        assert (image.filename, image.content_type) == ("frame.jpg", "image/jpeg")
        assert image.data == FRAME.data and image.size == len(FRAME.data)


@pytest.mark.parametrize(
    ("types", "paths", "labels"),
    [
        ({"person"}, ["/v1/vision/detection"], ["person"]),
        ({"vehicle"}, ["/v1/vision/detection"], ["car"]),
        ({"face"}, ["/v1/vision/face"], ["face", "face"]),
        ({"cat"}, [], []),  # not among the provider's detection types
        (set(), [], []),
    ],
)
async def test_only_the_endpoints_the_types_need_are_called(
    types: set[str], paths: list[str], labels: list[str]
) -> None:
    fake = deepstack_app()
    async with served(fake) as (url, deps):
        result = await DeepStackProvider(spec(url), deps).detect(FRAME, frozenset(types))

    assert fake.paths == paths
    assert [o.label for o in result.objects] == labels
    assert set(result.raw) == set(paths)


async def test_answers_below_min_confidence_are_dropped_even_if_the_server_sends_them() -> None:
    low = {**PERSON, "confidence": 0.44}
    fake = deepstack_app(Script(ok(answer(PERSON, low))))
    async with served(fake) as (url, deps):
        provider = DeepStackProvider(spec(url, min_confidence=0.45), deps)
        result = await provider.detect(FRAME, frozenset({"person"}))

    assert [o.confidence for o in result.objects] == [0.9]


async def test_a_zero_threshold_is_sent_as_a_small_one_because_deepstack_hangs_on_zero() -> None:
    fake = deepstack_app()
    async with served(fake) as (url, deps):
        provider = DeepStackProvider(spec(url, min_confidence=0.0), deps)
        result = await provider.detect(FRAME, frozenset({"person", "vehicle"}))

    assert fake.received[0].form["min_confidence"] == "0.01"
    assert [o.label for o in result.objects] == ["person", "car"]  # the dog is not wanted


async def test_the_api_key_goes_in_the_form_and_a_wrong_one_is_a_key_error() -> None:
    fake = deepstack_app(api_key="s3cret")
    async with served(fake) as (url, deps):
        good = await DeepStackProvider(spec(url, api_key="s3cret"), deps).detect(FRAME, ALL)
        with pytest.raises(ProviderResponseError) as refused:
            await DeepStackProvider(spec(url, api_key="nope"), deps).detect(FRAME, ALL)

    assert len(good.objects) == 4
    assert fake.received[0].form["api_key"] == "s3cret"
    assert fake.calls == 3  # two good calls, then one refused call and no retry
    assert refused.value.status_code == 401
    assert "API key" in refused.value.message and "Incorrect api key" in refused.value.message
    assert "deepstack provider 'ds-test'" in refused.value.message


async def test_a_disabled_endpoint_is_reported_not_retried() -> None:
    fake = deepstack_app(face_enabled=False)
    async with served(fake) as (url, deps):
        with pytest.raises(ProviderResponseError) as refused:
            await DeepStackProvider(spec(url), deps).detect(FRAME, frozenset({"face"}))

    assert refused.value.status_code == 403
    assert "Face endpoints not activated" in refused.value.message
    assert fake.calls == 1


async def test_face_recognition_names_known_faces_and_keeps_unknown_ones() -> None:
    fake = deepstack_app()
    async with served(fake) as (url, deps):
        provider = DeepStackProvider(spec(url, options={"face_recognition": True}), deps)
        result = await provider.detect(FRAME, frozenset({"face"}))

    assert fake.paths == ["/v1/vision/face/recognize"]
    assert provider.capabilities().identification is True
    alice, unknown = result.objects
    assert (alice.subject, alice.subject_similarity, alice.confidence) == ("alice", 0.83, 0.83)
    # DeepStack answers confidence 0 for unknown faces; they passed its detector, so they stay.
    assert (unknown.subject, unknown.subject_similarity) == (None, None)
    assert unknown.confidence == 0.4
    assert unknown.attributes["reported_confidence"] == 0
    assert unknown.box == BoundingBox(200, 40, 240, 95)


async def test_a_custom_model_replaces_the_detection_endpoint() -> None:
    fake = deepstack_app()
    async with served(fake) as (url, deps):
        provider = DeepStackProvider(spec(url, options={"custom_model": "plates"}), deps)
        result = await provider.detect(FRAME, frozenset({"person"}))

    assert fake.paths == ["/v1/vision/custom/plates"]
    assert result.model == "deepstack:custom/plates"


BAD_ANSWERS = [
    (answer({**PERSON, "confidence": "0.9"}), "predictions[0].confidence: Input should be a"),
    (answer({**PERSON, "confidence": float("nan")}), "finite number"),
    (answer({**PERSON, "confidence": -0.2}), "confidence -0.2 is outside 0..1"),
    (answer({**PERSON, "confidence": 150}), "confidence 150.0 is outside 0..100"),
    (answer({**PERSON, "x_min": 50, "x_max": 10}), "x_max 10 < x_min 50"),
    (answer({k: v for k, v in PERSON.items() if k != "y_max"}), "predictions[0].y_max: Field"),
    (answer({k: v for k, v in PERSON.items() if k != "label"}), "predictions[0] has no label"),
    ({"success": False, "error": "error occured on the server"}, "success is false: error occ"),
    ({"success": True, "duration": 0}, "predictions are missing"),
    ({"success": True, "predictions": {"label": "person"}}, "predictions: Input should be a"),
    ([PERSON], "(body): Input should be a valid dictionary"),
    ({"predictions": [PERSON]}, "success: Field required"),
]


@pytest.mark.parametrize(("body", "expected"), BAD_ANSWERS)
async def test_malformed_answers_are_response_errors_and_not_retried(
    body: Any, expected: str
) -> None:
    fake = deepstack_app(Script(malformed(body)))
    async with served(fake) as (url, deps):
        with pytest.raises(ProviderResponseError) as error:
            await DeepStackProvider(spec(url), deps).detect(FRAME, frozenset({"person"}))

    assert expected in error.value.message
    assert error.value.message.startswith(
        "deepstack provider 'ds-test': unusable answer from /v1/vision/detection (HTTP 200)"
    )
    assert fake.calls == 1


async def test_a_non_json_answer_is_a_response_error() -> None:
    fake = deepstack_app(Script(not_json()))
    async with served(fake) as (url, deps):
        with pytest.raises(ProviderResponseError) as error:
            await DeepStackProvider(spec(url), deps).detect(FRAME, frozenset({"person"}))

    expected = "deepstack provider 'ds-test': /v1/vision/detection answer is not JSON (HTTP 200)"
    assert error.value.message.startswith(expected)
    assert fake.calls == 1


async def test_a_4xx_is_a_response_error_with_the_servers_reason_and_no_retry() -> None:
    bad_image = {"success": False, "error": "invalid image", "code": 400}
    fake = deepstack_app(Script(status(400, bad_image)))
    async with served(fake) as (url, deps):
        with pytest.raises(ProviderResponseError) as error:
            await DeepStackProvider(spec(url), deps).detect(FRAME, frozenset({"person"}))

    assert error.value.status_code == 400
    assert error.value.message.endswith("answered HTTP 400: invalid image")
    assert fake.calls == 1


@pytest.mark.parametrize("first", [500, 503, 429])
async def test_transient_failures_twice_then_success(first: int) -> None:
    fake = deepstack_app(Script(status(first), status(502)))
    async with served(fake) as (url, deps):
        result = await DeepStackProvider(spec(url), deps).detect(FRAME, frozenset({"person"}))

    assert result.attempts == 3
    assert fake.calls == 3
    assert [o.label for o in result.objects] == ["person"]


async def test_5xx_every_time_is_unreachable_after_all_attempts() -> None:
    fake = deepstack_app(Script(then=status(500, {"success": False, "error": "busy"})))
    async with served(fake) as (url, deps):
        with pytest.raises(ProviderUnreachable) as error:
            await DeepStackProvider(spec(url, max_retries=3), deps).detect(FRAME, ALL)

    assert error.value.attempts == 4
    assert error.value.status_code == 500
    assert error.value.retryable is True
    assert fake.calls == 4  # the face endpoint was never reached
    assert fake.paths == ["/v1/vision/detection"] * 4


async def test_a_server_slower_than_the_timeout_is_unreachable_after_retries() -> None:
    fake = deepstack_app(Script(then=sleep(0.6)))
    async with served(fake) as (url, deps):
        provider = DeepStackProvider(spec(url, timeout_seconds=0.2, max_retries=1), deps)
        with pytest.raises(ProviderUnreachable) as error:
            await provider.detect(FRAME, frozenset({"person"}))

    assert error.value.attempts == 2
    assert "timed out" in error.value.message
    assert fake.calls == 2


async def test_a_refused_connection_is_unreachable() -> None:
    async with served(deepstack_app()) as (_, deps):
        provider = DeepStackProvider(spec(f"http://127.0.0.1:{free_port()}"), deps)
        with pytest.raises(ProviderUnreachable) as error:
            await provider.detect(FRAME, frozenset({"person"}))

    assert error.value.attempts == 3
    assert "connection failed" in error.value.message


async def test_test_connection_detects_on_a_small_real_jpeg() -> None:
    fake = deepstack_app()
    async with served(fake) as (url, deps):
        report = await DeepStackProvider(spec(url), deps).test_connection()

    assert report.ok is True
    assert report.latency_ms > 0
    assert report.detail.startswith("deepstack:detection+face answered in")
    probe = fake.received[0].files["image"].data
    decoded = cv2.imdecode(np.frombuffer(probe, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (64, 64, 3)


async def test_test_connection_reports_failures_without_raising() -> None:
    fake = deepstack_app(api_key="s3cret")
    async with served(fake) as (url, deps):
        wrong_key = await DeepStackProvider(spec(url, api_key="x"), deps).test_connection()
        closed = DeepStackProvider(spec(f"http://127.0.0.1:{free_port()}", max_retries=0), deps)
        refused = await closed.test_connection()

    assert wrong_key.ok is False and "check the API key" in wrong_key.detail
    assert refused.ok is False and "connection failed" in refused.detail


def test_bad_configuration_is_rejected_when_the_provider_is_built() -> None:
    deps: Any = None
    with pytest.raises(ValueError, match="base_url is required"):
        DeepStackProvider(spec(""), deps)
    with pytest.raises(ValueError, match="face_recognitoin: Extra inputs are not permitted"):
        DeepStackProvider(spec("http://x", options={"face_recognitoin": True}), deps)
