"""GenericHttpProvider against a fake JSON detector, read through `HttpMapping` options."""

from __future__ import annotations

import base64
from typing import Any

import cv2
import numpy as np
import pytest

from framewatch.providers.base import (
    BoundingBox,
    ProviderResponseError,
    ProviderResult,
    ProviderSpec,
    ProviderUnreachable,
)
from framewatch.providers.generic_http import GenericHttpProvider
from tests.providers.wire_servers import (
    GENERIC_BODY,
    Script,
    generic_app,
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
# How GENERIC_BODY is read: nested list, `name`/`score` in percent, normalised [x, y, w, h].
NESTED = {
    "results_path": "data.objects", "label_key": "name", "confidence_key": "score",
    "confidence_scale": 100, "box_array_key": "bbox", "box_format": "xywh",
    "coordinates": "normalized",
}  # fmt: skip
PERSON = {"label": "person", "confidence": 0.9, "x_min": 1, "y_min": 2, "x_max": 30, "y_max": 40}


def spec(url: str, **changes: Any) -> ProviderSpec:
    values: dict[str, Any] = {
        "name": "http-test", "kind": "http", "base_url": url, "timeout_seconds": 2.0,
        "max_retries": 2, "retry_backoff_seconds": 0.01, **changes,
    }  # fmt: skip
    return ProviderSpec(**values)


async def detect(body: Any, options: dict[str, Any], **changes: Any) -> ProviderResult:
    """One detection of FRAME by a provider with `options` against a fake answering `body`."""
    async with served(generic_app(body=body)) as (url, deps):
        provider = GenericHttpProvider(spec(url, options=options, **changes), deps)
        return await provider.detect(FRAME, ALL)


async def test_a_nested_percent_normalised_answer_comes_back_in_pixels_with_types() -> None:
    fake = generic_app()
    async with served(fake) as (url, deps):
        result = await GenericHttpProvider(spec(url, options=NESTED), deps).detect(FRAME, ALL)

    found = [(o.type, o.label, o.confidence, o.box, o.subject) for o in result.objects]
    assert found == [
        ("person", "person", 0.88, BoundingBox(32, 48, 112, 168), None),
        ("vehicle", "truck", 0.64, BoundingBox(160, 120, 256, 180), None),
    ]
    assert result.model == "http:/detect"
    assert result.raw == GENERIC_BODY
    assert result.attempts == 1


async def test_the_frame_goes_out_as_multipart_with_the_configured_field_form_and_query() -> None:
    fake = generic_app(path="/v2/infer", token="t0ken")
    options = {**NESTED, "path": "/v2/infer", "method": "PUT", "file_field": "upload",
               "form": {"model": "yolo"}, "query": {"size": "640"}}  # fmt: skip
    async with served(fake) as (url, deps):
        provider = GenericHttpProvider(spec(url, api_key="t0ken", options=options), deps)
        result = await provider.detect(FRAME, ALL)

    (request,) = fake.received
    assert (request.method, request.path, request.query) == ("PUT", "/v2/infer", {"size": "640"})
    assert request.headers["authorization"] == "Bearer t0ken"
    assert request.form == {"model": "yolo"}
    assert list(request.files) == ["upload"]
    upload = request.files["upload"]
    assert (upload.filename, upload.content_type, upload.data) == (
        "frame.jpg", "image/jpeg", FRAME.data,
    )  # fmt: skip
    assert result.model == "http:/v2/infer"


async def test_the_api_key_header_and_prefix_are_configurable_and_absent_without_a_key() -> None:
    fake = generic_app()
    custom = {**NESTED, "api_key_header": "X-Api-Key", "api_key_prefix": ""}
    async with served(fake) as (url, deps):
        with_custom_header = GenericHttpProvider(spec(url, api_key="k-123", options=custom), deps)
        await with_custom_header.detect(FRAME, ALL)
        await GenericHttpProvider(spec(url, options=NESTED), deps).detect(FRAME, ALL)

    with_key, without_key = fake.received
    assert with_key.headers["x-api-key"] == "k-123"
    assert "authorization" not in with_key.headers
    assert "x-api-key" not in without_key.headers and "authorization" not in without_key.headers


async def test_a_wrong_key_is_a_response_error_about_the_key_and_not_retried() -> None:
    fake = generic_app(token="right")
    async with served(fake) as (url, deps):
        provider = GenericHttpProvider(spec(url, api_key="wrong", options=NESTED), deps)
        with pytest.raises(ProviderResponseError) as error:
            await provider.detect(FRAME, ALL)

    assert error.value.message == (
        "http provider 'http-test': /detect refused the request (HTTP 401); "
        "check the API key: Not authenticated"
    )
    assert fake.calls == 1


async def test_base64_json_requests_carry_the_image_and_the_extra_fields() -> None:
    fake = generic_app()
    options = {**NESTED, "request_format": "base64_json", "image_field": "img",
               "json": {"threshold": 0.3, "classes": ["person"]}}  # fmt: skip
    async with served(fake) as (url, deps):
        result = await GenericHttpProvider(spec(url, options=options), deps).detect(FRAME, ALL)

    (request,) = fake.received
    assert request.headers["content-type"] == "application/json"
    assert request.files == {}
    assert request.json == {
        "threshold": 0.3, "classes": ["person"], "img": base64.b64encode(FRAME.data).decode(),
    }  # fmt: skip
    assert len(result.objects) == 2


ITEM = {"label": "person", "confidence": 0.9, "x_min": 10, "y_min": 20, "x_max": 50, "y_max": 80}


@pytest.mark.parametrize(
    ("body", "results_path"),
    [
        ([ITEM], ""),
        ({"predictions": [ITEM]}, "predictions"),
        ({"outputs": [{"id": 1}, {"detections": {"boxes": [ITEM]}}]}, "outputs.1.detections.boxes"),
    ],
)
async def test_results_path_walks_keys_and_list_indexes(body: Any, results_path: str) -> None:
    result = await detect(body, {"results_path": results_path})

    assert [(o.label, o.confidence, o.box) for o in result.objects] == [
        ("person", 0.9, BoundingBox(10, 20, 50, 80))
    ]
    assert result.raw == body


BOX_FORMATS = [
    ({}, ITEM),
    ({"box_format": "xywh"}, {"x": 10, "y": 20, "width": 40, "height": 60}),
    ({"box_format": "cxcywh", "x_key": "cx", "y_key": "cy", "width_key": "w", "height_key": "h"},
     {"cx": 30, "cy": 50, "w": 40, "h": 60}),
    ({"box_array_key": "bbox"}, {"bbox": [10, 20, 50, 80]}),
    ({"box_array_key": "bbox", "box_format": "xywh"}, {"bbox": [10, 20, 40, 60]}),
    ({"box_array_key": "bbox", "box_format": "cxcywh"}, {"bbox": [30, 50, 40, 60]}),
    ({"box_key": "box", "x_min_key": "left", "y_min_key": "top", "x_max_key": "right",
      "y_max_key": "bottom"}, {"box": {"left": 10, "top": 20, "right": 50, "bottom": 80}}),
    ({"box_key": "box", "box_array_key": "xyxy"}, {"box": {"xyxy": [10.0, 20.0, 50.0, 80.0]}}),
    ({"coordinates": "normalized"}, {"x_min": 0.03125, "y_min": 1 / 12, "x_max": 0.15625,
                                     "y_max": 1 / 3}),
    ({"coordinates": "normalized", "box_format": "cxcywh", "box_array_key": "b"},
     {"b": [0.09375, 0.2083333333333333, 0.125, 0.25]}),
]  # fmt: skip


@pytest.mark.parametrize(("options", "box"), BOX_FORMATS)
async def test_box_formats_all_give_the_same_pixel_box(
    options: dict[str, Any], box: dict[str, Any]
) -> None:
    item = {"label": "person", "confidence": 0.9, **box}
    result = await detect([item], options)

    (box,) = [o.box for o in result.objects]
    assert (box.x_min, box.y_min, box.x_max, box.y_max) == pytest.approx((10, 20, 50, 80))


async def test_normalised_boxes_may_touch_the_border_within_the_slack() -> None:
    touching = {"label": "car", "confidence": 0.8, "bbox": [0.5, 0.5, 1.005, 1.0]}
    result = await detect([touching], {"box_array_key": "bbox", "coordinates": "normalized"})

    box = result.objects[0].box
    assert (box.x_min, box.y_min, box.x_max, box.y_max) == (160, 120, pytest.approx(321.6), 240)


@pytest.mark.parametrize("bbox", [[0.1, 0.2, 1.5, 0.9], [-0.5, 0.2, 0.5, 0.9], [0, 0, 320, 240]])
async def test_normalised_coordinates_outside_0_to_1_are_rejected(bbox: list[float]) -> None:
    item = {"label": "car", "confidence": 0.8, "bbox": bbox}
    with pytest.raises(ProviderResponseError) as error:
        await detect([item], {"box_array_key": "bbox", "coordinates": "normalized"})

    assert error.value.message.endswith(
        "result[0].bbox has coordinates outside 0..1 but they are 'normalized'"
    )


async def test_confidence_in_percent_or_absent() -> None:
    percent = await detect([{**ITEM, "confidence": 45}], {"confidence_scale": 100})
    absent = await detect([{**ITEM, "confidence": "n/a"}], {"confidence_key": None})

    assert [o.confidence for o in percent.objects] == [0.45]
    assert [o.confidence for o in absent.objects] == [1.0]


async def test_type_key_and_subject_key_override_the_label_s_type_and_name_the_subject() -> None:
    body = [{**ITEM, "label": "alice", "kind": "Face ", "who": "alice"}, {**ITEM, "label": "bus"}]
    options = {"type_key": "kind", "subject_key": "who"}
    async with served(generic_app(body=body)) as (url, deps):
        provider = GenericHttpProvider(spec(url, options=options), deps)
        result = await provider.detect(FRAME, ALL)

    found = [(o.type, o.label, o.subject) for o in result.objects]
    assert found == [("face", "alice", "alice"), ("vehicle", "bus", None)]
    assert provider.capabilities().identification is True


async def test_default_label_is_used_when_items_have_none() -> None:
    item = {k: v for k, v in ITEM.items() if k != "label"}
    result = await detect([item, {**item, "label": "car"}], {"default_label": "person"})

    assert [(o.type, o.label) for o in result.objects] == [
        ("person", "person"), ("vehicle", "car"),
    ]  # fmt: skip


async def test_objects_below_min_confidence_or_not_asked_for_are_dropped() -> None:
    body = [ITEM, {**ITEM, "label": "car", "confidence": 0.39}, {**ITEM, "label": "dog"}]
    dogs_too = frozenset({"person", "vehicle", "dog"})
    async with served(generic_app(body=body)) as (url, deps):
        provider = GenericHttpProvider(spec(url, detection_types=dogs_too), deps)
        result = await provider.detect(FRAME, dogs_too | {"face"})
        only_people = await provider.detect(FRAME, frozenset({"person"}))

    assert [o.label for o in result.objects] == ["person", "dog"]
    assert [o.label for o in only_people.objects] == ["person"]
    assert only_people.raw == body


BAD_ANSWERS = [
    ({"items": [ITEM]}, {"results_path": "data.items"},
     "results_path 'data.items': nothing at 'data'"),
    ({"data": [ITEM]}, {"results_path": "data.1"}, "results_path 'data.1': nothing at 'data.1'"),
    ({"data": {"objects": ITEM}}, {"results_path": "data.objects"},
     "results_path 'data.objects' holds dict, not a list"),
    ({"predictions": [ITEM]}, {}, "results_path '' holds dict, not a list"),
    ([[ITEM]], {}, "result[0] should be an object, got list"),
    ([{**ITEM, "label": None}], {}, "result[0].label should be a non-empty string"),
    ([{**ITEM, "label": 7}], {}, "result[0].label should be a non-empty string"),
    ([{**ITEM, "confidence": "0.9"}], {}, "result[0].confidence should be a number, got '0.9'"),
    ([{**ITEM, "confidence": True}], {}, "result[0].confidence should be a number, got True"),
    ([{**ITEM, "confidence": float("nan")}], {},
     "result[0].confidence should be a finite number, got nan"),
    ([{**ITEM, "x_max": float("inf")}], {}, "result[0].x_max should be a finite number, got inf"),
    ([{**ITEM, "confidence": 1.2}], {}, "confidence 1.2 is outside 0..1"),
    ([{**ITEM, "confidence": 120}], {"confidence_scale": 100},
     "confidence 120.0 is outside 0..100"),
    ([{k: v for k, v in ITEM.items() if k != "confidence"}], {}, "result[0] has no 'confidence'"),
    ([{k: v for k, v in ITEM.items() if k != "y_max"}], {}, "result[0] has no 'y_max'"),
    ([{**ITEM, "x_min": 60}], {}, "box has x_max 50 < x_min 60"),
    ([{**ITEM, "width": -4, "height": 2, "x": 1, "y": 1}], {"box_format": "xywh"},
     "result[0] has a negative width or height"),
    ([{**ITEM, "bbox": [1, 2, 3]}], {"box_array_key": "bbox"},
     "result[0].bbox should be an array of 4 numbers"),
    ([{**ITEM, "bbox": [1, 2, "3", 4]}], {"box_array_key": "bbox"},
     "result[0].bbox should be a number, got '3'"),
    ([ITEM], {"box_key": "box"}, "result[0].box should be an object holding the box"),
    ([{**ITEM, "kind": 3}], {"type_key": "kind"}, "result[0].kind should be a string"),
    ([{**ITEM, "who": ["alice"]}], {"subject_key": "who"}, "result[0].who should be a string"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "options", "expected"), BAD_ANSWERS)
async def test_malformed_answers_are_response_errors_and_not_retried(
    body: Any, options: dict[str, Any], expected: str
) -> None:
    fake = generic_app(Script(malformed(body)))
    async with served(fake) as (url, deps):
        with pytest.raises(ProviderResponseError) as error:
            await GenericHttpProvider(spec(url, options=options), deps).detect(FRAME, ALL)

    assert error.value.message == (
        f"http provider 'http-test': unusable answer from /detect (HTTP 200): {expected}"
    )
    assert error.value.status_code == 200
    assert fake.calls == 1


async def test_a_non_json_answer_is_a_response_error() -> None:
    fake = generic_app(Script(not_json()))
    async with served(fake) as (url, deps):
        with pytest.raises(ProviderResponseError) as error:
            await GenericHttpProvider(spec(url, options=NESTED), deps).detect(FRAME, ALL)

    expected = "http provider 'http-test': /detect answer is not JSON (HTTP 200)"
    assert error.value.message.startswith(expected)
    assert fake.calls == 1


@pytest.mark.parametrize(
    ("path", "step", "code", "detail"),
    [
        ("/detect", status(422, {"detail": "image is too large"}), 422, "image is too large"),
        ("/missing", None, 404, "Not Found"),
    ],
)
async def test_a_4xx_is_a_response_error_with_the_servers_reason_and_no_retry(
    path: str, step: Any, code: int, detail: str
) -> None:
    fake = generic_app(Script(step) if step else None)
    async with served(fake) as (url, deps):
        provider = GenericHttpProvider(spec(url, options={**NESTED, "path": path}), deps)
        with pytest.raises(ProviderResponseError) as error:
            await provider.detect(FRAME, ALL)

    expected = f"http provider 'http-test': {path} answered HTTP {code}: {detail}"
    assert error.value.message == expected
    assert error.value.status_code == code
    assert fake.calls == 1


@pytest.mark.parametrize("first", [500, 503, 429])
async def test_transient_failures_twice_then_success(first: int) -> None:
    fake = generic_app(Script(status(first), status(502)))
    async with served(fake) as (url, deps):
        result = await GenericHttpProvider(spec(url, options=NESTED), deps).detect(FRAME, ALL)

    assert result.attempts == 3
    assert fake.calls == 3
    assert [o.label for o in result.objects] == ["person", "truck"]


async def test_5xx_every_time_is_unreachable_after_all_attempts() -> None:
    fake = generic_app(Script(then=status(503)))
    async with served(fake) as (url, deps):
        provider = GenericHttpProvider(spec(url, max_retries=3, options=NESTED), deps)
        with pytest.raises(ProviderUnreachable) as error:
            await provider.detect(FRAME, ALL)

    assert (error.value.attempts, error.value.status_code) == (4, 503)
    assert error.value.retryable is True
    assert fake.paths == ["/detect"] * 4


async def test_a_server_slower_than_the_timeout_is_unreachable_after_retries() -> None:
    fake = generic_app(Script(then=sleep(0.6)))
    async with served(fake) as (url, deps):
        provider = GenericHttpProvider(
            spec(url, timeout_seconds=0.2, max_retries=1, options=NESTED), deps
        )
        with pytest.raises(ProviderUnreachable) as error:
            await provider.detect(FRAME, ALL)

    assert error.value.attempts == 2
    assert "timed out" in error.value.message
    assert fake.calls == 2


async def test_test_connection_reports_ok_and_failures_without_raising() -> None:
    fake = generic_app(token="t")
    async with served(fake) as (url, deps):
        keyed = GenericHttpProvider(spec(url, api_key="t", options=NESTED), deps)
        good = await keyed.test_connection()
        wrong_key = await GenericHttpProvider(spec(url, options=NESTED), deps).test_connection()
        closed = spec(f"http://127.0.0.1:{free_port()}", max_retries=0, options=NESTED)
        refused = await GenericHttpProvider(closed, deps).test_connection()
    async with served(generic_app(Script(ok({"data": {}})))) as (url, deps):
        bad_answer = await GenericHttpProvider(spec(url, options=NESTED), deps).test_connection()

    assert good.ok is True
    assert good.detail.startswith("http:/detect answered in")
    assert good.detail.endswith("(2 objects on a blank test image)")
    probe = fake.received[0].files["image"].data
    assert cv2.imdecode(np.frombuffer(probe, np.uint8), cv2.IMREAD_COLOR).shape == (64, 64, 3)
    assert bad_answer.ok is False and "nothing at 'data.objects'" in bad_answer.detail
    assert wrong_key.ok is False and "check the API key" in wrong_key.detail
    assert refused.ok is False and "connection failed" in refused.detail


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"path": "detect"}, "path: String should match pattern '^/'"),
        ({"method": "GET"}, "method: Input should be 'POST' or 'PUT'"),
        ({"json": {"a": 1}}, '"json" fields need request_format "base64_json"'),
        ({"request_format": "base64_json", "form": {"a": "1"}}, '"form" fields need request'),
        ({"box_format": "xyxz"}, "box_format: Input should be 'xyxy', 'xywh' or 'cxcywh'"),
        ({"confidence_scale": 10}, "confidence_scale: Input should be 1 or 100"),
        ({"coordinates": "percent"}, "coordinates: Input should be 'pixels' or 'normalized'"),
        ({"results": "data"}, "results: Extra inputs are not permitted"),
    ],
)
def test_invalid_mappings_are_refused_when_the_provider_is_built(
    options: dict[str, Any], expected: str
) -> None:
    deps: Any = None
    with pytest.raises(ValueError, match="base_url is required"):
        GenericHttpProvider(spec(""), deps)
    with pytest.raises(ValueError) as error:
        GenericHttpProvider(spec("http://x", options=options), deps)
    assert str(error.value).startswith("http provider 'http-test': invalid options: ")
    assert expected in str(error.value)
