"""CompreFaceProvider against a fake CompreFace speaking its real wire format over real HTTP."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest

from framewatch.providers.base import (
    BoundingBox,
    FrameImage,
    ProviderResponseError,
    ProviderSpec,
    ProviderUnreachable,
)
from framewatch.providers.compreface import CompreFaceProvider
from tests.providers.wire_servers import (
    COMPREFACE_KEY,
    VERSIONS,
    Behaviour,
    Script,
    compreface_app,
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
FACE = frozenset({"face"})
RECOGNIZE = "/api/v1/recognition/recognize"
DETECT = "/api/v1/detection/detect"
BOX = {"probability": 0.9, "x_min": 1, "y_min": 2, "x_max": 30, "y_max": 40}
OTHER_KEY = "11111111-2222-3333-4444-555555555555"


def spec(url: str, **changes: Any) -> ProviderSpec:
    values: dict[str, Any] = {
        "name": "cf-test", "kind": "compreface", "base_url": url, "api_key": COMPREFACE_KEY,
        "timeout_seconds": 2.0, "max_retries": 2, "retry_backoff_seconds": 0.01, **changes,
    }  # fmt: skip
    return ProviderSpec(**values)


def answer(*faces: dict[str, Any]) -> dict[str, Any]:
    return {"result": list(faces), "plugins_versions": VERSIONS}


async def test_recognised_faces_come_back_in_pixels_with_subjects_and_embeddings() -> None:
    fake = compreface_app()
    async with served(fake) as (url, deps):
        result = await CompreFaceProvider(spec(url), deps).detect(FRAME, FACE)

    found = [(o.type, o.label, o.confidence, o.box) for o in result.objects]
    assert found == [
        ("face", "face", 0.99, BoundingBox(30, 40, 90, 120)),
        ("face", "face", 0.62, BoundingBox(200, 50, 250, 110)),
    ]
    alice, bob = result.objects
    assert (alice.subject, alice.subject_similarity) == ("alice", 0.97)
    assert (bob.subject, bob.subject_similarity) == ("bob", 0.22)
    assert alice.encoding == (0.1, -0.2, 0.3, 0.05)
    assert bob.encoding == (0.0, 0.4, -0.1, 0.2)
    assert alice.encoding_model == bob.encoding_model == "compreface:facenet.Calculator"
    assert result.model == "compreface:recognition (facenet.FaceDetector)"
    assert result.raw["plugins_versions"] == VERSIONS
    assert result.attempts == 1


async def test_the_frame_goes_out_as_multipart_file_with_the_key_header_and_query() -> None:
    fake = compreface_app()
    async with served(fake) as (url, deps):
        await CompreFaceProvider(spec(url, min_confidence=0.55), deps).detect(FRAME, FACE)

    (request,) = fake.received
    assert (request.method, request.path) == ("POST", RECOGNIZE)
    assert request.headers["x-api-key"] == COMPREFACE_KEY
    assert request.headers["content-type"].startswith("multipart/form-data")
    assert list(request.files) == ["file"]
    upload = request.files["file"]
    assert (upload.filename, upload.content_type, upload.data) == (
        "frame.jpg", "image/jpeg", FRAME.data,
    )  # fmt: skip
    assert request.query == {
        "det_prob_threshold": "0.55", "limit": "0", "status": "true",
        "face_plugins": "calculator", "prediction_count": "1",
    }  # fmt: skip


async def test_the_most_similar_of_several_subjects_is_chosen() -> None:
    face = {"box": BOX, "subjects": [{"subject": "carol", "similarity": 0.41},
                                     {"subject": "alice", "similarity": 0.97},
                                     {"subject": "dave", "similarity": 0.6}]}  # fmt: skip
    fake = compreface_app(Script(ok(answer(face))))
    async with served(fake) as (url, deps):
        provider = CompreFaceProvider(spec(url, options={"prediction_count": 3}), deps)
        result = await provider.detect(FRAME, FACE)

    assert fake.received[0].query["prediction_count"] == "3"
    (found,) = result.objects
    assert (found.subject, found.subject_similarity) == ("alice", 0.97)
    assert (found.encoding, found.encoding_model) == (None, None)
    assert len(result.raw["result"][0]["subjects"]) == 3


async def test_the_detection_service_finds_faces_without_subjects() -> None:
    fake = compreface_app()
    async with served(fake) as (url, deps):
        provider = CompreFaceProvider(spec(url, options={"service": "detection"}), deps)
        result = await provider.detect(FRAME, FACE)

    assert fake.paths == [DETECT]
    assert "prediction_count" not in fake.received[0].query
    assert [(o.subject, o.subject_similarity) for o in result.objects] == [(None, None)] * 2
    assert result.objects[0].box == BoundingBox(30, 40, 90, 120)
    assert result.objects[0].encoding == (0.1, -0.2, 0.3, 0.05)
    assert result.model == "compreface:detection (facenet.FaceDetector)"
    capabilities = provider.capabilities()
    assert (capabilities.identification, capabilities.face_encodings) == (False, True)
    assert capabilities.detection_types == FACE


async def test_without_the_calculator_plugin_there_are_no_encodings() -> None:
    fake = compreface_app()
    async with served(fake) as (url, deps):
        provider = CompreFaceProvider(spec(url, options={"face_plugins": ""}), deps)
        result = await provider.detect(FRAME, FACE)

    assert "face_plugins" not in fake.received[0].query
    assert [o.encoding for o in result.objects] == [None, None]
    assert [o.subject for o in result.objects] == ["alice", "bob"]
    assert provider.capabilities().face_encodings is False


async def test_limit_is_sent_and_compreface_keeps_the_biggest_faces() -> None:
    fake = compreface_app()
    async with served(fake) as (url, deps):
        provider = CompreFaceProvider(spec(url, options={"limit": 1}), deps)
        result = await provider.detect(FRAME, FACE)

    assert fake.received[0].query["limit"] == "1"
    assert [o.subject for o in result.objects] == ["alice"]


async def test_plugin_output_is_kept_as_attributes_and_without_status_the_model_is_plain() -> None:
    face = {
        "box": BOX, "age": {"probability": 0.93, "high": 32, "low": 25},
        "gender": {"probability": 0.98, "value": "female"},
        "mask": {"probability": 0.99, "value": "without_mask"},
        "landmarks": [[10, 12], [20, 12], [15, 18], [11, 25], [19, 25]],
        "execution_time": {"age": 28.0, "detector": 117.0},
    }  # fmt: skip
    fake = compreface_app(Script(ok({"result": [face]})))
    async with served(fake) as (url, deps):
        provider = CompreFaceProvider(spec(url, options={"face_plugins": "age,gender,mask"}), deps)
        result = await provider.detect(FRAME, FACE)

    assert fake.received[0].query["face_plugins"] == "age,gender,mask"
    (found,) = result.objects
    assert found.attributes == {key: face[key] for key in face if key != "box"}
    assert result.model == "compreface:recognition"


async def test_no_face_found_is_an_empty_result_not_an_error() -> None:
    fake = compreface_app(faces=[])
    async with served(fake) as (url, deps):
        result = await CompreFaceProvider(spec(url), deps).detect(FRAME, FACE)

    assert result.objects == []
    assert result.raw == {"message": "No face is found in the given image", "code": 28}
    assert result.model == "compreface:recognition"
    assert (result.attempts, fake.calls) == (1, 1)


async def test_the_threshold_is_applied_by_compreface_and_again_on_what_comes_back() -> None:
    above_threshold = compreface_app()
    sends_everything = compreface_app(Script(ok(answer(
        {"box": {**BOX, "probability": 0.99}}, {"box": {**BOX, "probability": 0.62}},
    ))))  # fmt: skip
    async with served(above_threshold) as (url, deps):
        strict = CompreFaceProvider(spec(url, min_confidence=0.995), deps)
        nothing = await strict.detect(FRAME, FACE)
    async with served(sends_everything) as (url, deps):
        one = await CompreFaceProvider(spec(url, min_confidence=0.7), deps).detect(FRAME, FACE)

    assert above_threshold.received[0].query["det_prob_threshold"] == "0.995"
    assert nothing.objects == [] and nothing.raw["code"] == 28
    assert [o.confidence for o in one.objects] == [0.99]


@pytest.mark.parametrize(
    ("types", "configured"),
    [({"person", "vehicle"}, None), ({"face", "person"}, frozenset({"person"}))],
)
async def test_no_call_is_made_unless_face_is_asked_and_configured(
    types: set[str], configured: frozenset[str] | None
) -> None:
    fake = compreface_app()
    changes = {"detection_types": configured} if configured else {}
    async with served(fake) as (url, deps):
        provider = CompreFaceProvider(spec(url, **changes), deps)
        result = await provider.detect(FRAME, frozenset(types))

    assert fake.calls == 0
    assert (result.objects, result.raw, result.latency_ms) == ([], None, 0)
    assert result.model == "compreface:recognition"


async def test_a_missing_api_key_is_refused_without_a_call() -> None:
    fake = compreface_app()
    async with served(fake) as (url, deps):
        keyless = spec(url, api_key=None, options={"service": "detection"})
        provider = CompreFaceProvider(keyless, deps)
        with pytest.raises(ProviderResponseError) as error:
            await provider.detect(FRAME, FACE)

    assert error.value.message == (
        "compreface provider 'cf-test': no API key set; "
        "CompreFace needs the key of its detection service"
    )
    assert fake.calls == 0


KEY_PROBLEMS = [
    # A key that is not a UUID: CompreFace's key filter answers 400 code 26.
    ("not-a-uuid", None, 400, "Service API key should be UUID (code 26)"),
    # A UUID of no recognition service (e.g. the detection service's key): 404 code 10, which
    # repeats the key; the error shows it masked.
    (OTHER_KEY, None, 404, "Recognition service with API Key ••••5555 not found (code 10)"),
    # The header lost on the way (a proxy): 400 code 20.
    (COMPREFACE_KEY, status(400, {"message": "Missing header: x-api-key", "code": 20}), 400,
     "Missing header: x-api-key (code 20)"),
    # A proxy in front that checks its own credentials: 401 or 403.
    (COMPREFACE_KEY, not_json("<html>401 Authorization Required</html>", 401), 401,
     "<html>401 Authorization Required</html>"),
    (COMPREFACE_KEY, status(403, {"message": "Forbidden"}), 403, "Forbidden"),
]  # fmt: skip


@pytest.mark.parametrize(("key", "step", "code", "detail"), KEY_PROBLEMS)
async def test_key_problems_are_response_errors_about_the_key_and_not_retried(
    key: str, step: Behaviour | None, code: int, detail: str
) -> None:
    fake = compreface_app(Script(step) if step else None)
    async with served(fake) as (url, deps):
        with pytest.raises(ProviderResponseError) as error:
            await CompreFaceProvider(spec(url, api_key=key), deps).detect(FRAME, FACE)

    assert error.value.message == (
        f"compreface provider 'cf-test': {RECOGNIZE} refused the request (HTTP {code}); "
        f"check the API key: {detail}"
    )
    assert error.value.status_code == code
    assert error.value.retryable is False
    assert fake.calls == 1
    assert key not in error.value.message


async def test_other_refusals_carry_compreface_s_message_and_are_not_retried() -> None:
    broken = FrameImage(b"not an image", "image/jpeg", 10, 10)
    fake = compreface_app()
    async with served(fake) as (url, deps):
        with pytest.raises(ProviderResponseError) as error:
            await CompreFaceProvider(spec(url), deps).detect(broken, FACE)

    assert error.value.message == (
        f"compreface provider 'cf-test': {RECOGNIZE} answered HTTP 400: "
        "Something went wrong, please try again (code 0)"
    )
    assert fake.calls == 1


BAD_ANSWERS = [
    ({"result": {"box": BOX}}, "result: Input should be a valid list"),
    ({"faces": []}, "result: Field required"),
    ([{"box": BOX}], "(body): Input should be a valid dictionary"),
    (answer({"subjects": []}), "result[0].box: Field required"),
    (answer({"box": {**BOX, "probability": "0.9"}}), "result[0].box.probability: Input should"),
    (answer({"box": {**BOX, "probability": float("nan")}}), "result[0].box.probability: Input"),
    (answer({"box": {**BOX, "probability": 1.5}}), "box.probability 1.5 is outside 0..1"),
    (answer({"box": {**BOX, "x_min": 50, "x_max": 10}}), "x_max 10 < x_min 50"),
    (answer({"box": BOX, "subjects": [{"subject": "a", "similarity": float("inf")}]}),
     "result[0].subjects[0].similarity: Input should be a finite number"),
    (answer({"box": BOX, "subjects": [{"subject": "a", "similarity": 3}]}),
     "subject similarity 3.0 is outside 0..1"),
    (answer({"box": BOX, "subjects": [{"similarity": 0.9}]}), "subjects[0].subject: Field"),
    (answer({"box": BOX, "embedding": [0.1, float("nan")]}), "result[0].embedding[1]: Input"),
    (answer({"box": BOX, "embedding": "0.1,0.2"}), "result[0].embedding: Input should be a"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "expected"), BAD_ANSWERS)
async def test_malformed_answers_are_response_errors_and_not_retried(
    body: Any, expected: str
) -> None:
    fake = compreface_app(Script(malformed(body)))
    async with served(fake) as (url, deps):
        with pytest.raises(ProviderResponseError) as error:
            await CompreFaceProvider(spec(url), deps).detect(FRAME, FACE)

    assert error.value.message.startswith(
        f"compreface provider 'cf-test': unusable answer from {RECOGNIZE} (HTTP 200): "
    )
    assert expected in error.value.message
    assert fake.calls == 1


async def test_a_non_json_answer_is_a_response_error() -> None:
    fake = compreface_app(Script(not_json()))
    async with served(fake) as (url, deps):
        with pytest.raises(ProviderResponseError) as error:
            await CompreFaceProvider(spec(url), deps).detect(FRAME, FACE)

    expected = f"compreface provider 'cf-test': {RECOGNIZE} answer is not JSON (HTTP 200)"
    assert error.value.message.startswith(expected)
    assert fake.calls == 1


async def test_5xx_twice_then_success() -> None:
    fake = compreface_app(Script(status(500), status(502)))
    async with served(fake) as (url, deps):
        result = await CompreFaceProvider(spec(url), deps).detect(FRAME, FACE)

    assert result.attempts == 3
    assert fake.calls == 3
    assert [o.subject for o in result.objects] == ["alice", "bob"]


async def test_5xx_every_time_is_unreachable_after_all_attempts() -> None:
    fake = compreface_app(Script(then=status(500, {"message": "busy", "code": 0})))
    async with served(fake) as (url, deps):
        with pytest.raises(ProviderUnreachable) as error:
            await CompreFaceProvider(spec(url, max_retries=3), deps).detect(FRAME, FACE)

    assert (error.value.attempts, error.value.status_code) == (4, 500)
    assert error.value.retryable is True
    assert fake.paths == [RECOGNIZE] * 4


async def test_a_server_slower_than_the_timeout_is_unreachable_after_retries() -> None:
    fake = compreface_app(Script(then=sleep(0.6)))
    async with served(fake) as (url, deps):
        provider = CompreFaceProvider(spec(url, timeout_seconds=0.2, max_retries=1), deps)
        with pytest.raises(ProviderUnreachable) as error:
            await provider.detect(FRAME, FACE)

    assert error.value.attempts == 2
    assert "timed out" in error.value.message
    assert fake.calls == 2


async def test_test_connection_sends_a_small_real_jpeg_and_no_face_is_fine() -> None:
    fake = compreface_app(faces=[])
    async with served(fake) as (url, deps):
        report = await CompreFaceProvider(spec(url), deps).test_connection()

    assert report.ok is True
    assert report.detail.startswith("compreface:recognition answered in")
    assert report.detail.endswith("(0 objects on a blank test image)")
    probe = fake.received[0].files["file"].data
    assert cv2.imdecode(np.frombuffer(probe, np.uint8), cv2.IMREAD_COLOR).shape == (64, 64, 3)


async def test_test_connection_reports_failures_without_raising() -> None:
    fake = compreface_app()
    async with served(fake) as (url, deps):
        wrong_key = await CompreFaceProvider(spec(url, api_key=OTHER_KEY), deps).test_connection()
        no_key = await CompreFaceProvider(spec(url, api_key=None), deps).test_connection()
        closed = spec(f"http://127.0.0.1:{free_port()}", max_retries=0)
        refused = await CompreFaceProvider(closed, deps).test_connection()

    assert wrong_key.ok is False and "check the API key" in wrong_key.detail
    assert no_key.ok is False and "no API key set" in no_key.detail
    assert refused.ok is False and "connection failed" in refused.detail
    assert fake.calls == 1


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"service": "verification"}, "service: Input should be 'recognition' or 'detection'"),
        ({"prediction_count": 0}, "prediction_count: Input should be greater than or equal to 1"),
        ({"limit": -1}, "limit: Input should be greater than or equal to 0"),
        ({"face_plugins": "age&x=1"}, "face_plugins: String should match pattern"),
        ({"face_plugin": "age"}, "face_plugin: Extra inputs are not permitted"),
    ],
)
def test_bad_configuration_is_rejected_when_the_provider_is_built(
    options: dict[str, Any], expected: str
) -> None:
    deps: Any = None
    with pytest.raises(ValueError, match="base_url is required"):
        CompreFaceProvider(spec(" "), deps)
    with pytest.raises(ValueError) as error:
        CompreFaceProvider(spec("http://x", options=options), deps)
    assert str(error.value).startswith("compreface provider 'cf-test': invalid options: ")
    assert expected in str(error.value)
