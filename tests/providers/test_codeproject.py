"""DeepStackProvider against a fake CodeProject.AI Server: its envelope, percent confidences,
faces named by `label`, and module failures answered with HTTP 200."""

from __future__ import annotations

from typing import Any

import pytest

from framewatch.providers.base import BoundingBox, ProviderResponseError, ProviderSpec
from framewatch.providers.deepstack import DeepStackProvider
from tests.providers.wire_servers import (
    CODEPROJECT_ENVELOPE,
    Script,
    codeproject_app,
    jpeg_frame,
    malformed,
    served,
)

FRAME = jpeg_frame(320, 240)
ALL = frozenset({"person", "vehicle", "face"})
MODULES = "codeproject.ai:ObjectDetectionYOLOv5-6.2+FaceProcessing"


def spec(url: str, **changes: Any) -> ProviderSpec:
    values: dict[str, Any] = {
        "name": "cpai", "kind": "deepstack", "base_url": url, "timeout_seconds": 2.0,
        "max_retries": 2, "retry_backoff_seconds": 0.01, **changes,
    }  # fmt: skip
    return ProviderSpec(**values)


@pytest.mark.parametrize("percent", [True, False])
async def test_envelope_answers_parse_with_confidences_normalised(percent: bool) -> None:
    fake = codeproject_app(percent=percent)
    async with served(fake) as (url, deps):
        result = await DeepStackProvider(spec(url), deps).detect(FRAME, ALL)

    found = [(o.type, o.label, round(o.confidence, 6), o.box) for o in result.objects]
    assert found == [
        ("person", "person", 0.91, BoundingBox(10, 20, 110, 220)),
        ("vehicle", "car", 0.75, BoundingBox(150, 100, 300, 200)),
        ("face", "face", 0.97, BoundingBox(40, 30, 80, 90)),
        ("face", "face", 0.88, BoundingBox(200, 40, 240, 95)),
    ]
    assert result.model == MODULES
    assert all(o.attributes["provider_inference_ms"] == 12 for o in result.objects)
    detection = result.raw["/v1/vision/detection"]
    assert detection["moduleId"] == "ObjectDetectionYOLOv5-6.2"
    assert detection["inferenceMs"] == 12
    assert detection["predictions"][0]["confidence"] == (91.0 if percent else 0.91)


async def test_recognised_faces_named_by_label_become_subjects() -> None:
    fake = codeproject_app()
    async with served(fake) as (url, deps):
        provider = DeepStackProvider(spec(url, options={"face_recognition": True}), deps)
        result = await provider.detect(FRAME, frozenset({"face"}))

    assert fake.paths == ["/v1/vision/face/recognize"]
    assert "userid" not in result.raw["/v1/vision/face/recognize"]["predictions"][0]
    named = [(o.subject, o.subject_similarity, round(o.confidence, 6)) for o in result.objects]
    assert named == [("alice", 0.83, 0.83), (None, None, 0.4)]


async def test_no_face_found_is_an_empty_result_not_an_error() -> None:
    fake = codeproject_app(faces=[])
    async with served(fake) as (url, deps):
        provider = DeepStackProvider(spec(url, options={"face_recognition": True}), deps)
        result = await provider.detect(FRAME, ALL)

    assert [o.type for o in result.objects] == ["person", "vehicle"]
    recognize = result.raw["/v1/vision/face/recognize"]
    assert recognize["success"] is False and recognize["error"] == "No face found in image"
    assert fake.calls == 2


async def test_a_module_failure_answered_with_http_200_is_an_error_without_retry() -> None:
    failure = {
        "success": False,
        "error": "Unable to load the face detector",
        **CODEPROJECT_ENVELOPE,
    }
    fake = codeproject_app(Script(malformed(failure)))
    async with served(fake) as (url, deps):
        with pytest.raises(ProviderResponseError) as error:
            await DeepStackProvider(spec(url), deps).detect(FRAME, frozenset({"face"}))

    assert error.value.message.endswith("success is false: Unable to load the face detector")
    assert error.value.status_code == 200
    assert fake.calls == 1


async def test_confidences_mixing_percent_and_nonsense_are_rejected() -> None:
    box = {"x_min": 1, "y_min": 1, "x_max": 9, "y_max": 9}
    over = {"success": True, "predictions": [{"label": "person", "confidence": 100.5, **box}]}
    fake = codeproject_app(Script(malformed({**over, **CODEPROJECT_ENVELOPE})))
    async with served(fake) as (url, deps):
        with pytest.raises(ProviderResponseError, match=r"confidence 100\.5 is outside 0\.\.100"):
            await DeepStackProvider(spec(url), deps).detect(FRAME, frozenset({"person"}))


async def test_a_route_codeproject_does_not_serve_is_a_404_response_error() -> None:
    fake = codeproject_app()
    async with served(fake) as (url, deps):
        provider = DeepStackProvider(spec(url, options={"custom_model": "plates"}), deps)
        with pytest.raises(ProviderResponseError) as error:
            await provider.detect(FRAME, frozenset({"person"}))

    assert error.value.status_code == 404
    assert "/v1/vision/custom/plates answered HTTP 404" in error.value.message
    assert fake.calls == 1


async def test_test_connection_names_the_modules() -> None:
    async with served(codeproject_app()) as (url, deps):
        report = await DeepStackProvider(spec(url), deps).test_connection()

    assert report.ok is True
    assert report.detail.startswith(f"{MODULES} answered in")
